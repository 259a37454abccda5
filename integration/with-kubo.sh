#!/usr/bin/env bash
# Runs a command with a fresh, offline Kubo node: exports IPCS_TEST_KUBO_API (and
# IPFS_BIN), runs "$@", stops the node. The tests talk to this real Kubo, never a mock.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/ipcs-kubo-XXXXXX)
cleanup() { "$here/scripts/kubo-node.sh" stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
IPCS_TEST_KUBO_API=$("$here/scripts/kubo-node.sh" start "$dir" --offline)
export IPCS_TEST_KUBO_API
export IPFS_BIN="${IPFS_BIN:-${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}/bin/ipfs}"
echo "kubo test node: $IPCS_TEST_KUBO_API ($dir)" >&2
"$@"
