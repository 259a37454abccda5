#!/usr/bin/env bash
# End-to-end test: containerd (1.6 or 2.x) with ipcs as its content store, blobs in Kubo.
#
#   integration/e2e.sh 1.6|2
#
# Starts, in a fresh work dir under /tmp, a registry on 127.0.0.1 with the test images
# small, big and multi (built into ${IPCS_IMAGES:-~/.cache/ipcs-images}, cached), an offline
# Kubo node, `ipcs serve` and containerd VERSION with ipcs as its content proxy plugin, then:
#   a. ctr images pull (with unpack) of big
#   b. ctr content fetch of small
#   c. nerdctl pull of multi (an image index)
#   d. ctr images mount of big: byte checks of known files, unmount
#   e. every digest in `ctr content ls` is in `ipcs blobs`, pinned in Kubo, and
#      `ipfs cat CID | sha256sum` equals the digest
#   f. removing every image (ctr images rm --sync, nerdctl rmi, a GC lease pass) empties
#      containerd's content, ipcs's index and unpins every CID in Kubo
#   g. a second pull of big and the file checks again
#   h. Kubo down: a pull of a missing image still succeeds (a commit records the CID ipcs
#      computed and Kubo's import follows: docs/later-import.md), `ipcs status` counts its
#      blobs as pending imports and the log names Kubo; after Kubo restarts (same repo, same
#      API port) the imports finish and another pull succeeds
#   i. ipcs down (SIGKILL): a pull blocks (containerd retries UNAVAILABLE) instead of
#      failing, and completes once ipcs is restarted on the same socket and data dir
#   and finally the store is consistent again (as in e).
# Prints one TAP-like line per check, `ok - ...` / `not ok - ...`, diagnostics as `# ...`,
# and ends with exactly one line `e2e containerd VERSION: N passed, M failed`.
# Exit status: 0 only if every check passed and setup succeeded.
#
# Every daemon binds 127.0.0.1 or a unix socket in the work dir; all of them are stopped on
# exit. The work dir is removed after a clean run and kept (path printed) after a failure,
# or always with KEEP_WORK=1.
# Env: IPCS_IMAGES (image cache), IPCS_TOOLS (default ~/.cache/ipcs-tools), IPCS_BIN,
#      E2E_PULL_TIMEOUT (default 300 s per pull), E2E_KUBO_DOWN_BOUND (default 120 s).
set -euo pipefail

VERSION="${1:-}"
case "$VERSION" in
  1.6|2) ;;
  *) echo "usage: $0 1.6|2" >&2; exit 2;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
PULL_TIMEOUT="${E2E_PULL_TIMEOUT:-300}"
KUBO_DOWN_BOUND="${E2E_KUBO_DOWN_BOUND:-120}"
NS=e2e
KNOWN_TXT='ipcs test image: big v1'
KNOWN_1M=13f9e22e8fea9a1130f3ad4cb83d3caa2239c8e21ebbc9722a2b4cfd24a89ee0

started_at=$(date +%s%N)
# The script's own stdout/stderr, for the EXIT trap: a signal's trap runs inside whatever
# redirection is active (e.g. a step's log file). Daemons get them closed (8>&- 9>&-), so
# none of them holds the caller's pipe open.
exec 8>&1 9>&2
work=$(mktemp -d "/tmp/ipcs-e2e-$VERSION-XXXXXX")
logs="$work/logs"; mkdir -p "$logs"
sock="$work/ipcs/ipcs.sock"
ipcs_data="$work/ipcs/data"
ipcs_log="$work/ipcs.log"
kubo_dir="$work/kubo"
reg_dir="$work/registry"
cd_dir="$work/containerd"
mnt="$work/mnt"
ctr_bin="$cd_dir/ctr"

passed=0 failed=0 setup_done=0 all_run=0
ipcs_pid="" bg_pid="" api="" multiaddr="" reg="" last_log=""

# Bounded wrappers: nothing here may hang (a pull with no content store hangs forever).
ctr()     { local t="$1"; shift; timeout -k 10 "$t" "$ctr_bin" -n "$NS" "$@"; }
nerdctl() { local t="$1"; shift; NERDCTL_TOML="$work/nerdctl.toml" timeout -k 10 "$t" "$NERDCTL" \
              --address "$cd_dir/containerd.sock" --namespace "$NS" --data-root "$work/nerdctl" "$@"; }
ipfs()    { local t="$1"; shift; timeout -k 5 "$t" "$IPFS" --api "$multiaddr" "$@"; }
blobs()   { timeout -k 5 60 "$IPCS" blobs --settle 120 --socket "$sock"; }

diagnostics() {
  if [ -n "$last_log" ] && [ -s "$last_log" ]; then
    say "--- $(basename "$last_log") (last 15 lines)"; tail -n 15 "$last_log" | indent
  fi
  say "--- ipcs log $ipcs_log (last 25 lines)"; tail -n 25 "$ipcs_log" 2>/dev/null | indent || true
  say "--- containerd log $cd_dir/containerd.log (last 15 warnings/errors, then last 5 lines)"
  grep -E 'level=(warn|error|fatal)' "$cd_dir/containerd.log" 2>/dev/null | tail -n 15 | indent || true
  say "..."; tail -n 5 "$cd_dir/containerd.log" 2>/dev/null | indent || true
}


ipcs_up() {
  start_ipcs --bin "$IPCS" --socket "$sock" --data "$ipcs_data" --log "$ipcs_log" --kubo "$api" || return 1
  ipcs_pid=$IPCS_STARTED_PID
}
stop_ipcs() { stop_pid "$ipcs_pid" "${1:-TERM}" 10; ipcs_pid=""; }  # stop_ipcs [SIGNAL]

cleanup() {
  local rc=$?
  set +e
  exec >&8 2>&9
  trap - EXIT INT TERM
  if [ -n "$bg_pid" ]; then kill "$bg_pid" 2>/dev/null; wait "$bg_pid" 2>/dev/null; fi
  if mountpoint -q "$mnt" 2>/dev/null; then
    [ -x "$ctr_bin" ] && ctr 30 images unmount --rm "$mnt" >/dev/null 2>&1
    mountpoint -q "$mnt" && { umount "$mnt" 2>/dev/null || umount -l "$mnt"; }
  fi
  "$root/integration/containerd-node.sh" stop "$cd_dir" >/dev/null 2>&1
  stop_ipcs
  "$root/scripts/kubo-node.sh" stop "$kubo_dir" >/dev/null 2>&1
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
  local total; total=$(secs $(( $(now_ms) - started_at / 1000000 )))
  if [ "$setup_done" != 1 ]; then
    echo "not ok - setup (exit status $rc)"
    failed=$((failed + 1))
    diagnostics
  elif [ "$all_run" != 1 ]; then
    echo "not ok - run aborted before every check ran (exit status $rc)"
    failed=$((failed + 1))
  fi
  say "total run time ${total} s"
  if [ "$failed" -eq 0 ] && [ "$setup_done" = 1 ] && [ -z "${KEEP_WORK:-}" ]; then
    rm -rf "$work"
  else
    say "work dir kept: $work"
  fi
  echo "e2e containerd $VERSION: $passed passed, $failed failed"
  if [ "$failed" -gt 0 ] || [ "$setup_done" != 1 ]; then exit 1; fi
  exit 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------- setup
say "containerd $VERSION end-to-end, work dir $work"
for b in "$IPCS" "$IPFS" "$NERDCTL"; do
  [ -x "$b" ] || { echo "missing $b (cargo build --release; scripts/install-*.sh)" >&2; exit 1; }
done

last_log="$logs/setup-registry.log"
"$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>"$last_log" 8>&- 9>&-
reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
say "registry $reg"
last_log="$logs/setup-build.log"
timeout 1800 "$root/integration/images/build-images.sh" --only small,big,multi "$IMAGES" >"$last_log" 2>&1
last_log="$logs/setup-push.log"
timeout 900 "$root/integration/images/push-images.sh" "$IMAGES" "$reg" small big multi >"$last_log" 2>&1
SMALL="$reg/ipcs/small:v1" BIG="$reg/ipcs/big:v1" MULTI="$reg/ipcs/multi:v1"

last_log="$logs/setup-kubo.log"
kubo_swarm_port=$(free_port)
api=$(timeout 120 "$root/scripts/kubo-node.sh" start "$kubo_dir" --offline \
        --swarm "$kubo_swarm_port" 2>"$last_log" 8>&- 9>&-)
[[ "$api" =~ ^unix:///.+$ ]] || { echo "unexpected Kubo API address '$api'" >&2; exit 1; }
multiaddr=$(kubo_maddr "$api")
say "kubo $api ($multiaddr), $("$IPFS" version)"

last_log="$ipcs_log"
ipcs_up
say "ipcs pid $ipcs_pid on $sock"

last_log="$logs/setup-containerd.log"
timeout 120 "$root/integration/containerd-node.sh" start "$cd_dir" --version "$VERSION" \
  --content-socket "$sock" >/dev/null 2>"$last_log" 8>&- 9>&-
say "containerd $("$ctr_bin" version 2>/dev/null | awk '/Server:/ { s = 1 } s && /Version:/ { print $2; exit }')"
mkdir -p "$mnt"
setup_done=1
say "setup done in $(secs $(( $(now_ms) - started_at / 1000000 ))) s"

# --------------------------------------------------------------------------------- checks
pull() {  # pull LOGNAME REF [TIMEOUT]
  logged "$1" ctr "${3:-$PULL_TIMEOUT}" images pull --plain-http --platform linux/amd64 "$2"
}

check_pull_big() { pull pull-big "$BIG" || return 1; }

check_fetch_small() {
  logged fetch-small ctr "$PULL_TIMEOUT" content fetch --plain-http --platform linux/amd64 "$SMALL" || return 1
}

check_nerdctl_pull_multi() {
  logged nerdctl-pull-multi nerdctl "$PULL_TIMEOUT" --insecure-registry pull "$MULTI" || return 1
}

# Mounts big, checks the known files (and the image's own SHA256SUMS), unmounts.
check_mount_big() {
  local name="$1" ok=0 got
  logged "$name-mount" ctr 120 images mount "$BIG" "$mnt" || return 1
  if ! printf '%s\n' "$KNOWN_TXT" | cmp -s - "$mnt/etc/ipcs-test.txt"; then
    say "/etc/ipcs-test.txt differs:"; od -c "$mnt/etc/ipcs-test.txt" 2>&1 | head -5 | indent; ok=1
  fi
  got=$(sha256sum "$mnt/opt/ipcs/known-1m.bin" 2>&1 | cut -d' ' -f1)
  if [ "$got" != "$KNOWN_1M" ]; then say "known-1m.bin sha256 $got, want $KNOWN_1M"; ok=1; fi
  if ! (cd "$mnt" && sha256sum --quiet -c opt/ipcs/SHA256SUMS) >"$logs/$name-sums.log" 2>&1; then
    say "sha256sum -c opt/ipcs/SHA256SUMS failed:"; head -5 "$logs/$name-sums.log" | indent; ok=1
  fi
  if ! logged "$name-unmount" ctr 120 images unmount --rm "$mnt"; then
    say "unmount failed"; ok=1
  fi
  if mountpoint -q "$mnt"; then say "$mnt still mounted"; ok=1; fi
  return $ok
}

# Every digest containerd lists is in ipcs's index, its CID is pinned in Kubo and
# `ipfs cat CID` gives bytes whose sha256 is the digest. Records the CIDs in $1.
check_store_consistent() {
  local cidfile="$1" ok=0 n=0 d cid size got pins
  ctr 60 content ls -q >"$work/content.txt" 2>"$logs/content-ls.log" || { last_log="$logs/content-ls.log"; return 1; }
  blobs >"$work/blobs.txt" 2>"$logs/blobs.log" || { last_log="$logs/blobs.log"; return 1; }
  awk '{ print $2 }' "$work/blobs.txt" >"$cidfile"
  ipfs 60 pin ls --type=recursive -q >"$work/pins.txt" 2>"$logs/pin-ls.log" || { last_log="$logs/pin-ls.log"; return 1; }
  [ -s "$work/content.txt" ] || { say "ctr content ls -q is empty"; return 1; }
  while read -r d; do
    [ -n "$d" ] || continue
    n=$((n + 1))
    cid=""
    read -r cid size < <(awk -v d="$d" '$1 == d { print $2, $3; exit }' "$work/blobs.txt") || true
    if [ -z "${cid:-}" ]; then say "$d: not in ipcs blobs"; ok=1; continue; fi
    if ! grep -qxF "$cid" "$work/pins.txt"; then say "$d: $cid is not pinned (recursive)"; ok=1; fi
    got=$(ipfs 120 cat --progress=false "$cid" </dev/null | sha256sum | cut -d' ' -f1)
    if [ "sha256:$got" != "$d" ]; then say "$d: ipfs cat $cid gives sha256:$got"; ok=1; fi
  done <"$work/content.txt"
  say "$n blobs: digest in ipcs blobs, CID pinned, ipfs cat sha256 = digest"
  return $ok
}

check_remove_all() {
  local ok=0 imgs i cid
  logged rmi-multi nerdctl 120 rmi "$MULTI" || { say "nerdctl rmi failed"; ok=1; }
  imgs=$(ctr 60 images ls -q) || return 1
  for i in $imgs; do
    logged "rm-$(basename "${i%%:*}")" ctr 300 images rm --sync "$i" || { say "ctr images rm --sync $i failed"; ok=1; }
  done
  # A full GC pass: creating and synchronously removing a lease runs the collector.
  local lease; lease=$(ctr 60 leases create) || return 1
  logged gc-lease ctr 300 leases rm --sync "$lease" || { say "GC lease pass failed"; ok=1; }
  last_log=""
  local content; content=$(ctr 60 content ls -q) || return 1
  if [ -n "$content" ]; then
    say "ctr content ls -q still lists:"; echo "$content" | indent
    say "leases:"; ctr 30 leases ls 2>&1 | indent; ok=1
  fi
  local left; left=$(blobs) || return 1
  if [ -n "$left" ]; then say "ipcs blobs still lists:"; echo "$left" | indent; ok=1; fi
  ipfs 60 pin ls --type=recursive -q >"$work/pins-after.txt" 2>&1 || return 1
  local still=0
  while read -r cid; do
    [ -n "$cid" ] || continue
    if grep -qxF "$cid" "$work/pins-after.txt"; then say "$cid still pinned"; still=1; fi
  done <"$work/cids-first.txt"
  [ "$still" = 0 ] || ok=1
  say "$(wc -l <"$work/cids-first.txt") recorded CIDs, $(wc -l <"$work/pins-after.txt") recursive pins left"
  return $ok
}

check_second_pull_big() { pull pull-big-2 "$BIG" || return 1; }

# ---- h. Kubo down
check_pull_works_kubo_down() {
  ctr 300 images rm --sync "$SMALL" >/dev/null 2>&1 || true
  timeout 60 "$root/scripts/kubo-node.sh" stop "$kubo_dir" || return 1
  if kubo_rpc "$api" id -m 2 >/dev/null 2>&1; then say "Kubo still answers"; return 1; fi
  local t0 rc=0 ms; t0=$(now_ms)
  pull pull-small-kubo-down "$SMALL" "$((KUBO_DOWN_BOUND + 30))" || rc=$?
  ms=$(( $(now_ms) - t0 ))
  say "pull exit status $rc after $ms ms"
  [ "$rc" = 0 ] || return 1
  [ "$ms" -lt $((KUBO_DOWN_BOUND * 1000)) ] || { say "the pull took over ${KUBO_DOWN_BOUND} s"; return 1; }
}
check_pending_while_kubo_down() {
  local pending
  # Exits 1 with Kubo unreachable, after printing everything else.
  logged status-kubo-down timeout 60 "$IPCS" status --socket "$sock" || true
  pending=$(sed -n 's/^pending imports: \([0-9]*\).*/\1/p' "$last_log")
  say "ipcs status: pending imports: ${pending:-?}"
  [ "${pending:-0}" -gt 0 ] || return 1
  last_log="$ipcs_log"
  grep -E "import after commit failed" "$ipcs_log" | tail -n 1 | cut -c1-300 | indent
  grep -E "import after commit failed.*($(kubo_sock "$api")|kubo)" "$ipcs_log" >/dev/null \
    || { say "no failed import naming kubo or $(kubo_sock "$api") in the log"; return 1; }
}
check_kubo_restart() {
  local new
  new=$(timeout 120 "$root/scripts/kubo-node.sh" start "$kubo_dir" --offline 2>"$logs/kubo-restart.log" 8>&- 9>&-) \
    || { last_log="$logs/kubo-restart.log"; return 1; }
  if [ "$new" != "$api" ]; then
    say "Kubo came back on $new, not $api: restarting ipcs with the new URL"
    api="$new"; multiaddr=$(kubo_maddr "$new")
    stop_ipcs; ipcs_up || return 1
    return 1
  fi
  say "Kubo back on $api"
}
check_pull_after_kubo_restart() {
  # The imports retry with a pause of at most 30 s.
  logged settle-kubo-back timeout 150 "$IPCS" status --settle 120 --socket "$sock" || return 1
  logged rm-small-kubo-back ctr 300 images rm --sync "$SMALL" || return 1
  pull pull-small-kubo-back "$SMALL" || return 1
}

# ---- i. ipcs down
check_pull_blocks_ipcs_down() {
  logged rm-small ctr 300 images rm --sync "$SMALL" || return 1
  stop_ipcs KILL
  say "ipcs killed (SIGKILL); pulling $SMALL in the background"
  bg_log="$logs/pull-small-ipcs-down.log"
  # timeout itself in the background (not a function's subshell): $! is then the process
  # that takes the whole pull down when killed.
  timeout -k 10 "$PULL_TIMEOUT" "$ctr_bin" -n "$NS" images pull --plain-http --platform linux/amd64 \
    "$SMALL" >"$bg_log" 2>&1 8>&- 9>&- &
  bg_pid=$!
  bg_t0=$(now_ms)
  sleep 5
  if ! kill -0 "$bg_pid" 2>/dev/null; then
    local rc=0; wait "$bg_pid" || rc=$?; bg_pid=""
    last_log="$bg_log"
    say "the pull ended (exit status $rc) while ipcs was down instead of waiting"
    return 1
  fi
  say "after 5 s the pull is still running (blocked on the content store)"
}
check_pull_completes_after_ipcs_restart() {
  local t0 rc=0 ms
  [ -n "$ipcs_pid" ] || { last_log="$ipcs_log"; ipcs_up || return 1; }
  say "ipcs restarted (pid $ipcs_pid) on the same socket and data dir"
  [ -n "$bg_pid" ] || return 1
  t0=$(now_ms)
  wait "$bg_pid" || rc=$?
  bg_pid=""
  ms=$(( $(now_ms) - t0 ))
  last_log="$bg_log"
  say "background pull exit status $rc, $(secs "$ms") s after the restart, $(secs $(( $(now_ms) - bg_t0 ))) s in all"
  [ "$rc" = 0 ] || return 1
}

# ---- k. network hygiene (shared RUNNING_IPFS_HERE.md): a snapshot of every TCP/UDP socket
# held by Kubo, ipcs, containerd and the registry must be loopback only.
check_loopback_only() {
  local pids=() f p bad
  for f in "$kubo_dir/ipcs-kubo.pid" "$reg_dir/registry.pid" "$cd_dir/containerd.pid"; do
    [ -f "$f" ] && pids+=("$(cat "$f")")
  done
  [ -n "$ipcs_pid" ] && pids+=("$ipcs_pid")
  ss -Htunap >"$work/ss.txt" 2>&1 || return 1
  bad=$(awk -v pids=" ${pids[*]} " '
    {
      if (!match($0, /pid=[0-9]+/)) next
      p = substr($0, RSTART + 4, RLENGTH - 4)
      if (index(pids, " " p " ") == 0) next
      n++
      if ($5 !~ /^(127\.|\[::1\]|\[::ffff:127\.)/ || $6 !~ /^(127\.|\[::1\]|\[::ffff:127\.|\*|0\.0\.0\.0:\*|\[::\]:\*)/) print
    }
    END { if (n == 0) print "no socket found for pids" pids }' "$work/ss.txt")
  say "$(grep -cE "pid=($(IFS='|'; echo "${pids[*]}"))," "$work/ss.txt") sockets of pids ${pids[*]}"
  if [ -n "$bad" ]; then say "non-loopback sockets:"; echo "$bad" | indent; return 1; fi
}

check "a. ctr images pull --plain-http (with unpack) of big"   check_pull_big
check "b. ctr content fetch of small"                          check_fetch_small
check "c. nerdctl pull of multi (image index)"                 check_nerdctl_pull_multi
check "d. ctr images mount of big: /etc/ipcs-test.txt and known-1m.bin sha256 (and SHA256SUMS), unmount" \
      check_mount_big mount-1
check "e. every digest of ctr content ls is in ipcs blobs, pinned, and ipfs cat | sha256sum = digest" \
      check_store_consistent "$work/cids-first.txt"
check "f. rm --sync of every image, nerdctl rmi, GC pass: content ls empty, ipcs blobs empty, CIDs unpinned" \
      check_remove_all
check "g1. second ctr images pull of big"                       check_second_pull_big
check "g2. mount of big after the second pull: file checks"     check_mount_big mount-2
check "h1. Kubo down: pull of small still succeeds within ${KUBO_DOWN_BOUND} s" check_pull_works_kubo_down
check "h2. Kubo down: ipcs status counts pending imports, the log names Kubo" check_pending_while_kubo_down
check "h3. Kubo restarted from the same repo on the same API URL" check_kubo_restart
check "h4. the imports finish after Kubo is back, and a pull of small succeeds" check_pull_after_kubo_restart
check "i1. ipcs killed: a pull of small blocks (still running after 5 s) instead of failing" \
      check_pull_blocks_ipcs_down
last_log="$ipcs_log"
ipcs_up || say "ipcs did not restart"
check "i2. ipcs restarted: the blocked pull completes"          check_pull_completes_after_ipcs_restart
check "j. store consistent after the restarts (as in e)"        check_store_consistent "$work/cids-final.txt"
check "k. the test's daemons hold only loopback sockets (ss snapshot)" check_loopback_only
all_run=1
