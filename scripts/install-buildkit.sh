#!/usr/bin/env bash
# Builds a pinned BuildKit (buildkitd, buildctl) from its module source, fetched through the
# Go module proxy, into
#   ${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}/buildkit-<version>/bin/
# Idempotent: binaries that already exist are not rebuilt. Prints the installed version.
#
# Built inside the downloaded module directory (as install-kubo.sh and install-containerd2.sh
# do), so BuildKit's own go.mod/go.sum decide every dependency; v0.34.2 requires containerd
# v2.4.2, the same release the project pins, and Go 1.26.8 (the machine's Go).
# CGO is off: buildkitd then has no seccomp/apparmor helpers, which the containerd worker
# does not need (RUN steps run through containerd's runc shim).
#
# Environment: BUILDKIT_VERSION (scripts/versions.sh), BUILDKIT_GO (default local: the
#              machine's Go), IPCS_TOOLS, GO (path of the go command).
set -euo pipefail
. "$(dirname "$0")/versions.sh"
VERSION="$BUILDKIT_VERSION"
GO_TOOLCHAIN="${BUILDKIT_GO:-local}"
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
bindir="$TOOLS/buildkit-$VERSION/bin"
mkdir -p "$bindir"

need=()
for b in buildkitd buildctl; do
  [ -x "$bindir/$b" ] || need+=("$b")
done

if [ ${#need[@]} -gt 0 ]; then
  # shellcheck source=scripts/go-module.sh
  . "$(dirname "$0")/go-module.sh"
  GO=$(go_bin)
  export GOTOOLCHAIN="$GO_TOOLCHAIN" GOFLAGS=-mod=mod CGO_ENABLED=0
  mod=github.com/moby/buildkit
  dir=$(module_dir "$mod" "$VERSION")
  ldflags="-s -w -X $mod/version.Version=$VERSION -X $mod/version.Revision=$VERSION -X $mod/version.Package=$mod"
  start=$(date +%s)
  for b in "${need[@]}"; do
    echo "building $b $VERSION with $GO_TOOLCHAIN"
    (cd "$dir" && "$GO" build -trimpath -ldflags "$ldflags" -o "$bindir/$b.tmp" "./cmd/$b")
    mv "$bindir/$b.tmp" "$bindir/$b"
  done
  echo "buildkit $VERSION built in $(( $(date +%s) - start ))s"
fi

"$bindir/buildkitd" --version
"$bindir/buildctl" --version
echo "buildkit $VERSION ok: $bindir"
