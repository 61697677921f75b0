#!/usr/bin/env bash
# Makes the generators behind `make generate` ready in BIN (the first
# argument): the code generators from the pinned tools modules
# e2e/tools/codegen and e2e/tools/proto (a link step once Go's build cache
# holds them), Helm from e2e/tools/helm (it renders deploy/'s plain
# manifests from the chart, and the chart's tests lint and template it),
# and Debian's protoc with the well-known types, installed
# when missing (as root). Used by make tools and by generate.sh.
set -euo pipefail

tools=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: generators.sh BIN}
mkdir -p "$bin"

if ! command -v protoc >/dev/null || [[ ! -f /usr/include/google/protobuf/timestamp.proto ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "generators: protoc is missing: install Debian's protobuf-compiler and libprotobuf-dev" >&2
		exit 1
	fi
	echo "generators: installing protoc from Debian's packages" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends protobuf-compiler libprotobuf-dev >/dev/null
fi

(cd "$tools/codegen" && go build -o "$bin/" \
	k8s.io/code-generator/cmd/deepcopy-gen k8s.io/code-generator/cmd/client-gen \
	k8s.io/code-generator/cmd/lister-gen k8s.io/code-generator/cmd/informer-gen \
	sigs.k8s.io/controller-tools/cmd/controller-gen)
(cd "$tools/proto" && go build -o "$bin/" \
	google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc)
(cd "$tools/helm" && go build -o "$bin/" helm.sh/helm/v4/cmd/helm)
