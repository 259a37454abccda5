#!/usr/bin/env bash
# Crash-safety loop: a real offline Kubo of its own, `ipcs serve` SIGKILLed at a random
# moment (0.2–3 s) of every round of >= 200 concurrent operations, `ipcs fsck --repair`
# while it is down, restart, and a full consistency check (examples/chaos/). Bounded in
# rounds and time; everything it starts is killed on exit; loopback only.
#
#   integration/chaos.sh            long: 20 rounds x 200 ops (~10 min at most)
#   integration/chaos.sh --short    3 rounds x 200 ops (~1–2 min), part of `make test`
#   CHAOS_SEED=N                    another random sequence (default: 1)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=20; ops=200; limit=600
if [ "${1:-}" = "--short" ]; then rounds=3; ops=200; limit=150; fi
seed="${CHAOS_SEED:-1}"

work=$(mktemp -d /tmp/ipcs-chaos-XXXXXX)
kubo="$work/kubo"
cleanup() {
  local rc=$?
  # The driver kills its ipcs on exit; this catches one left by a driver killed itself.
  if [ -f "$work/run/ipcs.pid" ]; then kill -9 "$(cat "$work/run/ipcs.pid")" 2>/dev/null || true; fi
  "$here/scripts/kubo-node.sh" stop "$kubo" >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ]; then
    echo "# chaos failed; ipcs log tail:"; tail -n 40 "$work/run/ipcs.log" 2>/dev/null | sed 's/^/#   /'
  fi
  if [ -z "${CHAOS_KEEP:-}" ]; then rm -rf "$work"; else echo "# kept $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$here"
cargo build --release --locked --bin ipcs --example chaos >&2
api=$("$here/scripts/kubo-node.sh" start "$kubo" --offline)
echo "# chaos: kubo $api, $rounds rounds x $ops ops, seed $seed, limit ${limit}s"
mkdir -p "$work/run"
"$here/target/release/examples/chaos" --ipcs "$here/target/release/ipcs" \
  --kubo-api "$api" --work "$work/run" --rounds "$rounds" --ops "$ops" \
  --concurrency 8 --seed "$seed" --time-limit "$limit"
