# fledge: progressive delivery for Kubernetes behind Istio.
#   make demo   run the main job in the local sandbox
#   make test   every test: unit, race, then the end-to-end suites in the sandbox
GO        ?= go
E2E_FLAGS ?=
# Packages built for the e2e tag; the sandbox suites live under e2e/.
# The longest (e2e/rollout, about 12 minutes of the suite's 26 on 2 cores)
# is named first, so that go test builds and starts it first and the
# others share the second slot beside it, instead of it starting last and
# running alone at the end.
E2E_PKGS  ?= ./e2e/rollout ./e2e/...

.PHONY: all build tools test unit e2e lint demo sandbox bench bench-scale sim clean generate images

all: build

build:
	$(GO) build ./...

# Control plane binaries, kwok, Istio's CRDs and Prometheus for the sandbox:
# built once per pinned version, cached outside the tree, linked into bin/.
tools:
	@bash e2e/tools/install.sh

# Regenerates everything generated, from pinned tools modules
# (e2e/tools/codegen, e2e/tools/proto) and Debian's protoc: the Flight API's
# deepcopy, clientset, listers and informers (rollout/client), its CRD
# (deploy/crds), and the gRPC API's Go code (rollout/rolloutpb). The output
# is committed; e2e/generate fails when it is stale.
generate:
	@bash e2e/tools/generate.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e $(E2E_PKGS)

unit:
	$(GO) test -race -count=1 ./...
	cd e2e/tools/images && $(GO) test -count=1 ./...

e2e: tools
	$(GO) test -tags e2e -count=1 -timeout 30m $(E2E_FLAGS) $(E2E_PKGS)

test: lint unit e2e

demo: tools
	$(GO) run ./e2e/cmd/demo

# A sandbox that stays up until Ctrl-C, with its kubeconfig printed.
sandbox: tools
	$(GO) run ./e2e/cmd/sandbox

# Benchmarks print their figures: Decide and mesh emulator throughput (one
# core), the sandbox's cold start, and how long a faulty canary serves
# users (first bad response to 0%, bad responses): under the demo policy,
# then under it and under the same steps judged by the error-rate
# comparison, side by side at 10 canary requests a second; and the
# engine's memory with 5,000 unrelated Deployments in the cluster,
# cluster-wide and namespaced.
bench: tools
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./...
	$(GO) test -tags e2e -run '^$$' -bench ColdStart -benchtime 3x ./e2e/sandbox
	$(GO) test -tags e2e -run '^$$' -bench FaultyCanary -benchtime 3x ./e2e/compare
	$(GO) test -tags e2e -run '^$$' -bench EngineMemory -benchtime 1x -timeout 30m ./e2e/rollout

# One engine over N opted-in Deployments (1 replica, 1 request a second
# each), M of them rolled out at once, in the sandbox: adoption time, time
# to the first canary weight and to Succeeded, reconcile latency, API calls
# and PromQL queries per step, engine, API server and Prometheus memory.
# ENGINE_FLAGS=... tries the engine's flags; SYNCS=20 runs Kubernetes'
# Deployment and ReplicaSet controllers with 20 workers each (default 5).
N ?= 200
M ?= 40
bench-scale: tools
	FLEDGE_SCALE_N=$(N) FLEDGE_SCALE_M=$(M) FLEDGE_SCALE_ENGINE_FLAGS="$(ENGINE_FLAGS)" FLEDGE_SCALE_CONTROLLER_SYNCS=$(SYNCS) $(GO) test -tags e2e -run '^$$' -bench Scale -benchtime 1x -timeout 90m ./e2e/scale

# The decision simulator: thousands of seeded rollouts through the real
# decision core (rollout/sim) per policy, scenario and traffic level, with
# a table per scenario. Pass flags with SIM_FLAGS (e.g. -runs 200).
SIM_FLAGS ?=
sim:
	$(GO) run ./e2e/cmd/sim $(SIM_FLAGS)

# OCI images of fledge, fledge-loadtester and fledgectl for linux/amd64 and
# linux/arm64, built without Docker (e2e/tools/images.sh): OCI layouts under
# bin/images/<name>. PUSH=<registry/prefix> pushes them as
# <prefix>/<name>:<version>, with the credentials of ~/.docker/config.json.
PUSH ?=
images:
	@PUSH="$(PUSH)" bash e2e/tools/images.sh

clean:
	rm -rf bin
