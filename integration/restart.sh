#!/usr/bin/env bash
# Restarts of ipcs during real pulls, under socket activation (issue 16).
#
#   integration/restart.sh [--short] [--containerd 1.6|2]
#
#   long  (make test-chaos): 20 SIGTERM rounds, then 20 kill -9 rounds
#   short (make test):        5 SIGTERM rounds, then 3 kill -9 rounds (a few minutes)
#
# How systemd's socket unit is modelled: plugin-config/ipcs.socket keeps the listening
# socket open across every restart of ipcs.service and passes it as fd 3 (LISTEN_FDS).
# Debian's `systemd-socket-activate` speaks that protocol but execs its command, so the
# socket would die with the first ipcs. integration/socket-unit.py therefore plays the
# socket unit: it creates the socket once (dir 0750, socket 0660, backlog SOMAXCONN), holds
# it for the whole run, and starts every ipcs through systemd-socket-activate, which takes
# the fd with systemd's own sd_listen_fds() and hands it to ipcs with the variables set by
# systemd's code; when ipcs exits, it is started again at once (Restart=always). Where
# systemd runs, the real units behave the same way; this script does not need it.
#
# Stack (loopback only, all stopped on exit): the local registry with the test image big
# (integration/images, 7 layers, 83 MiB), an offline Kubo node (scripts/kubo-node.sh), ipcs
# under socket-unit.py, containerd VERSION with ipcs as its content proxy. Every round
# removes big (rm --sync and a GC pass, so ipcs deletes and unpins every blob), starts
# `ctr images pull` (with unpack) and signals the running ipcs at a random moment of it:
#   TERM rounds: SIGTERM (what `systemctl restart ipcs` sends). ipcs drains and exits 0,
#     the next one takes the socket. Pass: the pull succeeds with no retry, ipcs's exit
#     status is 0, the image's files are byte-exact (mount: SHA256SUMS, known-1m.bin).
#     Then ipcs is stopped and `ipcs fsck --verify` must find nothing at all.
#   KILL rounds: kill -9. Reads in flight break, so the pull may fail; it is retried once,
#     immediately, and that retry must succeed: no "connection refused" window. Counted:
#     pulls that needed the retry, and the error each printed (for the README).
#     Then `ipcs fsck --verify --repair` must report no finding that a crash cannot explain
#     (unexpected=0), and a second `ipcs fsck --verify` must be clean.
# Finally every digest containerd lists is in `ipcs blobs`, and `ipfs cat CID | sha256sum`
# equals it. Prints `ok`/`not ok` lines and one summary line:
#   restart containerd VERSION: TERM a/b pulls ok first time ...; KILL ... needed a retry ...
# Env: RESTART_SEED (random moments; default 1), IPCS_IMAGES, IPCS_TOOLS, KEEP_WORK=1.
set -euo pipefail

short=0 VERSION=1.6
while [ $# -gt 0 ]; do
  case "$1" in
    --short) short=1; shift ;;
    --containerd) VERSION=${2:?}; shift 2 ;;
    *) echo "usage: $0 [--short] [--containerd 1.6|2]" >&2; exit 2 ;;
  esac
done
case "$VERSION" in 1.6|2) ;; *) echo "containerd 1.6 or 2" >&2; exit 2 ;; esac
if [ "$short" = 1 ]; then term_rounds=5 kill_rounds=3; else term_rounds=20 kill_rounds=20; fi

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
NS=restart
KNOWN_1M=13f9e22e8fea9a1130f3ad4cb83d3caa2239c8e21ebbc9722a2b4cfd24a89ee0
RANDOM=${RESTART_SEED:-1}

exec 8>&1 9>&2
work=$(mktemp -d "/tmp/ipcs-restart-$VERSION-XXXXXX")
logs="$work/logs"; mkdir -p "$logs"
sock="$work/run/ipcs/ipcs.sock"
unit="$work/unit"
kubo_dir="$work/kubo" reg_dir="$work/registry" cd_dir="$work/containerd" mnt="$work/mnt"
ctr_bin="$cd_dir/ctr"
# A copy: a concurrent `cargo build` must not swap the binary mid-run.
IPCS="$work/ipcs"
cp "$root/target/release/ipcs" "$IPCS"
passed=0 failed=0 setup_done=0 last_log="" holder_pid="" bg_pid=""

ctr()  { local t="$1"; shift; timeout -k 10 "$t" "$ctr_bin" -n "$NS" "$@"; }
ipfs() { local t="$1"; shift; timeout -k 5 "$t" "$IPFS" --api "$multiaddr" "$@"; }
service_pid() { cat "$unit/service.pid" 2>/dev/null; }

diagnostics() {
  if [ -n "$last_log" ] && [ -s "$last_log" ]; then
    say "--- $(basename "$last_log") (last 15 lines)"; tail -n 15 "$last_log" | indent
  fi
  say "--- ipcs log (last 20 lines)"; tail -n 20 "$work/ipcs.log" 2>/dev/null | indent || true
  say "--- containerd warnings (last 10)"
  grep -E 'level=(warn|error)' "$cd_dir/containerd.log" 2>/dev/null | tail -n 10 | indent || true
}

start_unit() {
  python3 "$root/integration/socket-unit.py" --listen "$sock" --run "$unit" -- \
    "$IPCS" serve --socket "$sock" --data-dir "$work/data" --kubo-api "$api" \
    </dev/null >/dev/null 2>>"$work/ipcs.log" 8>&- 9>&- &
  holder_pid=$!
  local _
  for _ in $(seq 1 100); do [ -S "$sock" ] && return 0; sleep 0.1; done
  echo "socket-unit did not create $sock" >&2; return 1
}
stop_unit() {
  [ -n "$holder_pid" ] || return 0
  kill -TERM "$holder_pid" 2>/dev/null || true
  local _
  for _ in $(seq 1 700); do kill -0 "$holder_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$holder_pid" 2>/dev/null || true
  wait "$holder_pid" 2>/dev/null || true
  holder_pid=""
}

cleanup() {
  local rc=$?
  set +e
  exec >&8 2>&9
  trap - EXIT INT TERM
  if [ -n "$bg_pid" ]; then kill "$bg_pid" 2>/dev/null; wait "$bg_pid" 2>/dev/null; fi
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" 2>/dev/null || umount -l "$mnt"; fi
  "$root/integration/containerd-node.sh" stop "$cd_dir" >/dev/null 2>&1
  stop_unit
  "$root/scripts/kubo-node.sh" stop "$kubo_dir" >/dev/null 2>&1
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
  if [ "$setup_done" != 1 ]; then
    echo "not ok - setup (exit status $rc)"; failed=$((failed + 1)); diagnostics
  fi
  if [ "$failed" -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$work"; else say "work dir kept: $work"; fi
  echo "restart containerd $VERSION: $passed passed, $failed failed; ${summary:-no summary}"
  [ "$failed" -eq 0 ] || exit 1
  exit 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------- setup
say "restarts during pulls, containerd $VERSION, $term_rounds SIGTERM + $kill_rounds kill -9 rounds, work dir $work"
[ -x /usr/bin/systemd-socket-activate ] || { echo "missing systemd-socket-activate (scripts/install-system-deps.sh)" >&2; exit 1; }
last_log="$logs/setup-registry.log"
"$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>"$last_log" 8>&- 9>&-
reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
last_log="$logs/setup-build.log"
timeout 1800 "$root/integration/images/build-images.sh" --only big "$IMAGES" >"$last_log" 2>&1
last_log="$logs/setup-push.log"
timeout 900 "$root/integration/images/push-images.sh" "$IMAGES" "$reg" big >"$last_log" 2>&1
BIG="$reg/ipcs/big:v1"
last_log="$logs/setup-kubo.log"
api=$(timeout 120 "$root/scripts/kubo-node.sh" start "$kubo_dir" --offline \
        --swarm "$(free_port)" 2>"$last_log" 8>&- 9>&-)
multiaddr=$(kubo_maddr "$api")
last_log="$work/ipcs.log"
start_unit
last_log="$logs/setup-containerd.log"
timeout 120 "$root/integration/containerd-node.sh" start "$cd_dir" --version "$VERSION" \
  --content-socket "$sock" >/dev/null 2>"$last_log" 8>&- 9>&-
mkdir -p "$mnt"
setup_done=1

# --------------------------------------------------------------------------------- rounds
pull() { ctr 300 images pull --plain-http --platform linux/amd64 "$BIG"; }

remove_big() {
  ctr 300 images rm --sync "$BIG" >/dev/null 2>&1 || true
  local lease; lease=$(ctr 60 leases create) || return 1
  ctr 300 leases rm --sync "$lease" >/dev/null || return 1
  [ -z "$(ctr 60 content ls -q)" ] || { say "content left after rm + GC"; return 1; }
}

check_files() {  # byte checks of the unpacked image
  local ok=0
  ctr 120 images mount "$BIG" "$mnt" >"$logs/mount.log" 2>&1 || { last_log="$logs/mount.log"; return 1; }
  [ "$(sha256sum <"$mnt/opt/ipcs/known-1m.bin" | cut -d' ' -f1)" = "$KNOWN_1M" ] || { say "known-1m.bin differs"; ok=1; }
  (cd "$mnt" && sha256sum --quiet -c opt/ipcs/SHA256SUMS) >"$logs/sums.log" 2>&1 || { say "SHA256SUMS check failed"; ok=1; }
  ctr 120 images unmount --rm "$mnt" >/dev/null 2>&1 || { say "unmount failed"; ok=1; }
  return $ok
}

# The moment of a signal: uniform in [0.2 s, pull time), the pull time being the shortest
# seen so far (the baseline, then every pull that ran to its end); on a shared machine the
# baseline alone can be twice a later pull.
moment() { awk -v r="$RANDOM" -v ms="$base_ms" 'BEGIN { printf "%.2f", (200 + (ms - 200) * r / 32768) / 1000 }'; }

exit_of() {  # exit_of PID -> "exit N" / "signal N" from socket-unit's record (waits 60 s)
  local _ l
  for _ in $(seq 1 600); do
    l=$(awk -v p="$1" '$3 == p { print $4, $5 }' "$unit/exits" 2>/dev/null)
    [ -n "$l" ] && { echo "$l"; return 0; }
    sleep 0.1
  done
  echo "still running"
}

# Baseline: one pull without restart gives the pull time the moments are drawn from.
last_log="$logs/pull-baseline.log"
remove_big
t0=$(now_ms)
if pull >"$last_log" 2>&1; then passed=$((passed + 1)); echo "ok - baseline pull"; else
  failed=$((failed + 1)); echo "not ok - baseline pull"; diagnostics; exit 1; fi
base_ms=$(( $(now_ms) - t0 ))
say "baseline pull $(secs "$base_ms") s"

during=0 term_ok=0 term_fail=0 term_exit0=0 bytes_bad=0 drain_max_ms=0
round() {  # round KIND I
  local kind=$1 i=$2 at pid rc=0 how t_sig ms log="$logs/pull-$1-$2.log"
  remove_big || { last_log=""; return 1; }
  at=$(moment)
  pull >"$log" 2>&1 &
  bg_pid=$!
  sleep "$at"
  pid=$(service_pid)
  if kill -0 "$bg_pid" 2>/dev/null; then during=$((during + 1)); else say "the pull ended before the signal"; fi
  t_sig=$(now_ms)
  if [ "$kind" = term ]; then kill -TERM "$pid" 2>/dev/null || true; else kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$bg_pid" || rc=$?
  bg_pid=""
  local took=$(( $(now_ms) - t_sig + $(awk -v a="$at" 'BEGIN { printf "%d", a * 1000 }') ))
  if [ "$rc" = 0 ] && [ "$took" -lt "$base_ms" ]; then base_ms=$took; fi
  how=$(exit_of "$pid")
  ms=$(( $(awk -v p="$pid" '$3 == p { print $1 }' "$unit/exits" 2>/dev/null || echo "$t_sig") - t_sig ))
  round_rc=$rc round_how=$how round_at=$at round_exit_ms=$ms round_log=$log
}

check_term_round() {
  local i=$1
  round term "$i" || return 1
  last_log=$round_log
  say "SIGTERM at ${round_at} s to pid: ${round_how} $(secs "$round_exit_ms") s later; pull exit status $round_rc"
  [ "$round_exit_ms" -gt "$drain_max_ms" ] && drain_max_ms=$round_exit_ms
  local ok=0
  if [ "$round_rc" = 0 ]; then term_ok=$((term_ok + 1)); else
    term_fail=$((term_fail + 1)); ok=1
    grep -iE 'error|fail|ctr:' "$round_log" | tail -n 3 | indent
  fi
  if [ "$round_how" = "exit 0" ]; then term_exit0=$((term_exit0 + 1)); else say "ipcs did not drain and exit 0"; ok=1; fi
  if [ "$round_rc" = 0 ] && ! check_files; then bytes_bad=$((bytes_bad + 1)); ok=1; fi
  return $ok
}

kill_retried=0 kill_retry_fail=0 refused=0
: >"$work/kill-errors.txt"
check_kill_round() {
  local i=$1 rc=0 t0 ms
  round kill "$i" || return 1
  last_log=$round_log
  say "kill -9 at ${round_at} s; pull exit status $round_rc"
  if grep -qi 'connection refused' "$round_log"; then refused=$((refused + 1)); say "connection refused seen"; fi
  if [ "$round_rc" != 0 ]; then
    kill_retried=$((kill_retried + 1))
    grep -E '^ctr: |level=(error|fatal)' "$round_log" | tail -n 2 | tee -a "$work/kill-errors.txt" | indent
    t0=$(now_ms)
    pull >"$logs/retry-$i.log" 2>&1 || rc=$?
    ms=$(( $(now_ms) - t0 ))
    last_log="$logs/retry-$i.log"
    if grep -qi 'connection refused' "$last_log"; then refused=$((refused + 1)); say "retry: connection refused seen"; fi
    say "immediate retry: exit status $rc after $(secs "$ms") s"
    [ "$rc" = 0 ] || { kill_retry_fail=$((kill_retry_fail + 1)); return 1; }
  fi
  check_files || { bytes_bad=$((bytes_bad + 1)); return 1; }
}

fsck() { timeout -k 5 600 "$IPCS" fsck --data-dir "$work/data" --kubo-api "$api" --verify "$@"; }

check_fsck_clean() {  # after SIGTERM rounds: nothing at all to find
  last_log="$logs/fsck-term.log"
  stop_unit
  fsck >"$last_log" 2>&1 || { say "fsck exit status $?"; return 1; }
  tail -n 1 "$last_log" | indent
  grep -q ' found=0 ' "$last_log" || return 1
  start_unit
}

check_fsck_after_kills() {
  last_log="$logs/fsck-kill.log"
  stop_unit
  fsck --repair >"$last_log" 2>&1 || true
  tail -n 1 "$last_log" | indent
  grep -q ' unexpected=0 ' "$last_log" || return 1
  last_log="$logs/fsck-kill-2.log"
  fsck >"$last_log" 2>&1 || { say "second fsck exit status $?"; return 1; }
  tail -n 1 "$last_log" | indent
  grep -q ' found=0 ' "$last_log" || return 1
  start_unit
}

check_store() {  # every digest containerd lists is in ipcs, pinned content hashing to it
  local ok=0 n=0 d cid
  ctr 60 content ls -q >"$work/content.txt" || return 1
  timeout 60 "$IPCS" blobs --settle 120 --socket "$sock" >"$work/blobs.txt" || return 1
  [ -s "$work/content.txt" ] || { say "no content"; return 1; }
  while read -r d; do
    n=$((n + 1))
    cid=$(awk -v d="$d" '$1 == d { print $2; exit }' "$work/blobs.txt")
    [ -n "$cid" ] || { say "$d not in ipcs blobs"; ok=1; continue; }
    [ "sha256:$(ipfs 120 cat --progress=false "$cid" </dev/null | sha256sum | cut -d' ' -f1)" = "$d" ] \
      || { say "$d: ipfs cat $cid differs"; ok=1; }
  done <"$work/content.txt"
  say "$n blobs checked"
  return $ok
}

for i in $(seq 1 "$term_rounds"); do
  check "TERM $i/$term_rounds: SIGTERM during a pull; the pull succeeds untouched, ipcs exits 0, files exact" check_term_round "$i"
done
check "fsck --verify after the SIGTERM rounds finds nothing" check_fsck_clean
for i in $(seq 1 "$kill_rounds"); do
  check "KILL $i/$kill_rounds: kill -9 during a pull; an immediate retry succeeds, files exact" check_kill_round "$i"
done
check "fsck --verify --repair after the kills: only crash debris; then clean" check_fsck_after_kills
check "every digest containerd lists: in ipcs blobs, ipfs cat hashes to it" check_store
check "no 'connection refused' in any pull" test "$refused" = 0

starts=$(wc -l <"$unit/exits" 2>/dev/null || echo 0)
summary="signals during a running pull $during/$((term_rounds + kill_rounds)); SIGTERM: $term_ok/$term_rounds pulls ok without retry ($term_fail failed), $term_exit0 drained exits 0, slowest exit $(secs "$drain_max_ms") s after the signal; kill -9: $kill_retried/$kill_rounds pulls needed a retry, $kill_retry_fail retries failed; refused $refused; byte mismatches $bytes_bad; baseline pull $(secs "$base_ms") s; ipcs processes $starts"
if [ -s "$work/kill-errors.txt" ]; then
  say "errors of the pulls broken by kill -9 (distinct):"
  sed -E 's/sha256:[0-9a-f]{64}/sha256:…/g; s/^time="[^"]*" //' "$work/kill-errors.txt" | sort | uniq -c | sort -rn | indent
fi
