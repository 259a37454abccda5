#!/usr/bin/env bash
# Builds a pinned Kubo from the Go module proxy into $IPCS_TOOLS/bin. Idempotent.
# Kubo's go.mod carries replace directives, so `go install pkg@v` refuses it; we build
# inside the downloaded module directory instead, which uses exactly Kubo's own go.sum.
# The Go toolchain is pinned too (fetched through the module proxy): newer Go releases
# break some of this Kubo's dependencies (cockroachdb/swiss).
set -euo pipefail
KUBO_VERSION="${KUBO_VERSION:-v0.36.0}"
KUBO_GO="${KUBO_GO:-go1.24.6}"
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
