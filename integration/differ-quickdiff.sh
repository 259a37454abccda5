#!/usr/bin/env bash
# Quick differential check of ipcs's applier against containerd's own archive.Apply, with
# no containerd daemon (seconds, for development; integration/differ-diff.sh is the full
# test through real containerd nodes).
#
#   integration/differ-quickdiff.sh [FUZZ_SEED [FUZZ_COUNT]]   (default 1 200)
#
# Builds a small Go program on containerd $CONTAINERD2_VERSION's pkg/archive (module proxy,
# cached as $IPCS_TOOLS/goapply-<version>) and examples/differ_bench, then runs
# integration/differ/quickdiff/cases.py (hand-made edge cases) and fuzz.py (random layers
# over random bases), each in plain and overlay mode. Needs root. Work dir under /tmp,
# removed at the end. Exit status 0 only if there is no difference.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/versions.sh"
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
goapply="$TOOLS/goapply-$CONTAINERD2_VERSION"
if [ ! -x "$goapply" ]; then
  src=$(mktemp -d /tmp/ipcs-goapply-XXXXXX)
  cp "$root/integration/differ/quickdiff/goapply.go" "$src/main.go"
  printf 'module goapply\n\ngo 1.24\n\nrequire github.com/containerd/containerd/v2 %s\n' \
    "$CONTAINERD2_VERSION" >"$src/go.mod"
  (cd "$src" && GOFLAGS=-mod=mod go build -o "$goapply.tmp" .)
  mv "$goapply.tmp" "$goapply"
  rm -rf "$src"
fi
(cd "$root" && cargo build --release --locked --example differ_bench >/dev/null)
work=$(mktemp -d /tmp/ipcs-quickdiff-XXXXXX)
trap 'rm -rf "$work"' EXIT
export GOAPPLY="$goapply" DIFFER_BENCH="$root/target/release/examples/differ_bench" WORK="$work"
status=0
for run in "cases.py" "fuzz.py ${1:-1} ${2:-200}"; do
  set +e
  # shellcheck disable=SC2086
  python3 "$root/integration/differ/quickdiff/"$run >"$work/out.txt" 2>&1
  rc=$?
  set -e
  grep -v '^ok' "$work/out.txt" || true
  [ "$rc" = 0 ] || status=1
done
if [ "$status" = 0 ]; then echo "differ-quickdiff: 0 differences"; else echo "differ-quickdiff: differences found"; fi
exit "$status"
