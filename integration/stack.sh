# Sourced by adversarial.sh and load.sh: one offline Kubo node and one `ipcs serve` in a
# work dir, both stopped by `stack_stop` (the callers trap it on EXIT).
#   stack_start WORK   -> sets KUBO_DIR KUBO_API IPCS_PID SOCK DATA IPCS_LOG
#   stack_health MIB   after a run: ipcs alive, no panic logged, peak RSS <= MIB (1 if not)
# ipcs runs with its cwd in WORK/cwd-canary, so a relative path it wrongly created would
# land there and be noticed.
root=${root:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
export IPFS_BIN="${IPFS_BIN:-$TOOLS/bin/ipfs}"
IPCS_PID=""; KUBO_DIR=""

stack_start() {
  local work="$1"
  KUBO_DIR=$(mktemp -d /tmp/ipcs-kubo-XXXXXX)
  KUBO_API=$("$root/scripts/kubo-node.sh" start "$KUBO_DIR" --offline)
  SOCK="$work/run/ipcs.sock"; DATA="$work/data"; IPCS_LOG="$work/ipcs.log"
  mkdir -p "$work/cwd-canary" "$work/run"; chmod 700 "$work/run"
  # A copy: a concurrent `cargo build` must not swap the binary mid-run.
  cp "$root/target/release/ipcs" "$work/ipcs-bin"
  start_ipcs --bin "$work/ipcs-bin" --socket "$SOCK" --data "$DATA" --log "$IPCS_LOG" \
    --kubo "$KUBO_API" --cwd "$work/cwd-canary" -- "${IPCS_EXTRA_ARGS[@]}" || return 1
  IPCS_PID=$IPCS_STARTED_PID
}

stack_stop() {
  stop_pid "$IPCS_PID"
  IPCS_PID=""
  if [ -n "$KUBO_DIR" ]; then
    "$root/scripts/kubo-node.sh" stop "$KUBO_DIR" >/dev/null 2>&1 || true
    rm -rf "$KUBO_DIR"
  fi
  KUBO_DIR=""
}

# Peak resident set of a live process, in KiB.
vmhwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# Prints each verdict on the ipcs a run leaves behind; returns 1 if any failed.
stack_health() {
  local max_mib=$1 bad=0 hwm
  if kill -0 "$IPCS_PID" 2>/dev/null; then echo "ipcs alive: yes"; else echo "FAIL: ipcs died"; bad=1; fi
  if grep -q panicked "$IPCS_LOG"; then echo "FAIL: panic in ipcs log:"; grep -m5 -A3 panicked "$IPCS_LOG"; bad=1
  else echo "panics in ipcs log: 0"; fi
  hwm=$(vmhwm_kib "$IPCS_PID" 2>/dev/null || echo 0)
  echo "ipcs peak RSS (VmHWM): $((hwm / 1024)) MiB (bound ${max_mib} MiB)"
  [ "$hwm" -le $((max_mib * 1024)) ] || { echo "FAIL: VmHWM above bound"; bad=1; }
  return $bad
}
