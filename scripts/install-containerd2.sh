#!/usr/bin/env bash
# Builds a pinned containerd 2.x (containerd, ctr, containerd-shim-runc-v2) from its module
# source, fetched through the Go module proxy, into
#   ${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}/containerd-<version>/bin/
# Idempotent: binaries that already exist are not rebuilt. Prints the installed version.
#
# containerd's go.mod may carry replace directives, so `go install pkg@v` can refuse it; we
# build inside the downloaded module directory instead, with exactly containerd's own go.sum.
# The Go toolchain is pinned too (served by the module proxy as golang.org/toolchain).
#
# Build tags: CGO is off, so btrfs (cgo only) is dropped anyway; no_devmapper/no_zfs keep
# snapshotters we never use out, and no_cri drops the Kubernetes CRI plugin (ipcs needs only
# pull/unpack/mount; it is also disabled in plugin-config/containerd-2.toml). Set
# CONTAINERD_BUILDTAGS to override (e.g. without no_cri for a CRI-capable daemon).
#
# Environment: CONTAINERD2_VERSION (default v2.4.2), CONTAINERD2_GO (default local:
#              the machine's Go 1.26),
#              CONTAINERD_BUILDTAGS, IPCS_TOOLS, GO (path of the go command).
set -euo pipefail
. "$(dirname "$0")/versions.sh"
VERSION="$CONTAINERD2_VERSION"
GO_TOOLCHAIN="${CONTAINERD2_GO:-local}"
TAGS="${CONTAINERD_BUILDTAGS:-urfave_cli_no_docs no_btrfs no_devmapper no_zfs no_cri}"
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
prefix="$TOOLS/containerd-$VERSION"
bindir="$prefix/bin"
mkdir -p "$bindir"

need=()
for b in containerd ctr containerd-shim-runc-v2; do
  [ -x "$bindir/$b" ] || need+=("$b")
done

if [ ${#need[@]} -gt 0 ]; then
  # shellcheck source=scripts/go-module.sh
  . "$(dirname "$0")/go-module.sh"
  GO=$(go_bin)
  export GOTOOLCHAIN="$GO_TOOLCHAIN" GOFLAGS=-mod=mod CGO_ENABLED=0
  mod=github.com/containerd/containerd/v2
  dir=$(module_dir "$mod" "$VERSION")
  ldflags="-s -w -X $mod/version.Version=$VERSION -X $mod/version.Revision=$VERSION -X $mod/version.Package=$mod"
  start=$(date +%s)
  for b in "${need[@]}"; do
    tags="$TAGS"
    # The shim does not serve gRPC (ttrpc only); containerd's Makefile builds it with no_grpc.
    [ "$b" = containerd-shim-runc-v2 ] && tags="$TAGS no_grpc"
    echo "building $b $VERSION with $GO_TOOLCHAIN (tags: $tags)"
    (cd "$dir" && "$GO" build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$bindir/$b.tmp" "./cmd/$b")
    mv "$bindir/$b.tmp" "$bindir/$b"
  done
  echo "containerd $VERSION built in $(( $(date +%s) - start ))s"
fi

"$bindir/containerd" --version
"$bindir/ctr" --version
echo "containerd $VERSION ok: $bindir"
