#!/usr/bin/env bash
# Builds fledge's OCI images without Docker (called by `make images`):
# static binaries of cmd/fledge, cmd/fledge-loadtester and cmd/fledgectl for
# every platform, then the images from them with go-containerregistry
# (e2e/tools/images, a pinned tools module), written as OCI layouts under
# OUT (default bin/images), and pushed when PUSH names a registry/prefix.
#
# Everything an image holds is fixed by the commit: the binaries are built
# with -trimpath and no VCS stamping (the version, commit and commit time
# go in with -ldflags), every file and the image carry the commit's time,
# and the CA certificates are Debian's ca-certificates package's files
# (/usr/share/ca-certificates/mozilla), never the build machine's
# /etc/ssl/certs, which may hold local CAs. So two builds of one commit on
# machines with the same Go and the same package give the same digests.
#
# Environment: OUT, PUSH, BINARIES (where the binaries are built, default
# bin/images-binaries), PLATFORMS (default "linux/amd64 linux/arm64"),
# VERSION (default: git describe --tags --always --dirty).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-bin/images}
platforms=${PLATFORMS:-linux/amd64 linux/arm64}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}
revision=$(git rev-parse HEAD)
if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
	revision+="-modified"
fi
created=$(git log -1 --format=%cI)

if [[ ! -d /usr/share/ca-certificates/mozilla ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "images: Debian's ca-certificates is missing: install it" >&2
		exit 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null
fi
ca_package="ca-certificates $(dpkg-query -W -f='${Version}' ca-certificates)"

pkg=github.com/prometheus/common/version
ldflags="-s -w -X $pkg.Version=$version -X $pkg.Revision=$revision -X $pkg.BuildDate=$created"
build=${BINARIES:-bin/images-binaries}
platforms_csv=
for p in $platforms; do
	os=${p%/*} arch=${p#*/}
	echo "images: building binaries for $os/$arch" >&2
	mkdir -p "$build/${os}_$arch"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false -ldflags "$ldflags" \
		-o "$build/${os}_$arch/" ./cmd/fledge ./cmd/fledge-loadtester ./cmd/fledgectl
	platforms_csv+=${platforms_csv:+,}$p
done

mkdir -p bin
(cd e2e/tools/images && go build -o "$root/bin/oci-images" .)
bin/oci-images build --binaries "$build" --out "$out" --platforms "$platforms_csv" \
	--version "$version" --revision "$revision" --created "$created" --ca-package "$ca_package" ${PUSH:+--push "$PUSH"}
