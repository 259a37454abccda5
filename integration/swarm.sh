#!/usr/bin/env bash
# In-flight sharing on the swarm testbed (integration/swarm-testbed.sh), short: the registry
# in its own network namespace behind a 2 Mbit/s tbf link, SWARM_N (4) nodes with Kubo, an
# IPFS Cluster peer, ipcs (in-flight sharing on) and containerd 2.x, image small (1.1 MB).
#
#   integration/swarm.sh
#
#   b. herd: all nodes start pulling within one second; every pull (and unpack) succeeds,
#      the registry sends each blob once (blob bytes <= 1.1x the image) and the veth counter
#      agrees.
#   d. fresh nodes, herd again; the node leading the large layer has its ipcs killed (-9)
#      when ~40% of the layer has crossed; every other pull succeeds, exactly one other node
#      takes the layer over from the registry (resuming with Range, not from byte 0), and
#      the link carried less than the N-1 survivors' pulls without sharing.
#   p. share policy: a node that shares no repository (share_repositories) pulls first; the
#      cluster pinset gets none of its blobs, and a peer request for one is refused (404)
#      while its own containerd is served.
#   f. fallback: the other node's ipcs is stopped (SIGSTOP: it accepts and never answers);
#      a fresh pull on the remaining node succeeds, within the stall deadline of each
#      stalled leader plus a normal pull.
#   m. membership (every node finds the others through member records in the cluster
#      pinset, IPCS_SWARM=1): 3 nodes up, 3 records; node 3's ipcs stopped cleanly
#      withdraws its record, and nodes 1 and 2 count 2 members within 10 s.
# Ends with exactly one line `swarm: N passed, M failed`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
N="${SWARM_N:-4}"
KNOWN_SMALL='ipcs test image: small v1'

exec 8>&1 9>&2
work=$(mktemp -d /tmp/ipcs-swarm-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
passed=0 failed=0 setup_done=0 all_run=0 last_log=""
started_at=$(date +%s%N)
# shellcheck source=integration/p2p-nodes.sh
. "$root/integration/p2p-nodes.sh"
P2P_DIR="$work" P2P_LOG="$logs/setup.log" P2P_NS=swarm P2P_CONTAINERD=2 P2P_REBROADCAST=2s
TB_RATE="${SWARM_RATE:-2mbit}" TB_STALL=5
# shellcheck source=integration/swarm-testbed.sh
. "$root/integration/swarm-testbed.sh"
p2p_network_init

diagnostics() {
  local n dirs=()
  for n in "${P2P_NODES[@]}"; do dirs+=("$work/$n"); done
  show_logs "${dirs[@]}"
  [ -f "$P2P_LOG" ] && { say "--- setup log (last 10 lines)"; tail -n 10 "$P2P_LOG" | indent; }
  return 0
}

stop_all() { p2p_stop_all; tb_down; }
on_exit swarm stop_all

logged setup tb_up
logged push tb_push small
SMALL="$TB_REG/ipcs/small:v1"
manifest=$(jq -r '.manifests[0].digest' "$IMAGES/small/index.json")
mjson="$IMAGES/small/blobs/sha256/${manifest#sha256:}"
IMAGE_BYTES=$(jq '[.config.size, (.layers[].size)] | add' "$mjson")
BIG_LAYER=$(jq -r '.layers | max_by(.size) | .digest' "$mjson")
BIG_LAYER_BYTES=$(jq '.layers | max_by(.size) | .size' "$mjson")
nodes=$(seq 1 "$N" | tr '\n' ' ')
say "registry $TB_REG behind $TB_RATE (namespace $TB_NS); $N nodes; small = $IMAGE_BYTES bytes (layer ${BIG_LAYER:7:12} $BIG_LAYER_BYTES)"

start_nodes() {  # start_nodes I...: nodes joining those started before
  local n prev=()
  for n in "$@"; do
    tb_node_up "$n" "${prev[@]}" || return 1
    prev+=("$n")
  done
}
logged nodes-1 start_nodes $nodes
setup_done=1

# herd NODES: every node pulls at once; times in $work/time-N, status in $work/rc-N.
herd() {
  local n pids=()
  for n in $1; do
    ( rc=0; tb_pull "$n" "$SMALL" >"$work/time-$n" || rc=$?; echo "$rc" >"$work/rc-$n" ) &
    pids+=($!)
  done
  wait "${pids[@]}"
}

file_check() {  # file_check NODE
  local n=$1 ok=0 mnt="$work/$1/mnt"
  mkdir -p "$mnt"
  logged "mount-$n" p2p_ctr "$n" 120 images mount "$SMALL" "$mnt" || return 1
  printf '%s\n' "$KNOWN_SMALL" | cmp -s - "$mnt/etc/ipcs-test.txt" || { say "/etc/ipcs-test.txt differs on $n"; ok=1; }
  logged "unmount-$n" p2p_ctr "$n" 120 images unmount --rm "$mnt" || ok=1
  return $ok
}

check_herd() {
  local mark n e veth blob reqs
  mark=$(tb_mark)
  herd "$nodes"
  for n in $nodes; do
    [ "$(cat "$work/rc-$n")" = 0 ] || { say "node $n: pull failed"; last_log=$(ls -t "$logs"/pull-"$n"-*.log | head -1); return 1; }
    file_check "$n" || return 1
  done
  read -r veth blob reqs <<<"$(tb_egress "$mark")"
  say "pull times (ms): $(for n in $nodes; do printf '%s ' "$(cat "$work/time-$n")"; done)"
  say "registry egress: veth $veth bytes, blob responses $reqs carrying $blob bytes (image $IMAGE_BYTES)"
  tb_blob_egress "$mark" | indent
  awk -v b="$blob" -v i="$IMAGE_BYTES" 'BEGIN { exit !(b <= 1.1 * i) }' || { say "blob egress above 1.1x the image"; return 1; }
  awk -v b="$veth" -v i="$IMAGE_BYTES" 'BEGIN { exit !(b <= 1.1 * i + 131072) }' || { say "veth egress above 1.1x the image + 128 KiB of HTTP"; return 1; }
  # One response per blob: nobody downloaded a blob a second time.
  tb_blob_egress "$mark" | awk '$3 != 1 { bad = 1 } END { exit bad }' || { say "a blob was fetched more than once"; return 1; }
}
check "b. herd: $N nodes pull small at once; the registry sends each blob once" check_herd

check_leader_killed() {
  local mark n leader="" _ f size=0 pids=() e veth blob reqs layer_bytes takers
  logged nodes-down tb_nodes_down || return 1
  logged nodes-2 start_nodes $nodes || return 1
  mark=$(tb_mark)
  for n in $nodes; do
    ( rc=0; tb_pull "$n" "$SMALL" >"$work/time-$n" || rc=$?; echo "$rc" >"$work/rc-$n" ) &
    pids+=($!)
  done
  for _ in $(seq 1 300); do
    [ -n "$leader" ] || leader=$(tb_inflight_leader "$nodes" "$BIG_LAYER") || true
    if [ -n "$leader" ]; then
      f=$(ls "$work/$leader/data/inflight/${BIG_LAYER#sha256:}"-* 2>/dev/null | head -1) || true
      size=$( [ -n "$f" ] && stat -c %s "$f" 2>/dev/null || echo 0)
      [ "$size" -lt $((BIG_LAYER_BYTES * 4 / 10)) ] || break
    fi
    sleep 0.05
  done
  [ -n "$leader" ] || { say "no node's metrics showed it fetching ${BIG_LAYER:7:12} from the registry"; wait "${pids[@]}"; return 1; }
  say "leader of ${BIG_LAYER:7:12} is node $leader; killing its ipcs at $size of $BIG_LAYER_BYTES bytes"
  kill -9 "${P2P_PID[$leader]}"
  wait "${pids[@]}" || true
  for n in $nodes; do
    [ "$n" = "$leader" ] && continue
    [ "$(cat "$work/rc-$n")" = 0 ] || { say "node $n: pull failed"; last_log=$(ls -t "$logs"/pull-"$n"-*.log | head -1); return 1; }
    file_check "$n" || return 1
  done
  say "pull times (ms): $(for n in $nodes; do [ "$n" = "$leader" ] || printf '%s ' "$(cat "$work/time-$n")"; done)"
  read -r veth blob reqs <<<"$(tb_egress "$mark")"
  say "registry egress: veth $veth bytes, blob responses $reqs carrying $blob bytes (image $IMAGE_BYTES)"
  tb_blob_egress "$mark" | indent
  # The access log counts what the registry wrote into its sockets, which for the killed
  # leader's connection is more than crossed; the veth counter is what crossed (with the
  # retransmissions the shaped link causes). Without sharing, each of the N-1 survivors
  # would pull the whole image.
  awk -v b="$veth" -v s="$IMAGE_BYTES" -v n="$N" 'BEGIN { exit !(b < (n - 1) * s) }' || { say "as much egress as without sharing ($veth bytes)"; return 1; }
  # Exactly one survivor took the layer over from the registry, and it resumed (from > 0):
  # each node's ipcs_inflight_takeovers / _takeover_from_bytes for that digest.
  local takers="" t from
  for n in $nodes; do
    [ "$n" = "$leader" ] && continue
    t=$(p2p_metric "$n" "ipcs_inflight_takeovers_total{digest=\"$BIG_LAYER\"}") || { say "node $n: metrics do not answer"; return 1; }
    [ "$t" -ge 1 ] || continue
    from=$(p2p_metric "$n" "ipcs_inflight_takeover_from_bytes{digest=\"$BIG_LAYER\"}") || return 1
    takers+="$n:$from "
  done
  say "took over (node:first byte asked): ${takers:-none}"
  [ "$(wc -w <<<"$takers")" = 1 ] || { say "expected exactly one node to take over"; return 1; }
  [ "${takers#*:}" != "0 " ] || { say "the takeover started again from byte 0"; return 1; }
  return 0
}
check "d. herd with the leader of the large layer killed at 40%: others succeed, exactly one takes over" check_leader_killed

check_policy() {
  local pins code
  logged nodes-down tb_nodes_down || return 1
  TB_SHARE="$TB_REG/nothing/*" logged nodes-3 tb_node_up 2 || return 1
  logged nodes-3b tb_node_up 1 2 || return 1
  rm -rf "$work/time-"* "$work/rc-"*
  tb_pull 2 "$SMALL" >/dev/null || { say "node 2: pull failed"; return 1; }
  sleep $((P2P_REFRESH * 3 + 2))
  pins=$(p2p_cctl 1 pin ls 2>/dev/null | grep -c 'sha256:' || true)
  say "cluster pins after node 2's pull: $pins"
  [ "$pins" = 0 ] || { say "node 2 published blobs of a repository it does not share"; return 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "x-ipcs-mirror-secret: $(tb_secret)" -H "x-ipcs-peer: 1" \
           "http://127.0.0.1:${P2P_MIRROR[2]}/v2/ipcs/small/blobs/$BIG_LAYER?ns=$TB_REG")
  say "peer request to node 2: HTTP $code"
  [ "$code" = 404 ] || return 1
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "x-ipcs-mirror-secret: $(tb_secret)" \
           "http://127.0.0.1:${P2P_MIRROR[2]}/v2/ipcs/small/blobs/$BIG_LAYER?ns=$TB_REG")
  say "its own client's request: HTTP $code"
  [ "$code" = 200 ]
}
check "p. share policy: a node sharing nothing publishes nothing and refuses peers" check_policy

leader_of() {  # leader_of DIGEST NODE...: the node the swarm ranks first (mirror/swarm.rs)
  local d=$1 n; shift
  for n in "$@"; do
    printf '%s %s\n' "$(printf '%s\n%s' "$d" "http://127.0.0.1:${P2P_MIRROR[$n]}" | sha256sum | cut -c1-64)" "$n"
  done | sort -r | head -1 | cut -d' ' -f2
}

check_fallback() {
  local t limit d stalled=0 abandoned before
  logged nodes-3c tb_node_up 3 1 2 || return 1
  for d in $(jq -r '.config.digest, .layers[].digest' "$mjson"); do
    [ "$(leader_of "$d" 1 2 3)" = 3 ] || stalled=$((stalled + 1))
  done
  before=$(p2p_metric 3 'ipcs_inflight_abandoned_total{source="peer"}') || { say "node 3: metrics do not answer"; return 1; }
  kill -STOP "${P2P_PID[1]}" "${P2P_PID[2]}"
  t=$(tb_pull 3 "$SMALL") || { kill -CONT "${P2P_PID[1]}" "${P2P_PID[2]}"; say "node 3: pull failed"; return 1; }
  kill -CONT "${P2P_PID[1]}" "${P2P_PID[2]}"
  # Per blob at most two stalled leaders before node 3 itself, TB_STALL each; containerd
  # fetches the config first, then the layers (up to 3 at once): two such waits, and
  # 15 s for the pull itself.
  limit=$(( (TB_STALL * 4 + 15) * 1000 ))
  abandoned=$(p2p_metric 3 'ipcs_inflight_abandoned_total{source="peer"}') || return 1
  abandoned=$((abandoned - before))
  say "node 3 pulled in $t ms with nodes 1 and 2 stopped (limit $limit ms); $stalled blobs led by a stopped node, $abandoned sources abandoned"
  [ "$t" -le "$limit" ] || return 1
  [ "$stalled" = 0 ] || [ "$abandoned" -ge "$stalled" ] || { say "node 3 did not abandon the stopped leaders"; return 1; }
  file_check 3
}
check "f. fallback: with the leading peers stopped, a pull still succeeds within the deadline" check_fallback

member_records() { p2p_cctl "$1" pin ls 2>/dev/null | grep -c 'ipcs-member:http://' || true; }

check_members() {
  local records m _ seen
  records=$(member_records 1)
  say "member records in the pinset with nodes 1 2 3 up: $records"
  p2p_cctl 1 pin ls 2>/dev/null | grep -m1 'ipcs-member:http://' | indent
  [ "$records" = 3 ] || return 1
  stop_pid "${P2P_PID[3]}" TERM 10
  P2P_PID[3]=""
  for _ in $(seq 1 100); do
    seen=""
    [ "$(member_records 1)" = 2 ] || seen="pinset "
    for m in 1 2; do [ "$(p2p_metric "$m" ipcs_swarm_members)" = 2 ] || seen="$seen$m "; done
    [ -n "$seen" ] || break
    sleep 0.1
  done
  say "after node 3's clean stop: $(member_records 1) member records; nodes 1 and 2 count $(p2p_metric 1 ipcs_swarm_members) and $(p2p_metric 2 ipcs_swarm_members) members"
  [ -z "$seen" ] || { say "still counting node 3: $seen"; return 1; }
}
check "m. membership: a cleanly stopped node withdraws its member record and the others drop it" check_members

all_run=1
