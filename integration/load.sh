#!/usr/bin/env bash
# Load test: examples/load.rs against `ipcs serve` backed by an offline Kubo node:
# LOAD_WRITERS (64) writers on distinct refs, LOAD_CONTENDERS (8) on one ref and
# LOAD_READERS (32) readers for LOAD_SECS (60) seconds. The client checks deadlines,
# progress, lost commits and Kubo pins; this script also checks that ipcs stays alive
# without a panic and that its peak RSS (VmHWM) stays under LOAD_MAX_RSS_MIB (256).
#   integration/load.sh            # 60 s (make test-load)
#   LOAD_SECS=10 integration/load.sh   # short run (make test-reliability-load)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/stack.sh
. "$root/integration/stack.sh"
SECS="${LOAD_SECS:-60}"; MAX_RSS_MIB="${LOAD_MAX_RSS_MIB:-256}"
IPCS_EXTRA_ARGS=()

cargo build --release --offline --quiet --bin ipcs --example load
work=$(mktemp -d /tmp/ipcs-load-XXXXXX)
cleanup() { stack_stop; [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
cp "$root/target/release/examples/load" "$work/load"
stack_start "$work"

fail=0
set +e
"$work/load" --socket "$SOCK" --kubo-api "$KUBO_API" --secs "$SECS" \
  --writers "${LOAD_WRITERS:-64}" --contenders "${LOAD_CONTENDERS:-8}" --readers "${LOAD_READERS:-32}" \
  --max-blob-kib "${LOAD_MAX_BLOB_KIB:-64}" --deadline-secs "${LOAD_DEADLINE_SECS:-30}" \
  --stall-secs "${LOAD_STALL_SECS:-1}"
rc=$?
set -e
[ $rc -eq 0 ] || { echo "FAIL: load client exited $rc"; fail=1; }
stack_health "$MAX_RSS_MIB" || fail=1
if [ $fail -eq 0 ]; then echo "LOAD TEST: PASS"; else echo "LOAD TEST: FAIL"; fi
exit $fail
