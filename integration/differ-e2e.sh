#!/usr/bin/env bash
# End to end with containerd 2.x through ipcs's differ (issue 11, acceptance 3).
#
#   integration/differ-e2e.sh
#
# One containerd $CONTAINERD2_VERSION node with ipcs as content store and differ
# (containerd-node.sh --differ ipcs; DIFFER=walking runs the same checks on the walking differ,
# to check the harness itself), an offline Kubo, a registry with the test images small, big,
# multi:
#   a. ctr images pull (transfer service) of big; mounted; SHA256SUMS and known files byte-checked
#   b. ctr images pull --local of small (the diff service's default order) into native; mounted
#      and checked
#   c. nerdctl pull of multi; its amd64 rootfs mounted and checked
#   d. ctr run of small prints its known line (runc from Debian)
#   e. ipcs SIGKILLed while it applies a layer of big (the moment taken from ipcs's metrics,
#      polled on its unix socket: once ipcs_differ_layers_applied_total has grown by
#      APPLY_LOG_NTH since the pull started; by default 1, so the 2nd layer, ~1 900 small
#      files and the slowest of big's to apply (over a second here), is in flight; the later
#      layers of random data apply in a few ms each, too short a window to hit reliably):
#      the pull fails, no snapshot of
#      a layer not fully applied is committed (the committed ones are a prefix of big's chain
#      and the killed layer's is absent), and after ipcs restarts (and containerd's channel
#      to it has reconnected) the same pull succeeds and the rootfs checks pass
#   f. ipcs down: a pull that needs the differ ends with an error within $DOWN_BOUND s (no
#      hang), naming the unreachable differ/socket
# Prints TAP-like lines, ends with `differ-e2e (DIFFER): N passed, M failed`.
# Env: APPLY_LOG_NTH (1), DIFFER (ipcs, the default, or walking:
#      the harness on containerd's own differ, by hand only), DOWN_BOUND (60), IPCS_IMAGES, IPCS_TOOLS, KEEP_WORK=1.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
# ipcs's differ; DIFFER=walking runs the same checks on containerd's own (never in `make test`).
DIFFER="${DIFFER:-ipcs}"
case "$DIFFER" in ipcs|walking) ;; *) echo "DIFFER must be ipcs or walking" >&2; exit 2;; esac
APPLY_LOG_NTH="${APPLY_LOG_NTH:-1}"
DOWN_BOUND="${DOWN_BOUND:-60}"
NS=e2e
PULL_TIMEOUT=300
KNOWN_1M=13f9e22e8fea9a1130f3ad4cb83d3caa2239c8e21ebbc9722a2b4cfd24a89ee0

exec 8>&1 9>&2
started_at=$(date +%s%N)
work=$(mktemp -d /tmp/ipcs-differ-e2e-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
sock="$work/ipcs/ipcs.sock"; ipcs_log="$work/ipcs.log"; metrics_sock="$work/ipcs/metrics.sock"
kubo_dir="$work/kubo"; reg_dir="$work/registry"; cd_dir="$work/containerd"; mnt="$work/mnt"
passed=0 failed=0 setup_done=0 all_run=0 last_log="" ipcs_pid="" bg_pid=""

ctr() { local t="$1"; shift; timeout -k 10 "$t" "$cd_dir/ctr" -n "$NS" "$@"; }
nerdctl() { local t="$1"; shift; NERDCTL_TOML="$work/nerdctl.toml" timeout -k 10 "$t" "$NERDCTL" \
              --address "$cd_dir/containerd.sock" --namespace "$NS" --data-root "$work/nerdctl" "$@"; }

diagnostics() {
  if [ -n "$last_log" ] && [ -s "$last_log" ]; then
    say "--- $(basename "$last_log") (last 12 lines)"; tail -n 12 "$last_log" | cut -c1-300 | indent
  fi
  say "--- ipcs log (last 10 lines)"; tail -n 10 "$ipcs_log" 2>/dev/null | indent || true
  say "--- containerd errors (last 8)"
  grep -E 'level=(error|fatal)' "$cd_dir/containerd.log" 2>/dev/null | tail -n 8 | cut -c1-300 | indent || true
}

ipcs_up() {
  start_ipcs --bin "$IPCS" --socket "$sock" --data "$work/ipcs/data" --log "$ipcs_log" --kubo "$api" \
    -- --metrics-listen "unix://$metrics_sock" || return 1
  ipcs_pid=$IPCS_STARTED_PID
}
# Layers ipcs's differ has applied since it started (its metrics endpoint); empty if it
# does not answer.
layers_applied() {
  curl -sS -m 2 --unix-socket "$metrics_sock" http://localhost/metrics 2>/dev/null \
    | awk '$1 == "ipcs_differ_layers_applied_total" { print int($2) }'
}
kill_ipcs() { [ -z "$ipcs_pid" ] || { kill -KILL "$ipcs_pid" 2>/dev/null || true; ipcs_pid=""; }; }

cleanup() {
  local rc=$?
  set +e
  exec >&8 2>&9
  trap - EXIT INT TERM
  [ -z "$bg_pid" ] || { kill "$bg_pid" 2>/dev/null; wait "$bg_pid" 2>/dev/null; }
  for m in "$mnt"/*; do mountpoint -q "$m" 2>/dev/null && { umount "$m" || umount -l "$m"; }; done
  "$root/integration/containerd-node.sh" stop "$cd_dir" >/dev/null 2>&1
  stop_pid "$ipcs_pid"
  "$root/scripts/kubo-node.sh" stop "$kubo_dir" >/dev/null 2>&1
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
  finish_run "differ-e2e ($DIFFER differ)" "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------- setup
say "containerd 2.x end to end through the $DIFFER differ, work dir $work"
[ "$DIFFER" = ipcs ] || say "WARNING: the walking differ: this run checks the harness, not ipcs's differ"
mkdir -p "$work/bin" "$work/ipcs" "$mnt"
IPCS="$work/bin/ipcs"; cp "${IPCS_BIN:-$root/target/release/ipcs}" "$IPCS"
[ -x "$NERDCTL" ] || { echo "missing $NERDCTL (scripts/install-nerdctl.sh)" >&2; exit 1; }
last_log="$logs/setup.log"
"$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>"$last_log" 8>&- 9>&-
reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
timeout 1800 "$root/integration/images/build-images.sh" --only small,big,multi "$IMAGES" >"$last_log" 2>&1
timeout 900 "$root/integration/images/push-images.sh" "$IMAGES" "$reg" small big multi >"$last_log" 2>&1
SMALL="$reg/ipcs/small:v1" BIG="$reg/ipcs/big:v1" MULTI="$reg/ipcs/multi:v1"
api=$(timeout 120 "$root/scripts/kubo-node.sh" start "$kubo_dir" --offline --swarm "$(free_port)" 2>"$last_log" 8>&- 9>&-)
ipcs_up 2>"$last_log"
opts=(); [ "$DIFFER" = ipcs ] && opts=(--differ ipcs)
timeout 120 "$root/integration/containerd-node.sh" start "$cd_dir" --version 2 --content-socket "$sock" \
  "${opts[@]}" >/dev/null 2>"$last_log" 8>&- 9>&-
setup_done=1
say "setup done in $(secs $(( ($(date +%s%N) - started_at) / 1000000 ))) s; registry $reg"

# ------------------------------------------------------------------------------ helpers
# rootfs_check IMAGE_REF NAME [SNAPSHOTTER]: mounts the image and byte-checks its known files
rootfs_check() {
  local ref="$1" name="$2" sn="${3:-overlayfs}" ok=0
  # A target of its own per image: containerd 2.4's mount manager names an activation after
  # its target, and a name used by an earlier check can still be taken ("already exists").
  local target="$mnt/$name"
  mkdir -p "$target"
  logged "mount-$name" env CONTAINERD_SNAPSHOTTER="$sn" timeout 120 "$cd_dir/ctr" -n "$NS" images mount \
    --platform linux/amd64 "$ref" "$target" || return 1
  if ! printf 'ipcs test image: %s v1\n' "$name" | cmp -s - "$target/etc/ipcs-test.txt"; then
    say "/etc/ipcs-test.txt differs"; ok=1
  fi
  if [ -f "$target/opt/ipcs/SHA256SUMS" ]; then
    [ "$(sha256sum "$target/opt/ipcs/known-1m.bin" | cut -d' ' -f1)" = "$KNOWN_1M" ] || { say "known-1m.bin differs"; ok=1; }
    (cd "$target" && sha256sum --quiet -c opt/ipcs/SHA256SUMS) >"$logs/sums-$name.log" 2>&1 \
      || { say "SHA256SUMS:"; head -5 "$logs/sums-$name.log" | indent; ok=1; }
    say "$(wc -l <"$target/opt/ipcs/SHA256SUMS") files of $name byte-checked"
  fi
  [ ! -f "$target/etc/ipcs-arch.txt" ] || [ "$(cat "$target/etc/ipcs-arch.txt")" = amd64 ] || { say "ipcs-arch.txt differs"; ok=1; }
  env CONTAINERD_SNAPSHOTTER="$sn" timeout 120 "$cd_dir/ctr" -n "$NS" images unmount --rm "$target" >/dev/null 2>&1 \
    || { umount "$target" 2>/dev/null; say "unmount failed"; ok=1; }
  return $ok
}

chain_ids_of() {  # chain IDs of an image in the node, bottom first
  python3 - "$1" <<'PY'
import hashlib, sys
chain = None
for d in sys.argv[1].split():
    chain = d if chain is None else "sha256:" + hashlib.sha256(f"{chain} {d}".encode()).hexdigest()
    print(chain)
PY
}
diff_ids_of() {  # diffIDs of a built image, space separated
  local L="$IMAGES/$1" m c
  m=$(jq -r '.manifests[0].digest' "$L/index.json"); c=$(jq -r .config.digest "$L/blobs/sha256/${m#sha256:}")
  jq -r '.rootfs.diff_ids[]' "$L/blobs/sha256/${c#sha256:}" | tr '\n' ' '
}
committed_list() { ctr 30 snapshots --snapshotter "${1:-overlayfs}" ls 2>/dev/null | awk '$NF == "Committed" { print $1 }'; }

# -------------------------------------------------------------------------------- checks
check_pull_transfer() {
  logged pull-big ctr "$PULL_TIMEOUT" images pull --plain-http --platform linux/amd64 "$BIG" || return 1
  rootfs_check "$BIG" big
}
check_pull_local() {
  logged pull-small-local env CONTAINERD_SNAPSHOTTER=native timeout -k 10 "$PULL_TIMEOUT" "$cd_dir/ctr" -n "$NS" \
    images pull --local --plain-http --platform linux/amd64 --snapshotter native "$SMALL" || return 1
  rootfs_check "$SMALL" small native
}
check_nerdctl() {
  logged nerdctl-pull nerdctl "$PULL_TIMEOUT" --insecure-registry pull "$MULTI" || return 1
  rootfs_check "$MULTI" multi
}
check_run() {
  logged pull-small ctr "$PULL_TIMEOUT" images pull --plain-http --platform linux/amd64 "$SMALL" || return 1
  logged run-small ctr 120 run --rm "$SMALL" "differ-e2e-$RANDOM" || return 1
  grep -qx 'ipcs test image: small v1' "$last_log" || { say "output: $(head -c 200 "$last_log")"; return 1; }
  say "ctr run printed: $(grep -x 'ipcs test image: small v1' "$last_log")"
}

check_kill_mid_apply() {
  local ids chains base now t0 rc=0 hit="" n
  ids=$(diff_ids_of big); mapfile -t chains < <(chain_ids_of "$ids")
  logged rm-big ctr 300 images rm --sync "$BIG" || return 1
  # drop big's snapshots too, so the pull applies every layer again
  for ((n = ${#chains[@]} - 1; n >= 0; n--)); do ctr 60 snapshots rm "${chains[$n]}" >/dev/null 2>&1 || true; done
  base=$(layers_applied)
  [ -n "$base" ] || { say "ipcs's metrics endpoint does not answer"; return 1; }
  timeout -k 10 "$PULL_TIMEOUT" "$cd_dir/ctr" -n "$NS" images pull --plain-http --platform linux/amd64 "$BIG" \
    >"$logs/pull-big-killed.log" 2>&1 8>&- 9>&- &
  bg_pid=$!
  t0=$(now_ms)
  while [ $(( $(now_ms) - t0 )) -lt 120000 ]; do
    now=$(layers_applied)
    if [ -n "$now" ] && [ "$now" -ge $((base + APPLY_LOG_NTH)) ]; then
      hit="ipcs_differ_layers_applied_total $base -> $now"; break
    fi
    kill -0 "$bg_pid" 2>/dev/null || break
    sleep 0.01
  done
  if [ -z "$hit" ]; then
    say "ipcs_differ_layers_applied_total did not grow by $APPLY_LOG_NTH from $base during the pull"; last_log="$ipcs_log"
    wait "$bg_pid" || true; bg_pid=""; return 1
  fi
  kill_ipcs
  say "ipcs SIGKILLed $(( $(now_ms) - t0 )) ms into the pull, at: ${hit:0:160}"
  wait "$bg_pid" || rc=$?
  bg_pid=""
  last_log="$logs/pull-big-killed.log"
  say "the pull ended with status $rc after $(secs $(( $(now_ms) - t0 ))) s: $(grep -o 'ctr: .*' "$last_log" | tail -n 1 | cut -c1-200)"
  [ "$rc" != 0 ] || { say "the pull succeeded although ipcs was killed mid-apply"; return 1; }
  [ "$rc" -lt 124 ] || { say "the pull did not end by itself (timeout)"; return 1; }
  # committed snapshots of big must be a prefix of its chain
  local c k=0 bad=0
  mapfile -t got < <(committed_list)
  for c in "${chains[@]}"; do
    if printf '%s\n' "${got[@]}" | grep -qxF "$c"; then
      [ "$bad" = 0 ] || { say "committed $c after a missing lower layer"; return 1; }
      k=$((k + 1))
    else bad=1; fi
  done
  say "committed after the kill: $k of ${#chains[@]} layers of big (a prefix of its chain)"
  [ "$k" -lt "${#chains[@]}" ] || { say "every layer is committed although the apply was killed"; return 1; }
}
check_pull_after_restart() {
  last_log="$ipcs_log"
  ipcs_up || return 1
  # containerd's gRPC channels to ipcs (content and diff, one each) reconnect with backoff
  # (1 s, growing) after the kill; until they have, calls fail at once with the last dial
  # error. So a pull that fails with a connection error is tried again, for up to 60 s.
  local t0 n=0; t0=$(now_ms)
  while :; do
    n=$((n + 1))
    logged pull-big-after-kill ctr "$PULL_TIMEOUT" images pull --plain-http --platform linux/amd64 "$BIG" && break
    grep -q 'connection error' "$last_log" && [ $(( $(now_ms) - t0 )) -lt 60000 ] || return 1
    sleep 1
  done
  say "the pull succeeded on attempt $n, $(( $(now_ms) - t0 )) ms after ipcs was back"
  rootfs_check "$BIG" big
}

check_ipcs_down() {
  logged rm-small ctr 300 images rm --sync "$SMALL" || return 1
  local chains n
  mapfile -t chains < <(chain_ids_of "$(diff_ids_of small)")
  for ((n = ${#chains[@]} - 1; n >= 0; n--)); do ctr 60 snapshots rm "${chains[$n]}" >/dev/null 2>&1 || true; done
  # every blob is in the store; only the unpack needs ipcs now
  logged fetch-small ctr "$PULL_TIMEOUT" content fetch --plain-http --platform linux/amd64 "$SMALL" || return 1
  kill_ipcs
  local t0 rc=0 ms
  t0=$(now_ms)
  logged pull-small-ipcs-down ctr "$((DOWN_BOUND + 30))" images pull --plain-http --platform linux/amd64 "$SMALL" || rc=$?
  ms=$(( $(now_ms) - t0 ))
  say "pull with ipcs down: status $rc after $(secs "$ms") s: $(grep -o 'ctr: .*' "$last_log" | tail -n 1 | cut -c1-200)"
  [ "$rc" != 0 ] || { say "the pull succeeded with ipcs down"; return 1; }
  [ "$rc" -lt 124 ] && [ "$ms" -lt $((DOWN_BOUND * 1000)) ] || { say "no error within ${DOWN_BOUND} s (hang)"; return 1; }
  grep -qiE 'ipcs|unavailable|connection refused|no such file|dial' "$last_log" || { say "the error names neither ipcs nor the socket"; return 1; }
}

check "a. ctr images pull (transfer service) of big; rootfs byte-checked"           check_pull_transfer
check "b. ctr images pull --local of small into native; rootfs byte-checked"        check_pull_local
check "c. nerdctl pull of multi; amd64 rootfs byte-checked"                          check_nerdctl
check "d. ctr run of small prints its known line"                                    check_run
check "e1. ipcs SIGKILLed mid-apply: the pull fails, no half-applied layer committed" check_kill_mid_apply
check "e2. ipcs restarted: the same pull succeeds, rootfs byte-checked"              check_pull_after_restart
check "f. ipcs down: a pull needing the differ errors within ${DOWN_BOUND} s, no hang" check_ipcs_down
[ -n "$ipcs_pid" ] || ipcs_up || true
all_run=1
