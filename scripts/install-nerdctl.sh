#!/usr/bin/env bash
# Builds a pinned nerdctl (github.com/containerd/nerdctl/v2, ./cmd/nerdctl) from its module
# source, fetched through the Go module proxy, into
#   ${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}/nerdctl-<version>/bin/nerdctl
# Idempotent: skips the build when the binary exists. Prints the installed version.
# Only the binary: `nerdctl pull` needs no CNI plugins (only `nerdctl run` does).
# Built from a copy of the downloaded module directory with a pinned Go toolchain from the
# module proxy. nerdctl's go.mod replaces github.com/containerd/nerdctl/mod/tigron with
# ./mod/tigron, a nested module that the module zip leaves out and the proxy does not serve;
# cmd/nerdctl reaches it only through test helpers (pkg/testutil needs the interface tig.T),
# so the copy gets a minimal stand-in for that one package.
#
# Environment: NERDCTL_VERSION (default v2.3.5, whose go.mod requires containerd v2.3.2),
#              NERDCTL_GO (default local: the machine's Go 1.26), IPCS_TOOLS, GO (path of the go command).
set -euo pipefail
. "$(dirname "$0")/versions.sh"
VERSION="$NERDCTL_VERSION"
GO_TOOLCHAIN="${NERDCTL_GO:-local}"
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
bindir="$TOOLS/nerdctl-$VERSION/bin"
bin="$bindir/nerdctl"
mkdir -p "$bindir"
if [ ! -x "$bin" ]; then
  # shellcheck source=scripts/go-module.sh
  . "$(dirname "$0")/go-module.sh"
  GO=$(go_bin)
  export GOTOOLCHAIN="$GO_TOOLCHAIN" GOFLAGS=-mod=mod CGO_ENABLED=0
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mod=github.com/containerd/nerdctl/v2
  dir=$(module_dir "$mod" "$VERSION")
  src="$scratch/nerdctl"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  if [ ! -f "$src/mod/tigron/go.mod" ]; then
    mkdir -p "$src/mod/tigron/tig"
    printf 'module github.com/containerd/nerdctl/mod/tigron\n\ngo 1.23\n' >"$src/mod/tigron/go.mod"
    cat >"$src/mod/tigron/tig/t.go" <<'GO'
// Package tig: build-only stand-in for nerdctl's test module (only the T interface is needed).
package tig

type T interface {
	Helper()
	FailNow()
	Fail()
	Log(args ...any)
	Name() string
	TempDir() string
	Skip(args ...any)
}
GO
  fi
  start=$(date +%s)
  echo "building nerdctl $VERSION with $GO_TOOLCHAIN"
  (cd "$src" && "$GO" build -trimpath \
      -ldflags "-s -w -X $mod/pkg/version.Version=$VERSION -X $mod/pkg/version.Revision=$VERSION" \
      -o "$bin.tmp" ./cmd/nerdctl)
  mv "$bin.tmp" "$bin"
  echo "nerdctl $VERSION built in $(( $(date +%s) - start ))s"
fi
"$bin" --version
echo "nerdctl $VERSION ok: $bin"
