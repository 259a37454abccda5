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
  GO="${GO:-/usr/local/go/bin/go}"
  [ -x "$GO" ] || GO=$(command -v go)
  export GOTOOLCHAIN="$KUBO_GO" GOFLAGS=-mod=mod
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  dir=$(cd "$scratch" && "$GO" mod download -json "github.com/ipfs/kubo@$KUBO_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { echo "could not download kubo $KUBO_VERSION" >&2; exit 1; }
  (cd "$dir" && "$GO" build -trimpath -o "$bin.tmp" ./cmd/ipfs)
  mv "$bin.tmp" "$bin"
fi
ln -sf "$bin" "$TOOLS/bin/ipfs"
echo "kubo $("$bin" version --number) ok: $bin"
