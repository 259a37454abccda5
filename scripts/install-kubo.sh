#!/usr/bin/env bash
# Builds a pinned Kubo from the Go module proxy into $IPCS_TOOLS/bin. Idempotent.
# Kubo's go.mod carries replace directives, so `go install pkg@v` refuses it; we build
# inside the downloaded module directory instead, which uses exactly Kubo's own go.sum.
# v0.42.0 is the newest release that builds here (v0.43.1 needs a go-libp2p fork the proxy
# does not serve); it builds with the machine's Go 1.26 (KUBO_GO=local). Another version:
#   KUBO_VERSION=v0.41.0 make setup-kubo
set -euo pipefail
. "$(dirname "$0")/versions.sh"
KUBO_GO="${KUBO_GO:-local}"
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
bin="$TOOLS/bin/ipfs-$KUBO_VERSION"
mkdir -p "$TOOLS/bin"
if [ ! -x "$bin" ]; then
  # shellcheck source=scripts/go-module.sh
  . "$(dirname "$0")/go-module.sh"
  GO=$(go_bin)
  export GOTOOLCHAIN="$KUBO_GO" GOFLAGS=-mod=mod
  dir=$(module_dir github.com/ipfs/kubo "$KUBO_VERSION")
  (cd "$dir" && "$GO" build -trimpath -o "$bin.tmp" ./cmd/ipfs)
  mv "$bin.tmp" "$bin"
fi
ln -sf "$bin" "$TOOLS/bin/ipfs"
echo "kubo $("$bin" version --number) ok: $bin"
