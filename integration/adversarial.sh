#!/usr/bin/env bash
# Adversarial run: >= 10 000 malformed or hostile requests (examples/adversarial.rs) over
# the real socket of `ipcs serve` backed by an offline Kubo, then checks:
#   - ipcs is alive and its log has no "panicked";
#   - every outcome was a code containerd's contract allows (the client fails otherwise);
#   - no file outside the data dir was created or touched: a canary tree, ipcs's cwd and
#     the data dir's parent are snapshotted (find) before and compared after, and nothing
#     there except the data dir and the log is newer than the start;
#   - ipcs's peak RSS (VmHWM) stays under ADV_MAX_RSS_MIB (256);
#   - a normal write/commit/read round trip works afterwards (done by the client).
# Env: ADV_COUNT (12000 scenarios), ADV_CONCURRENCY (16), ADV_SEED (1), ADV_MAX_RSS_MIB.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/stack.sh
. "$root/integration/stack.sh"
COUNT="${ADV_COUNT:-12000}"; CONC="${ADV_CONCURRENCY:-16}"; SEED="${ADV_SEED:-1}"
MAX_RSS_MIB="${ADV_MAX_RSS_MIB:-256}"
IPCS_EXTRA_ARGS=()

cargo build --release --offline --quiet --bin ipcs --example adversarial
work=$(mktemp -d /tmp/ipcs-adv-XXXXXX)
cleanup() { stack_stop; [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
cp "$root/target/release/examples/adversarial" "$work/adversarial"

mkdir -p "$work/canary/etc" "$work/canary/tmp"
echo "root:x:0:0" >"$work/canary/etc/passwd"; echo keep >"$work/canary/tmp/x"
snapshot() {  # everything under $work except the data dir and the log: path, type, size, mtime
  (cd "$work" && find . -path ./data -prune -o ! -name ipcs.log -printf '%p %y %s %T@\n' | sort)
}
stamp="$work/start-stamp"; touch "$stamp"; sleep 1
stack_start "$work"
before=$(snapshot)
passwd_before=$(stat -c '%Y %s' /etc/passwd)

fail=0
set +e
"$work/adversarial" --socket "$SOCK" --count "$COUNT" --concurrency "$CONC" --seed "$SEED"
rc=$?
set -e
[ $rc -eq 0 ] || { echo "FAIL: adversarial client exited $rc"; fail=1; }

stack_health "$MAX_RSS_MIB" || fail=1

after=$(snapshot)
if [ "$before" != "$after" ]; then
  echo "FAIL: files outside the data dir changed:"; diff <(echo "$before") <(echo "$after") | head -20; fail=1
else echo "files outside the data dir: unchanged ($(echo "$before" | wc -l) entries)"; fi
newer=$(cd "$work" && find . -path ./data -prune -o -newer "$stamp" ! -name ipcs.log ! -path ./run ! -path ./run/ipcs.sock ! -path . ! -name ipcs-bin ! -name adversarial ! -path ./cwd-canary -print)
if [ -n "$newer" ]; then echo "FAIL: touched outside the data dir since start:"; echo "$newer" | head; fail=1
else echo "nothing outside the data dir newer than the start"; fi
[ -z "$(ls -A "$work/cwd-canary")" ] || { echo "FAIL: ipcs's cwd is not empty"; ls -la "$work/cwd-canary"; fail=1; }
[ "$(stat -c '%Y %s' /etc/passwd)" = "$passwd_before" ] || { echo "FAIL: /etc/passwd changed"; fail=1; }
[ ! -e /tmp/ipcs-escape ] || { echo "FAIL: /tmp/ipcs-escape exists"; fail=1; }
stray=$(find "$DATA" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | tr '\n' ' ')
echo "data dir top level: $stray"

if [ $fail -eq 0 ]; then echo "ADVERSARIAL: PASS"; else echo "ADVERSARIAL: FAIL"; fi
exit $fail
