#!/usr/bin/env bash
# Differential test of ipcs's differ against containerd's walking differ (issue 11,
# acceptance 1 and 2), on two containerd 2.x nodes side by side.
#
#   integration/differ-diff.sh [crafted] [local] [hostile] [selftest]     (default: all)
#
# Stack, in a fresh work dir under /tmp: a registry on 127.0.0.1 holding the images of
# integration/differ/gen_images.py (cached in ${IPCS_IMAGES:-~/.cache/ipcs-images}/differ),
# one offline Kubo, two `ipcs serve` (one per node) and two containerd $CONTAINERD2_VERSION
# nodes with ipcs as their content store:
#   node A  containerd's walking differ (the reference)
#   node B  ipcs's differ (the default), or the walking differ too (DIFFER_B=walking: the
#           harness checking itself, by hand only).
# crafted  every dt-* image is pulled (`ctr images pull`, transfer service) into both nodes
#          with the overlayfs and with the native snapshotter. Both pulls must end alike; when
#          they succeed, each layer's own tree (overlay: the committed snapshot's upperdir, with
#          its whiteout devices and opaque xattrs; native: the committed snapshot dir) and the
#          final rootfs (overlay: the mounted view; native: the top snapshot) are compared by
#          integration/differ/compare.py: type, content sha256, mode incl. suid/sgid/sticky,
#          uid/gid, mtime ns, xattrs (trusted.*, security.capability too), device numbers,
#          symlink targets and hardlink identity.
# local    dt-mixed and dt-gzip again through `ctr images pull --local` (the diff service's
#          default order), in a namespace of their own
# hostile  every hx-* image likewise, plus: no file appears outside the snapshot roots
#          (canary dirs /tmp/ipcs-differ-canary, DIR/root/ipcs-differ-canary, DIR/ipcs-differ-
#          canary and WORK/ipcs-differ-canary stay as they were, /ipcs-differ-canary stays absent,
#          /etc/passwd and /etc/hostname keep their inode, link count and bytes), and a failed
#          pull leaves no committed snapshot of the failed layer.
# selftest the comparator must fail: one of node B's committed trees is corrupted one attribute
#          at a time (compare.py selftest) and every corruption must be reported.
# Prints TAP-like lines and ends with `differ-diff: N passed, M failed`. Every daemon and mount
# is cleaned up on exit; the work dir is kept after a failure (or with KEEP_WORK=1).
# With node B on ipcs, its ipcs must count (ipcs_differ_layers_applied_total, read from its
# metrics socket) at least one applied layer per crafted layer, node A's none.
# Both nodes run with CONTAINERD_DISABLE_PIGZ=1: the reference is the walking differ with
# containerd's own Go gzip reader (DIFF_PIGZ=1 lets node A use unpigz when it is on PATH).
# Env: DIFFER_B (ipcs|walking), IPCS_IMAGES, IPCS_TOOLS, DIFF_PULL_TIMEOUT (60 s),
#      DIFF_PIGZ, DIFF_ONLY (regex of image names, for development).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
IMAGES="${IPCS_IMAGES:-$HOME/.cache/ipcs-images}/differ"
IPCS_SRC="${IPCS_BIN:-$root/target/release/ipcs}"
PULL_TIMEOUT="${DIFF_PULL_TIMEOUT:-60}"
COMPARE="$root/integration/differ/compare.py"
CANARY=/tmp/ipcs-differ-canary
NS=difftest
phases="${*:-crafted local hostile selftest}"

# Node B runs ipcs's differ; DIFFER_B=walking runs the harness against itself (a check of
# the comparator, never what `make test` runs).
differ_b="${DIFFER_B:-ipcs}"
case "$differ_b" in ipcs|walking) ;; *) echo "DIFFER_B must be ipcs or walking" >&2; exit 2;; esac

exec 8>&1 9>&2
started_at=$(date +%s%N)
work=$(mktemp -d /tmp/ipcs-differ-diff-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
kubo_dir="$work/kubo"; reg_dir="$work/registry"
passed=0 failed=0 setup_done=0 all_run=0 last_log=""
declare -A ipcs_pid=()
mounted=()

diagnostics() {
  if [ -n "$last_log" ] && [ -s "$last_log" ]; then
    say "--- $(basename "$last_log") (last 15 lines)"; tail -n 15 "$last_log" | indent
  fi
  local n
  for n in A B; do
    say "--- node $n: containerd errors (last 5)"
    grep -E 'level=(error|fatal)' "$work/cd$n/containerd.log" 2>/dev/null | tail -n 5 | indent || true
    say "--- node $n: ipcs log (last 5)"; tail -n 5 "$work/ipcs$n/ipcs.log" 2>/dev/null | indent || true
  done
}

ctrn() { local n="$1" t="$2"; shift 2; timeout -k 5 "$t" "$work/cd$n/ctr" -n "$NS" "$@"; }

node_ipcs_start() {  # node_ipcs_start A|B
  local d="$work/ipcs$1"
  start_ipcs --bin "$IPCS" --socket "$d/ipcs.sock" --data "$d/data" --log "$d/ipcs.log" --kubo "$api" \
    -- --metrics-listen "unix://$d/metrics.sock" || return 1
  ipcs_pid[$1]=$IPCS_STARTED_PID
}

cleanup() {
  local rc=$?
  set +e
  exec >&8 2>&9
  trap - EXIT INT TERM
  local m n
  for m in "${mounted[@]}"; do mountpoint -q "$m" && { umount "$m" 2>/dev/null || umount -l "$m"; }; done
  for n in A B; do "$root/integration/containerd-node.sh" stop "$work/cd$n" >/dev/null 2>&1; done
  for n in "${!ipcs_pid[@]}"; do
    stop_pid "${ipcs_pid[$n]}"
  done
  "$root/scripts/kubo-node.sh" stop "$kubo_dir" >/dev/null 2>&1
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
  rmdir "$CANARY" 2>/dev/null   # only when empty: anything in it is evidence
  finish_run "differ-diff (node B: $differ_b differ)" "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------- setup
say "differ differential test, work dir $work; node A: walking differ, node B: $differ_b differ"
[ "$differ_b" = ipcs ] || say "WARNING: node B uses the walking differ too: this run checks the harness, not ipcs"
[ -x "$IPCS_SRC" ] || { echo "missing $IPCS_SRC (cargo build --release)" >&2; exit 1; }
mkdir -p "$work/bin"; IPCS="$work/bin/ipcs"; cp "$IPCS_SRC" "$IPCS"

last_log="$logs/build-images.log"
timeout 600 python3 "$root/integration/differ/gen_images.py" "$IMAGES" >"$last_log" 2>&1
last_log="$logs/registry.log"
"$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>"$last_log" 8>&- 9>&-
reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
mapfile -t all_images < <(cut -f1 "$IMAGES/images.tsv")
last_log="$logs/push.log"
# skopeo per image, 4 at a time (IPCS_IMAGES layouts are read-only here)
printf '%s\n' "${all_images[@]}" | xargs -P 4 -I{} timeout 120 skopeo copy --quiet --preserve-digests \
  --dest-tls-verify=false "oci:$IMAGES/{}:v1" "docker://$reg/ipcs/{}:v1" >"$last_log" 2>&1
say "registry $reg: ${#all_images[@]} images pushed"

last_log="$logs/kubo.log"
api=$(timeout 120 "$root/scripts/kubo-node.sh" start "$kubo_dir" --offline --swarm "$(free_port)" 2>"$last_log" 8>&- 9>&-)
last_log="$logs/ipcs-start.log"
node_ipcs_start A 2>"$last_log"; node_ipcs_start B 2>"$last_log"
# The reference is containerd's own Go decompressor: with unpigz on PATH the walking differ
# inflates gzip through it, and unpigz accepts what Go's gzip refuses (e.g. garbage after the
# last member, hx-gzip-trailing-garbage). DIFF_PIGZ=1 keeps unpigz (and shows that).
[ -n "${DIFF_PIGZ:-}" ] || export CONTAINERD_DISABLE_PIGZ=1
for n in A B; do
  opts=()
  [ "$n" = B ] && [ "$differ_b" = ipcs ] && opts=(--differ ipcs)
  last_log="$logs/containerd-$n.log"
  timeout 120 "$root/integration/containerd-node.sh" start "$work/cd$n" --version 2 \
    --content-socket "$work/ipcs$n/ipcs.sock" "${opts[@]}" >/dev/null 2>"$last_log" 8>&- 9>&-
done
if [ "$differ_b" = ipcs ]; then
  last_log="$logs/plugins-B.log"
  "$work/cdB/ctr" plugins ls >"$last_log" 2>&1
  grep -q 'ipcs-diff' "$last_log" || { echo "node B lists no ipcs-diff plugin" >&2; exit 1; }
fi
# canaries beside every level an escape could reach
canaries=("$CANARY" "$work/ipcs-differ-canary")
for n in A B; do canaries+=("$work/cd$n/ipcs-differ-canary" "$work/cd$n/root/ipcs-differ-canary"); done
for c in "${canaries[@]}"; do mkdir -p "$c"; done
[ -e /ipcs-differ-canary ] && { echo "/ipcs-differ-canary exists before the test: remove it" >&2; exit 1; }
setup_done=1
say "setup done in $(secs $(( ($(date +%s%N) - started_at) / 1000000 ))) s"

# ------------------------------------------------------------------------------ helpers
# chain IDs of an image's layers, bottom first, from its OCI layout
chain_ids() {
  python3 - "$IMAGES/$1" <<'PY'
import hashlib, json, sys
L = sys.argv[1]
blob = lambda d: json.load(open(f"{L}/blobs/sha256/{d[7:]}"))
m = blob(json.load(open(f"{L}/index.json"))["manifests"][0]["digest"])
chain = None
for d in blob(m["config"]["digest"])["rootfs"]["diff_ids"]:
    chain = d if chain is None else "sha256:" + hashlib.sha256(f"{chain} {d}".encode()).hexdigest()
    print(chain)
PY
}

# snap_dir NODE SNAPSHOTTER CHAINID -> the committed snapshot's own directory (overlay: its
# fs/ upperdir; native: its dir), from the mounts of a view on it (the view is removed).
snap_dir() {
  local n="$1" sn="$2" c="$3" key="difftest-view-$RANDOM$RANDOM" js
  # (ctr's own lease may already have let the view go: rm is best effort)
  js=$(ctrn "$n" 30 snapshots --snapshotter "$sn" view --mounts "$key" "$c" 2>>"$logs/ctr-stderr.log") || return 1
  ctrn "$n" 30 snapshots --snapshotter "$sn" rm "$key" >/dev/null 2>&1 || true
  jq -r '.[0] | if .Type == "bind" then .Source
                else (.Options[] | select(startswith("lowerdir=")) | ltrimstr("lowerdir=") | split(":")[0]) end' <<<"$js"
}

# mount_top NODE SNAPSHOTTER CHAINID DIR: the image's rootfs, read-only, at DIR (a view,
# mounted; the view key is remembered for unmount_top).
mount_top() {
  local n="$1" sn="$2" c="$3" dir="$4" js type src opts
  view_key="difftest-top-$RANDOM$RANDOM"
  js=$(ctrn "$n" 30 snapshots --snapshotter "$sn" view --mounts "$view_key" "$c" 2>>"$logs/ctr-stderr.log") || return 1
  type=$(jq -r '.[0].Type' <<<"$js"); src=$(jq -r '.[0].Source' <<<"$js")
  opts=$(jq -r '.[0].Options | join(",")' <<<"$js")
  mkdir -p "$dir"
  mount -t "$type" -o "$opts" "$src" "$dir" || return 1
  mounted+=("$dir")
}
unmount_top() {  # unmount_top NODE SNAPSHOTTER DIR
  umount "$3" || umount -l "$3"
  ctrn "$1" 30 snapshots --snapshotter "$2" rm "$view_key" >/dev/null 2>&1 || true
}

# pull_both IMAGE SNAPSHOTTER: pulls on A and B at once; sets rcA rcB
# (PULL_LOCAL=1: `ctr images pull --local`, the client-side unpack through the diff service's
# default order, instead of the transfer service)
pull_both() {
  local img="$1" sn="$2" ref="$reg/ipcs/$1:v1" local_opt=()
  [ -z "${PULL_LOCAL:-}" ] || local_opt=(--local)
  ctrn A "$PULL_TIMEOUT" images pull "${local_opt[@]}" --plain-http --platform linux/amd64 --snapshotter "$sn" "$ref" \
    >"$logs/pull-$img-$sn-A.log" 2>&1 &
  local pa=$!
  ctrn B "$PULL_TIMEOUT" images pull "${local_opt[@]}" --plain-http --platform linux/amd64 --snapshotter "$sn" "$ref" \
    >"$logs/pull-$img-$sn-B.log" 2>&1 &
  local pb=$!
  rcA=0; wait "$pa" || rcA=$?
  rcB=0; wait "$pb" || rcB=$?
}

# committed NODE SNAPSHOTTER CHAINID: 0 if a committed snapshot of that name exists
committed() {
  ctrn "$1" 30 snapshots --snapshotter "$2" ls 2>/dev/null | awk -v c="$3" '$1 == c && $NF == "Committed" { f = 1 } END { exit !f }'
}

# compare_image IMAGE SNAPSHOTTER: per-layer trees + rootfs of both nodes
compare_image() {
  local img="$1" sn="$2" c i=0 args=() da db
  mapfile -t chains < <(chain_ids "$img")
  for c in "${chains[@]}"; do
    i=$((i + 1))
    if ! committed A "$sn" "$c" || ! committed B "$sn" "$c"; then
      say "layer $i ($c) is not committed on both nodes"; return 1
    fi
    da=$(snap_dir A "$sn" "$c") || return 1
    db=$(snap_dir B "$sn" "$c") || return 1
    args+=("$img/$sn/layer$i" "$da" "$db")
  done
  mount_top A "$sn" "${chains[-1]}" "$work/mntA" || return 1
  local keyA=$view_key
  if ! mount_top B "$sn" "${chains[-1]}" "$work/mntB"; then view_key=$keyA; unmount_top A "$sn" "$work/mntA"; return 1; fi
  local keyB=$view_key rc=0
  args+=("$img/$sn/rootfs" "$work/mntA" "$work/mntB")
  python3 "$COMPARE" trees --volatile-after "$started_at" "${args[@]}" >"$logs/compare-$img-$sn.log" 2>&1 || rc=$?
  view_key=$keyA; unmount_top A "$sn" "$work/mntA"
  view_key=$keyB; unmount_top B "$sn" "$work/mntB"
  last_log="$logs/compare-$img-$sn.log"
  grep -v '^DIFF' "$last_log" | indent
  grep '^DIFF' "$last_log" | head -n 20 | indent
  tally "$last_log"
  return $rc
}
tally() {  # adds a compare.py summary line to the totals
  read -r t e d < <(sed -n 's/^compared \([0-9]*\) trees, \([0-9]*\) entries: \([0-9]*\) differences$/\1 \2 \3/p' "$1")
  tot_trees=$((tot_trees + ${t:-0})); tot_entries=$((tot_entries + ${e:-0})); tot_diffs=$((tot_diffs + ${d:-0}))
}
tot_trees=0 tot_entries=0 tot_diffs=0

# ------------------------------------------------------------------------------- crafted
check_crafted() {
  local img="$1" sn="$2" expect="$3"
  pull_both "$img" "$sn"
  last_log="$logs/pull-$img-$sn-B.log"
  say "pull exit status: A $rcA, B $rcB (expected: $expect)"
  if [ "$rcA" != 0 ] && [ "$rcA" != 1 ]; then say "node A pull ended with $rcA (timeout?)"; return 1; fi
  if [ $((rcA == 0)) != $((rcB == 0)) ]; then
    say "the differs disagree: A $rcA, B $rcB"; grep -h -m2 'ctr:' "$logs/pull-$img-$sn-"?.log | indent
    return 1
  fi
  case "$expect" in
    ok) [ "$rcA" = 0 ] || { say "the walking differ failed where it should not"; last_log="$logs/pull-$img-$sn-A.log"; return 1; } ;;
    fail) [ "$rcA" != 0 ] || { say "the walking differ accepted what it should refuse"; return 1; }
          grep -h -m1 -o 'ctr: .*' "$logs/pull-$img-$sn-"?.log | rev | cut -c1-110 | rev | indent; return 0 ;;
  esac
  compare_image "$img" "$sn"
}

# ------------------------------------------------------------------------------- hostile
canary_state() {
  local c
  for c in "${canaries[@]}"; do find "$c" -printf '%p %y %s %T@\n' 2>&1; done
  ls -ld /ipcs-differ-canary 2>&1 | sed 's/^ls: //'
  stat -c '%n %i %h %s %Y' /etc/passwd /etc/hostname
  sha256sum /etc/passwd /etc/hostname
}

check_hostile() {
  local img="$1" sn="$2" before after rc=0
  before=$(canary_state)
  pull_both "$img" "$sn"
  after=$(canary_state)
  last_log="$logs/pull-$img-$sn-B.log"
  local ea eb
  # the end of ctr's message says why (its start names the layer and the snapshot key)
  ea=$(grep -h -m1 -o 'ctr: .*' "$logs/pull-$img-$sn-A.log" | rev | cut -c1-110 | rev || true)
  eb=$(grep -h -m1 -o 'ctr: .*' "$logs/pull-$img-$sn-B.log" | rev | cut -c1-110 | rev || true)
  say "A: $([ "$rcA" = 0 ] && echo applied || echo "refused ($rcA) ${ea}")"
  say "B: $([ "$rcB" = 0 ] && echo applied || echo "refused ($rcB) ${eb}")"
  if [ "$before" != "$after" ]; then
    say "FILES APPEARED OR CHANGED OUTSIDE THE SNAPSHOT ROOTS:"; diff <(echo "$before") <(echo "$after") | indent; rc=1
  fi
  if [ "$rcA" -ge 124 ] || [ "$rcB" -ge 124 ]; then say "a pull timed out (bound ${PULL_TIMEOUT}s)"; rc=1; fi
  if [ $((rcA == 0)) != $((rcB == 0)) ]; then say "the differs disagree"; return 1; fi
  local top; top=$(chain_ids "$img" | tail -n 1)
  if [ "$rcA" != 0 ]; then
    local n
    for n in A B; do
      if committed "$n" "$sn" "$top"; then say "node $n committed the refused layer $top"; rc=1; fi
    done
    return $rc
  fi
  compare_image "$img" "$sn" || rc=1
  return $rc
}

# -------------------------------------------------------------------------------- checks
if [[ " $phases " == *" crafted "* ]]; then
  while IFS=$'\t' read -r img kind nl media note; do
    [ "$kind" = crafted ] || continue
    [[ "$img" =~ ${DIFF_ONLY:-.} ]] || continue
    for sn in overlayfs native; do
      expect=ok
      [ "$img" = dt-hllower ] && [ "$sn" = overlayfs ] && expect=fail
      [ "$img" = dt-oldgnu ] && expect=fail
      check "crafted $img ($nl layers, $media) $sn: $note" check_crafted "$img" "$sn" "$expect"
    done
  done <"$IMAGES/images.tsv"
fi

# the same comparison through `ctr images pull --local` (the diff service's default order,
# ["ipcs-diff", "walking"] on node B), in a namespace of its own so every layer is applied anew
if [[ " $phases " == *" local "* ]]; then
  NS=difftest-local PULL_LOCAL=1
  for img in dt-mixed dt-gzip; do
    for sn in overlayfs native; do
      check "crafted $img $sn, ctr images pull --local" check_crafted "$img" "$sn" ok
    done
  done
  NS=difftest PULL_LOCAL=""
fi

if [[ " $phases " == *" hostile "* ]]; then
  while IFS=$'\t' read -r img kind nl media note; do
    [ "$kind" = hostile ] || continue
    [[ "$img" =~ ${DIFF_ONLY:-.} ]] || continue
    for sn in overlayfs native; do
      check "hostile $img ($media) $sn: $note" check_hostile "$img" "$sn"
    done
  done <"$IMAGES/images.tsv"
fi

check_selftest() {
  # the comparator must fail: corrupt node B's top native snapshot of dt-gzip and an overlay
  # upperdir holding whiteouts and opaque xattrs
  local c da db rc=0 i min sn pair
  mapfile -t chains < <(chain_ids dt-gzip)
  if ! committed B native "${chains[-1]}"; then
    pull_both dt-gzip native; pull_both dt-gzip overlayfs
  fi
  # native top: every kind of entry; overlay layer 9: whiteout devices and opaque xattrs
  for pair in "native ${#chains[@]} 14" "overlayfs 9 7"; do
    read -r sn i min <<<"$pair"
    c=${chains[$((i - 1))]}
    da=$(snap_dir A "$sn" "$c") && db=$(snap_dir B "$sn" "$c") || return 1
    last_log="$logs/selftest-$sn.log"
    python3 "$COMPARE" selftest --volatile-after "$started_at" --min-mutations "$min" "$da" "$db" >"$last_log" 2>&1 || rc=1
    say "dt-gzip $sn layer $i:"; indent <"$last_log"
  done
  return $rc
}
# Layers ipcs N's differ applied since it started (its metrics socket); empty if no answer.
layers_applied() {
  curl -sS -m 5 --unix-socket "$work/ipcs$1/metrics.sock" http://localhost/metrics 2>/dev/null \
    | awk '$1 == "ipcs_differ_layers_applied_total" { print int($2) }'
}
# node B's layers really went through ipcs: its differ counted each applied layer, node A's
# ipcs (content store only) none
check_applied_by_ipcs() {
  local na nb
  na=$(layers_applied A); nb=$(layers_applied B)
  say "ipcs_differ_layers_applied_total: ipcs A ${na:-no answer}, ipcs B ${nb:-no answer}"
  [ "$na" = 0 ] && [ -n "$nb" ] && [ "$nb" -ge "$min_applied" ]
}
if [ "$differ_b" = ipcs ]; then
  min_applied=0
  [[ " $phases " != *" crafted "* ]] || min_applied=$((min_applied + 4 * 14 * 2))
  [[ " $phases " != *" local "* ]] || min_applied=$((min_applied + 2 * 14 * 2))
  [[ " $phases " != *" hostile "* ]] || min_applied=$((min_applied + 1))
  check "node B's layers were applied by ipcs (at least $min_applied counted by its differ), node A's by walking" check_applied_by_ipcs
fi

# the canary watch must fail too: a file dropped into each canary dir, and a hardlink made to
# /etc/hostname, are each reported
check_canary_selftest() {
  local before after c miss=0 t="$work/hostname-link"
  before=$(canary_state)
  for c in "${canaries[@]}"; do
    : >"$c/selftest"
    after=$(canary_state)
    if [ "$before" = "$after" ]; then say "a file in $c went unnoticed"; miss=1; fi
    rm -f "$c/selftest"
  done
  ln /etc/hostname "$t"
  after=$(canary_state)
  if [ "$before" = "$after" ]; then say "a hardlink to /etc/hostname went unnoticed"; miss=1; fi
  rm -f "$t"
  say "${#canaries[@]} canary dirs and /etc/hostname's link count watched"
  return $miss
}
if [[ " $phases " == *" selftest "* ]]; then
  check "selftest: corrupting node B's trees is reported, one difference per corrupted attribute" check_selftest
  check "selftest: a file outside the snapshot roots is noticed by the canary watch" check_canary_selftest
fi

say "totals: $tot_trees trees compared (each layer's own and each rootfs), $tot_entries entries, $tot_diffs differences"
all_run=1
