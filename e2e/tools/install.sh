#!/usr/bin/env bash
# Builds or fetches everything the sandbox runs, into bin/ (called by `make tools`).
#
# The control plane binaries are built from pinned Go modules (the tools
# modules next to this script), once per version: each build lands in a cache
# outside the work tree keyed by the hash of its tools module and build flags,
# so a fresh clone on the same machine links them in seconds instead of
# rebuilding for minutes. Prometheus is Debian's package.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/bin"
cache="${FLEDGE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fledge-tools}"
mkdir -p "$bin" "$cache"

k8s_version=v1.35.4
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=35 -X k8s.io/component-base/version.gitTreeState=clean"

log() { printf 'tools: %s\n' "$*" >&2; }

# key MODULE_DIR EXTRA...: a short hash of a tools module and how it is built.
key() {
	local dir=$1; shift
	{ cat "$dir/go.mod" "$dir/go.sum"; go version; printf '%s\n' "$@"; } | sha256sum | cut -c1-16
}

# build NAME MODULE_DIR LDFLAGS PACKAGE: build one binary into the cache
# unless it is there, then link it into bin/.
build() {
	local name=$1 dir=$2 ldflags=$3 pkg=$4
	local k; k=$(key "$dir" "$ldflags" "$pkg")
	local cached="$cache/$name-$k"
	if [[ -x "$bin/$name" && -f "$bin/.$name.key" && $(cat "$bin/.$name.key") == "$k" ]]; then
		return
	fi
	if [[ ! -x "$cached" ]]; then
		log "building $name (first time for this version: minutes)"
		local start=$SECONDS
		(cd "$dir" && go build -ldflags "$ldflags" -o "$cached.tmp" "$pkg")
		mv "$cached.tmp" "$cached"
		log "built $name in $((SECONDS - start))s"
	fi
	ln -f "$cached" "$bin/$name" 2>/dev/null || cp "$cached" "$bin/$name"
	echo "$k" >"$bin/.$name.key"
}

tools="$root/e2e/tools"
build etcd "$tools/etcd" "-s -w" go.etcd.io/etcd/server/v3
build kube-apiserver "$tools/kube" "$k8s_ldflags" k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager "$tools/kube" "$k8s_ldflags" k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler "$tools/kube" "$k8s_ldflags" k8s.io/kubernetes/cmd/kube-scheduler
build kwok "$tools/kwok" "-s -w" sigs.k8s.io/kwok/cmd/kwok

# kwok's Stage manifests: nodes become Ready and keep a heartbeat, pods become
# Ready, and deleted pods go away (the "fast" lifecycles).
kwok_dir=$(cd "$tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
mkdir -p "$bin/kwok-stages"
for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
	pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
	install -m 0644 "$kwok_dir/kustomize/stage/$f" "$bin/kwok-stages/$(basename "$f")"
done

# Istio's CRDs, from the same istio.io/api version fledge compiles against.
istio_dir=$(cd "$root" && go mod download -json istio.io/api | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
install -m 0644 "$istio_dir/kubernetes/customresourcedefinitions.gen.yaml" "$bin/istio-crds.yaml"

# Prometheus: Debian's package, unless a build of our own is in bin/.
if [[ ! -x "$bin/prometheus" ]] && ! command -v prometheus >/dev/null; then
	if [[ $(id -u) -ne 0 ]]; then
		log "prometheus is missing: install Debian's package (apt-get install prometheus) or put a binary in $bin"
		exit 1
	fi
	log "installing Prometheus from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# The package may start a system service on machines with an init system;
# the sandbox runs its own Prometheus and needs nothing else.
# protoc and the code generators, for make generate and the test that
# keeps generated code current (e2e/generate).
bash "$tools/generators.sh" "$bin"

prom="$bin/prometheus"
[[ -x "$prom" ]] || prom=$(command -v prometheus)
log "ready in $bin: $("$bin/kube-apiserver" --version), $("$bin/etcd" --version | head -1), prometheus $("$prom" --version 2>&1 | head -1 | awk '{print $3}') at $prom"
