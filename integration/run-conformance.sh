#!/usr/bin/env bash
# Runs containerd 1.6.20's own content-store conformance suite (content/testsuite, 12 cases)
# against a fresh `ipcs serve` backed by a fresh offline Kubo node, through containerd's own
# proxy client (content/proxy) on a unix socket. Offline: Debian's Go 1.19 and Debian's Go
# sources (golang-github-containerd-containerd-dev), GOPATH mode.
#
#   integration/run-conformance.sh
#
# Environment:
#   IPCS_BIN              server binary (default target/release/ipcs); run as
#                         `$IPCS_BIN serve --socket S --data-dir D --kubo-api URL`
#   CONFORMANCE_KUBO_API  use this already running Kubo API instead of starting a node
#   CONFORMANCE_TIMEOUT   -test.timeout of each case (default 2m)
#   CONFORMANCE_BUDGET    time budget for all 12 cases (default 10m); cases left when it is
#                         spent are reported as failed ("not run")
#   CONFORMANCE_KEEP=1    keep the temporary directory (socket, data, logs) afterwards
#   GO119                 Go 1.19 binary (default /usr/lib/go-1.19/bin/go; never /usr/local/go)
#
# Each case runs in its own invocation of the test binary (-test.run TestContent/^CASE$), so
# a hung or crashing case cannot hide the results of the others (Go prints subtest results
# only when the parent test ends). The harness empties the store (Abort every ingest,
# Delete every blob) before and after every case.
#
# Last line of output: `conformance: N passed, M failed`. Exit 0 only if all 12 cases passed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO119:-/usr/lib/go-1.19/bin/go}
IPCS_BIN=${IPCS_BIN:-$ROOT/target/release/ipcs}
# shellcheck source=integration/lib.sh
. "$ROOT/integration/lib.sh"
BUILD_DIR=$ROOT/target/conformance
TEST_BIN=$BUILD_DIR/conformance.test
CASE_TIMEOUT=${CONFORMANCE_TIMEOUT:-2m}
BUDGET=${CONFORMANCE_BUDGET:-10m}
CASES=(Writer UpdateStatus CommitExists Resume ResumeTruncate ResumeDiscard ResumeCopy
       ResumeCopySeeker ResumeCopyReaderAt SmallBlob Labels CommitErrorState)

# Go duration (e.g. 10m, 90s, 1h, 1m30s) -> whole seconds; for the outer watchdog.
to_seconds() {
  local d=$1 total=0 n u
  while [[ $d =~ ^([0-9]+)(h|m|s)(.*)$ ]]; do
    n=${BASH_REMATCH[1]}; u=${BASH_REMATCH[2]}; d=${BASH_REMATCH[3]}
    case $u in h) total=$((total + n * 3600));; m) total=$((total + n * 60));; s) total=$((total + n));; esac
  done
  [ -z "$d" ] && [ "$total" -gt 0 ] || { echo "bad duration $1 (use e.g. 10m, 90s)" >&2; exit 2; }
  echo "$total"
}
say() { echo "conformance: $*" >&2; }

# The result line is printed by the EXIT trap, after teardown and log dumps, so that it is
# always the last line, whatever path the script leaves by.
passed=0; failed=${#CASES[@]}; ok=""
TMP=""; server_pid=""; kubo_started=""; test_pid=""; tail_pid=""
finish() {
  local rc=$?
  set +e
  trap - INT TERM
  for p in $test_pid $tail_pid; do   # a case interrupted by a signal
    kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
  done
  stop_pid "$server_pid" TERM 5
  if [ -n "$kubo_started" ]; then
    timeout 30 "$ROOT/scripts/kubo-node.sh" stop "$KUBO_DIR" >/dev/null 2>&1
  fi
  if [ -n "$TMP" ]; then
    if [ "$ok" != 1 ] && [ -f "$IPCS_LOG" ]; then
      echo "----- server log ($IPCS_BIN, last 300 lines) -----"
      tail -n 300 "$IPCS_LOG"
      echo "----- end of server log -----"
    fi
    if [ "${CONFORMANCE_KEEP:-}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
  fi
  failed=$(( ${#CASES[@]} - passed ))   # a case that did not pass (or never ran) failed
  echo "conformance: $passed passed, $failed failed"
  if [ "$ok" = 1 ]; then exit 0; fi
  [ "$rc" -ne 0 ] && exit "$rc"
  exit 1
}
trap finish EXIT
trap 'exit 130' INT TERM

CASE_SECS=$(to_seconds "$CASE_TIMEOUT")
BUDGET_SECS=$(to_seconds "$BUDGET")

# ---- build the harness (cached by Go's build cache; cheap when nothing changed) ----
"$GO" version 2>/dev/null | grep -q 'go1\.19' || { say "need Go 1.19 at $GO (apt: golang-go)"; exit 1; }
mkdir -p "$BUILD_DIR"
say "building harness -> $TEST_BIN"
if ! (cd "$ROOT" && env -u GOROOT -u GOFLAGS -u GOTOOLCHAIN GO111MODULE=off \
        GOPATH="$ROOT/integration/conformance:/usr/share/gocode" \
        timeout 600 "$GO" test -c -o "$TEST_BIN.tmp" ipcsconformance); then
  say "harness build failed"; exit 1
fi
mv -f "$TEST_BIN.tmp" "$TEST_BIN"

[ -x "$IPCS_BIN" ] || { say "server binary $IPCS_BIN missing (cargo build --release, or set IPCS_BIN)"; exit 1; }

# ---- fresh Kubo node + server, torn down by finish() ----
TMP=$(mktemp -d /tmp/ipcs-conformance.XXXXXX)
KUBO_DIR=$TMP/kubo
SOCK=$TMP/ipcs.sock
DATA=$TMP/data
IPCS_LOG=$TMP/ipcs.log
TEST_LOG=$TMP/test.log

if [ -n "${CONFORMANCE_KUBO_API:-}" ]; then
  KUBO_API=$CONFORMANCE_KUBO_API
  say "using existing Kubo API $KUBO_API"
else
  kubo_started=1
  if ! KUBO_API=$(timeout 90 "$ROOT/scripts/kubo-node.sh" start "$KUBO_DIR" --offline); then
    say "could not start Kubo (is ~/.cache/ipcs-tools/bin/ipfs built? scripts/install-kubo.sh)"
    exit 1
  fi
  say "Kubo (offline) at $KUBO_API"
fi

mkdir -p "$DATA"
export IPCS_SOCKET=$SOCK IPCS_DATA_DIR=$DATA IPCS_KUBO_API=$KUBO_API
say "starting $IPCS_BIN serve --socket $SOCK"
if ! start_ipcs --bin "$IPCS_BIN" --socket "$SOCK" --data "$DATA" --log "$IPCS_LOG" --kubo "$KUBO_API"; then
  say "ipcs did not start (log above)"; exit 1
fi
server_pid=$IPCS_STARTED_PID

# ---- run the cases ----
declare -A verdict
passed=0; failed=0
deadline=$((SECONDS + BUDGET_SECS))
idx=0
for c in "${CASES[@]}"; do
  idx=$((idx + 1))
  left=$((deadline - SECONDS))
  if [ "$left" -lt 5 ]; then
    verdict[$c]="FAIL $c (not run: budget $BUDGET spent)"; failed=$((failed + 1)); continue
  fi
  secs=$(( CASE_SECS < left ? CASE_SECS : left ))
  log=$TMP/case-$c.log
  : >"$log"
  say "case $c (timeout ${secs}s)"
  # Background + wait, so that INT/TERM reach finish() at once; the timeout wrapper is a
  # second bound in case the binary ignores its own -test.timeout.
  # IPCS_CONFORMANCE_SEED: distinct generated content per case, as in one single run.
  (cd "$TMP" && IPCS_CONFORMANCE_SEED=$((idx * 1000)) exec timeout --kill-after=10 $((secs + 30)) "$TEST_BIN" -test.v -test.count=1 \
      -test.timeout "${secs}s" -test.run "^TestContent\$/^$c\$") >"$log" 2>&1 &
  test_pid=$!
  tail -s 0.2 -n +1 -f --pid="$test_pid" "$log" &
  tail_pid=$!
  set +e; wait "$test_pid"; rc=$?; wait "$tail_pid"; set -e
  test_pid=""; tail_pid=""
  if grep -Eq -- "^[[:space:]]*--- PASS: TestContent/$c \(" "$log"; then
    if [ "$rc" -eq 0 ]; then
      verdict[$c]="PASS $c"; passed=$((passed + 1))
    else
      verdict[$c]="FAIL $c (case passed, but the test binary exited $rc)"; failed=$((failed + 1))
    fi
  elif grep -Eq -- "^[[:space:]]*--- FAIL: TestContent/$c \(" "$log"; then
    verdict[$c]="FAIL $c"; failed=$((failed + 1))
  elif grep -q "panic: test timed out" "$log" || [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    verdict[$c]="FAIL $c (timed out after ${secs}s)"; failed=$((failed + 1))
  else
    verdict[$c]="FAIL $c (no result, test binary exit $rc)"; failed=$((failed + 1))
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    say "the server died during case $c"
    for r in "${CASES[@]}"; do
      [ -n "${verdict[$r]:-}" ] || { verdict[$r]="FAIL $r (not run: server died)"; failed=$((failed + 1)); }
    done
    break
  fi
done

echo "conformance: per case:"
for c in "${CASES[@]}"; do echo "  ${verdict[$c]}"; done
if [ "$passed" -eq ${#CASES[@]} ] && [ "$failed" -eq 0 ]; then ok=1; fi
exit 0   # finish() reports and sets the exit status
