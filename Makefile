# fledge: progressive delivery for Kubernetes behind Istio.
#   make demo   run the main job in the local sandbox
#   make test   every test: unit, race, then the end-to-end suites in the sandbox
GO        ?= go
E2E_FLAGS ?=
# Packages built for the e2e tag; the sandbox suites live under e2e/.
E2E_PKGS  ?= ./e2e/...

.PHONY: all build tools test unit e2e lint demo sandbox bench clean generate

all: build

build:
	$(GO) build ./...

# Control plane binaries, kwok, Istio's CRDs and Prometheus for the sandbox:
# built once per pinned version, cached outside the tree, linked into bin/.
tools:
	@bash e2e/tools/install.sh

# Regenerates the gRPC API's Go code (rollout/rolloutpb) from its .proto.
# The output is committed, so nothing else needs protoc. protoc and the
# well-known types are Debian's (3.21.12); the Go plugins are built into bin/
# from the pinned tools module e2e/tools/proto.
PROTO_PKGS = protobuf-compiler libprotobuf-dev
generate:
	@if ! command -v protoc >/dev/null || [ ! -f /usr/include/google/protobuf/timestamp.proto ]; then \
		if [ "$$(id -u)" -ne 0 ]; then echo "generate: install Debian's $(PROTO_PKGS)"; exit 1; fi; \
		echo "generate: installing $(PROTO_PKGS)"; \
		export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
		apt-get install -y -qq --no-install-recommends $(PROTO_PKGS) >/dev/null; \
	fi
	cd e2e/tools/proto && $(GO) build -o $(CURDIR)/bin/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
	protoc -I . -I /usr/include \
		--plugin=protoc-gen-go=bin/protoc-gen-go --go_out=. --go_opt=paths=source_relative \
		--plugin=protoc-gen-go-grpc=bin/protoc-gen-go-grpc --go-grpc_out=. --go-grpc_opt=paths=source_relative \
		rollout/rolloutpb/rollouts.proto

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e $(E2E_PKGS)

unit:
	$(GO) test -race -count=1 ./...

e2e: tools
	$(GO) test -tags e2e -count=1 -timeout 20m $(E2E_FLAGS) $(E2E_PKGS)

test: lint unit e2e

demo: tools
	$(GO) run ./e2e/cmd/demo

# A sandbox that stays up until Ctrl-C, with its kubeconfig printed.
sandbox: tools
	$(GO) run ./e2e/cmd/sandbox

# Benchmarks print their figures: Decide and mesh emulator throughput (one
# core), the sandbox's cold start, and how long a faulty canary serves
# users under the demo policy (first bad response to 0%, bad responses).
bench: tools
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./...
	$(GO) test -tags e2e -run '^$$' -bench ColdStart -benchtime 3x ./e2e/sandbox
	$(GO) test -tags e2e -run '^$$' -bench FaultyCanary -benchtime 3x ./e2e/rollout

clean:
	rm -rf bin
