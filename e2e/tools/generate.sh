#!/usr/bin/env bash
# Regenerates everything generated in the tree (called by `make generate`):
#   - deepcopy functions of the Flight API and of the types its status holds
#     (k8s.io/code-generator's deepcopy-gen);
#   - the typed clientset, listers and informers of the Flight API under
#     rollout/client (client-gen, lister-gen, informer-gen);
#   - the Flight CRD manifest deploy/crds/flights.fledge.dev.yaml, from the
#     Go types and their markers (controller-tools' controller-gen);
#   - the gRPC API's Go code rollout/rolloutpb (protoc with the Go plugins);
#   - the plain manifests of deploy/ (rbac*.yaml, fledge.yaml, policies.yaml,
#     loadtester.yaml), rendered from the Helm chart deploy/chart/fledge, and
#     the chart's copy of the CRD;
#   - the Grafana dashboard deploy/dashboards/fledge.json (e2e/tools/dashboards,
#     built with the Grafana Foundation SDK).
#
# The generators are built from the pinned tools modules e2e/tools/codegen
# and e2e/tools/proto into bin/ (seconds once Go's build cache is warm), and
# protoc is Debian's (3.21.12), installed when missing: generators.sh.
#
# With a directory argument, it generates in that copy of the tree instead
# (the staleness test does that, then compares the copy with the tree).
set -euo pipefail

self=$(cd "$(dirname "$0")/../.." && pwd)
root=$(cd "${1:-$self}" && pwd)
bin="$root/bin"
mkdir -p "$bin"
mod=github.com/fledgehq/fledge
api=$mod/rollout/apis/fledge/v1alpha1
header="$root/e2e/tools/codegen/header.go.txt"

log() { printf 'generate: %s\n' "$*" >&2; }

# Generators, built from their pinned modules, and protoc.
bash "$root/e2e/tools/generators.sh" "$bin"

cd "$root"

# Deepcopy: the Flight API (every type, by its package tag) and the types
# from webhooks and analysis/sequential that its status holds (by their
# type tags; analysis.Check
# and webhooks.Notification hold a time.Time, which deepcopy-gen cannot
# copy, and have DeepCopyInto methods written by hand).
log "deepcopy-gen"
"$bin/deepcopy-gen" --go-header-file "$header" --output-file zz_generated.deepcopy.go \
	"$api" "$mod/webhooks" "$mod/analysis/sequential"

# The typed clientset, listers and informers. Each generator writes its
# whole tree, so the old one goes first: nothing stale survives a rename.
rm -rf rollout/client/clientset rollout/client/listers rollout/client/informers
log "client-gen, lister-gen, informer-gen"
"$bin/client-gen" --go-header-file "$header" --clientset-name versioned \
	--input-base "$mod/rollout/apis" --input fledge/v1alpha1 \
	--output-dir rollout/client/clientset --output-pkg "$mod/rollout/client/clientset"
"$bin/lister-gen" --go-header-file "$header" \
	--output-dir rollout/client/listers --output-pkg "$mod/rollout/client/listers" "$api"
"$bin/informer-gen" --go-header-file "$header" \
	--versioned-clientset-package "$mod/rollout/client/clientset/versioned" \
	--listers-package "$mod/rollout/client/listers" \
	--output-dir rollout/client/informers --output-pkg "$mod/rollout/client/informers" "$api"

# The CRD, from the types. controller-gen names its file after the group
# and resource; the manifest keeps the name the install and docs use.
log "controller-gen"
crds=$(mktemp -d)
trap 'rm -rf "$crds"' EXIT
# Floats (check values, load-test figures) are allowed: the status is
# written and read by Go alone, and today's Flights hold them.
"$bin/controller-gen" crd:allowDangerousTypes=true paths=./rollout/apis/... output:crd:dir="$crds"
{
	echo "# The Flight: fledge's record of one opted-in Deployment (same name, same"
	echo "# namespace, owned by it). fledge writes it; people and pipelines read it:"
	echo "#   kubectl get flights"
	echo "# Generated from rollout/apis/fledge/v1alpha1 by controller-gen (make generate):"
	echo "# edit the Go types and their markers, not this file."
	cat "$crds/fledge.dev_flights.yaml"
} >deploy/crds/flights.fledge.dev.yaml
# The chart installs the same CRD (templates/crds.yaml reads it from its
# files: Helm reads nothing outside the chart).
cp deploy/crds/flights.fledge.dev.yaml deploy/chart/fledge/files/flights.fledge.dev.yaml

# The plain manifests of deploy/, rendered from the chart (the one source
# of fledge's install: RBAC, the engine, its policies) with
# deploy/chart/plain-values.yaml.
log "helm template"
chart=deploy/chart/fledge
render() { # render OUT HEADER TEMPLATE... [-- HELM-ARGS]
	local out=$1 header=$2
	shift 2
	local shows=() args=()
	while (($#)); do
		if [[ $1 == -- ]]; then
			shift
			args=("$@")
			break
		fi
		shows+=(--show-only "templates/$1")
		shift
	done
	{
		printf '%s\n' "$header"
		echo "# Rendered from the Helm chart deploy/chart/fledge by make generate: edit the"
		echo "# chart (or deploy/chart/plain-values.yaml), not this file."
		"$bin/helm" template fledge "$chart" --namespace fledge-system -f deploy/chart/plain-values.yaml \
			"${shows[@]}" "${args[@]}" | sed -e '/^# Source: /d'
	} >"$out"
}
render deploy/rbac.yaml "# fledge's permissions. Apply after deploy/namespace.yaml and deploy/crds/." \
	serviceaccount.yaml rbac.yaml rbac-aggregate.yaml
render deploy/rbac-namespace.yaml "# Lets fledge act in one namespace: kubectl -n shop apply -f deploy/rbac-namespace.yaml, and list it in the engine's --namespaces (deploy/fledge.yaml)." \
	rbac-bindings.yaml -- --set 'namespaces[0]='
render deploy/rbac-cluster.yaml "# Cluster-wide mode: apply this instead of deploy/rbac-namespace.yaml, and run the engine with --all-namespaces." \
	rbac-bindings.yaml -- --set allNamespaces=true --set namespaces=null
render deploy/policies.yaml "# fledge's shipped policies (the chart's files/policies.yaml)." policies.yaml
render deploy/fledge.yaml "# The fledge engine: two replicas, one leading. Apply deploy/namespace.yaml, deploy/crds/, deploy/rbac.yaml, deploy/policies.yaml, the Secret fledge-api-tls (or see deploy/README.md to serve no API), then this file." \
	deployment.yaml services.yaml pdb.yaml
render deploy/loadtester.yaml "# fledge-loadtester: optional; apply it when a policy's hook names it." \
	loadtester.yaml -- --set loadtester.enabled=true

# The gRPC API.
log "protoc"
protoc -I . -I /usr/include \
	--plugin=protoc-gen-go="$bin/protoc-gen-go" --go_out=. --go_opt=paths=source_relative \
	--plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" --go-grpc_out=. --go-grpc_opt=paths=source_relative \
	rollout/rolloutpb/rollouts.proto

# The Grafana dashboard, as code: its tools module pins the Grafana
# Foundation SDK, which stays out of fledge's own go.mod.
log "dashboards"
(cd e2e/tools/dashboards && go build -o "$bin/dashboards" .)
"$bin/dashboards" deploy/dashboards/fledge.json

# Generated Go code is formatted as gofmt wants it, so `make lint` passes.
gofmt -w rollout/client $(find rollout/apis analysis webhooks -name 'zz_generated.*.go')
