#!/usr/bin/env bash
# Builds what a Kubernetes-style (CRI) node needs for the tests, from the Go module proxy:
#   ${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}/containerd-cri-<version>/bin/containerd
#       containerd 2.x built WITH its CRI plugin (install-containerd2.sh builds with no_cri);
#       its own directory, so the no_cri daemon the other tests use is never replaced. ctr
#       and the runc shim are the ones install-containerd2.sh builds (same version).
#   ${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}/cri-tools-<version>/bin/crictl
#       crictl from sigs.k8s.io/cri-tools.
# Idempotent: binaries that exist are not rebuilt. Both are built inside their downloaded
# module directory, with the module's own go.mod/go.sum, by the machine's Go 1.26.
#
# Environment: CONTAINERD2_VERSION, CRITOOLS_VERSION (scripts/versions.sh), IPCS_TOOLS,
#              GO (path of the go command).
set -euo pipefail
. "$(dirname "$0")/versions.sh"
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
cd_bin="$TOOLS/containerd-cri-$CONTAINERD2_VERSION/bin/containerd"
crictl="$TOOLS/cri-tools-$CRITOOLS_VERSION/bin/crictl"
# CGO off drops btrfs anyway; devmapper/zfs snapshotters are never used here.
TAGS="urfave_cli_no_docs no_btrfs no_devmapper no_zfs"

if [ ! -x "$cd_bin" ] || [ ! -x "$crictl" ]; then
  # shellcheck source=scripts/go-module.sh
  . "$(dirname "$0")/go-module.sh"
  GO=$(go_bin)
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
fi
if [ ! -x "$cd_bin" ]; then
  mod=github.com/containerd/containerd/v2
  dir=$(module_dir "$mod" "$CONTAINERD2_VERSION")
  mkdir -p "$(dirname "$cd_bin")"
  start=$(date +%s)
  echo "building containerd $CONTAINERD2_VERSION with CRI (tags: $TAGS)"
  (cd "$dir" && "$GO" build -trimpath -tags "$TAGS" \
      -ldflags "-s -w -X $mod/version.Version=$CONTAINERD2_VERSION -X $mod/version.Revision=$CONTAINERD2_VERSION-cri -X $mod/version.Package=$mod" \
      -o "$cd_bin.tmp" ./cmd/containerd)
  mv "$cd_bin.tmp" "$cd_bin"
  echo "containerd with CRI built in $(( $(date +%s) - start ))s"
fi
if [ ! -x "$crictl" ]; then
  mod=sigs.k8s.io/cri-tools
  dir=$(module_dir "$mod" "$CRITOOLS_VERSION")
  mkdir -p "$(dirname "$crictl")"
  start=$(date +%s)
  echo "building crictl $CRITOOLS_VERSION"
  (cd "$dir" && "$GO" build -trimpath \
      -ldflags "-s -w -X $mod/pkg/version.Version=$CRITOOLS_VERSION" -o "$crictl.tmp" ./cmd/crictl)
  mv "$crictl.tmp" "$crictl"
  echo "crictl built in $(( $(date +%s) - start ))s"
fi
"$cd_bin" --version
"$crictl" --version
echo "cri ok: $cd_bin $crictl"
