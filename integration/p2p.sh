#!/usr/bin/env bash
# Peer-to-peer test: three nodes, each Kubo + IPFS Cluster peer + ipcs + containerd 1.6,
# all on 127.0.0.1 (distinct ports), Kubo nodes peered with each other (no DHT), one
# cluster secret. containerd resolves through ipcs's registry mirror (hosts.toml).
#
#   integration/p2p.sh
#
#   1. A pulls big from the registry; the registry is stopped; B and C pull big with ctr
#      (unpack + byte check) and succeed; the registry log shows no blob request after A's
#      pull.
#   2. A is killed; C removes big, garbage-collects, drops the blocks from its Kubo, and
#      pulls big again: it succeeds, from B.
#   3. A cluster pin mapping a digest to a wrong CID (bytes of the right size that are not
#      the blob) is caught: C's pull of small falls back to the registry, no wrong byte is
#      served, and C's log names the mismatch.
#   4. With the cluster down (every peer stopped), B pulls multi through the registry.
# Nodes publish with replication factor 1 (the publishing node holds the cluster pin), so
# that "from B" in step 2 means bytes crossed from B's Kubo to C's.
# Ends with exactly one line `p2p: N passed, M failed`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
PULL_TIMEOUT="${P2P_PULL_TIMEOUT:-300}"
REFRESH=2
NS=p2p
KNOWN_BIG='ipcs test image: big v1'
KNOWN_SMALL='ipcs test image: small v1'

exec 8>&1 9>&2
work=$(mktemp -d /tmp/ipcs-p2p-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
reg_dir="$work/registry"
passed=0 failed=0 setup_done=0 all_run=0 last_log="" started_at=$(date +%s%N)
# shellcheck source=integration/p2p-nodes.sh
. "$root/integration/p2p-nodes.sh"
P2P_DIR="$work" P2P_LOG="$logs/setup.log" P2P_NS="$NS" P2P_IPCS="$IPCS" P2P_IPFS="$IPFS"
P2P_CLUSTER_CTL="$CLUSTER_CTL" P2P_REFRESH=$REFRESH
# A private network: one cluster secret, one Kubo swarm key (libp2p PSK) for the three nodes.
p2p_network_init

ctr()   { p2p_ctr "$@"; }
ipfs()  { p2p_ipfs "$@"; }
cctl()  { p2p_cctl "$@"; }
blobs() { p2p_blobs "$@"; }

diagnostics() { show_logs "$work/a" "$work/b" "$work/c"; }

stop_all() {
  local n
  for n in a b c; do
    mountpoint -q "$work/$n/mnt" 2>/dev/null && umount -l "$work/$n/mnt"
    p2p_node_stop "$n"
  done
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
}
on_exit p2p stop_all

# ---------------------------------------------------------------------------------- setup
require_bins "$IPCS" "$IPFS" "$CLUSTER_CTL"
last_log="$logs/setup.log"
"$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>>"$last_log" 8>&- 9>&-
reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
reg_log=$("$root/integration/images/registry.sh" log "$reg_dir")
timeout 1800 "$root/integration/images/build-images.sh" --only small,big,multi "$IMAGES" >>"$last_log" 2>&1
timeout 900 "$root/integration/images/push-images.sh" "$IMAGES" "$reg" small big multi >>"$last_log" 2>&1
SMALL="$reg/ipcs/small:v1" BIG="$reg/ipcs/big:v1" MULTI="$reg/ipcs/multi:v1"
say "registry $reg, work dir $work"

for n in a b c; do p2p_kubo_start "$n"; done
p2p_kubo_peer a b c
p2p_kubo_peer b a c
p2p_kubo_peer c a b
say "kubo: ${P2P_API[a]} ${P2P_API[b]} ${P2P_API[c]} (peered)"

p2p_cluster_start a
p2p_cluster_start b a
p2p_cluster_start c a b
p2p_cluster_wait_peers c 3 || say "cluster peer c does not see all three peers yet"
say "cluster: ${P2P_REST[a]} ${P2P_REST[b]} ${P2P_REST[c]}"

for n in a b c; do
  p2p_ipcs_start "$n"
  p2p_containerd_start "$n" "$reg"
  mkdir -p "$work/$n/mnt"
done
setup_done=1
say "three nodes up"

# --------------------------------------------------------------------------------- checks
pull() {  # pull NODE LOGNAME REF
  logged "$2" ctr "$1" "$PULL_TIMEOUT" images pull --hosts-dir "$work/$1/hosts" --platform linux/amd64 "$3"
}

file_check() {  # file_check NODE REF EXPECTED_TEXT
  local n=$1 ok=0
  logged "mount-$n" ctr "$n" 120 images mount "$2" "$work/$n/mnt" || return 1
  printf '%s\n' "$3" | cmp -s - "$work/$n/mnt/etc/ipcs-test.txt" || { say "/etc/ipcs-test.txt differs on $n"; ok=1; }
  if [ -f "$work/$n/mnt/opt/ipcs/SHA256SUMS" ]; then
    (cd "$work/$n/mnt" && sha256sum --quiet -c opt/ipcs/SHA256SUMS) >"$logs/sums-$n.log" 2>&1 || { say "SHA256SUMS fail on $n"; ok=1; }
  fi
  logged "unmount-$n" ctr "$n" 120 images unmount --rm "$work/$n/mnt" || ok=1
  return $ok
}

check_a_pulls() { pull a pull-a-big "$BIG" && p2p_wait_published a c; }

check_registry_stopped() {
  reg_off=$(stat -c %s "$reg_log")
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1 || return 1
  ! curl -fsS -m 2 "http://$reg/v2/" >/dev/null 2>&1
}

check_pull_from_peers() {  # NODE
  pull "$1" "pull-$1-big" "$BIG" || return 1
  file_check "$1" "$BIG" "$KNOWN_BIG" || return 1
  local adopted served
  adopted=$(p2p_metric "$1" 'ipcs_peer_adoptions_total{outcome="ok"}') || { say "$1's metrics do not answer"; return 1; }
  served=$(p2p_metric "$1" 'ipcs_served_bytes_total{source="peers"}') || return 1
  say "$adopted blobs adopted from peers on $1, $served bytes served from them"
  [ "$adopted" -ge 1 ] && [ "$served" -ge 1 ] || { say "no blob came from peers on $1"; return 1; }
}

check_no_blob_requests() {
  local n; n=$(tail -c +"$((reg_off + 1))" "$reg_log" | grep -c '/blobs/sha256:' || true)
  say "registry log: $n blob requests after A's pull"
  [ "$n" = 0 ]
}

# Closed network: every TCP/UDP socket the daemons of the three nodes hold (Kubo, cluster,
# ipcs, containerd), listening or connected, is on loopback at both ends. Run after the
# pulls from peers, while bitswap and cluster connections are up.
check_loopback_only() {
  local n f pids=() pat bad count
  for n in a b c; do
    for f in "$work/$n/kubo/ipcs-kubo.pid" "$work/$n/cluster/ipcs-cluster.pid" \
             "$work/$n/containerd/containerd.pid"; do
      [ -f "$f" ] && pids+=("$(cat "$f")")
    done
    [ -z "${P2P_PID[$n]:-}" ] || pids+=("${P2P_PID[$n]}")
  done
  [ "${#pids[@]}" -eq 12 ] || { say "found ${#pids[@]} of 12 daemon pids"; return 1; }
  pat=$(printf 'pid=%s,|' "${pids[@]}"); pat="(${pat%|})"
  ss -tunapH >"$logs/ss.log"
  grep -E "$pat" "$logs/ss.log" >"$logs/ss-daemons.log" || true
  bad=$(awk '{ l = $5; p = $6
               if (l !~ /^(127\.|\[::1\]|\[::ffff:127\.)/ ||
                   (p !~ /^(127\.|\[::1\]|\[::ffff:127\.)/ && p !~ /^(\*|0\.0\.0\.0|\[::\]):\*$/)) print }' \
        "$logs/ss-daemons.log")
  [ -z "$bad" ] || { say "sockets off loopback:"; say "$bad"; return 1; }
  count=$(wc -l <"$logs/ss-daemons.log")
  # Kubo swarm and cluster connections between the nodes must be among them.
  [ "$(grep -c ESTAB "$logs/ss-daemons.log")" -gt 0 ] || { say "no established connection seen"; return 1; }
  say "$count sockets of 12 daemons (ss -tunap), all on loopback"
}

check_c_repulls_from_b() {
  p2p_node_stop a
  say "node A stopped"
  logged rm-c-big ctr c 300 images rm --sync "$BIG" || return 1
  local lease; lease=$(ctr c 60 leases create) && logged gc-c ctr c 300 leases rm --sync "$lease" || return 1
  [ -z "$(blobs c)" ] || { say "ipcs c still lists blobs"; return 1; }
  logged repo-gc-c ipfs c 300 repo gc || return 1
  local layer; layer=$(awk '$3 > 10000000 { print $2; exit }' "$logs/cids-c.txt")
  if ipfs c 30 --offline cat --progress=false "$layer" >/dev/null 2>&1; then
    say "C's Kubo still has $layer"; return 1
  fi
  say "C's Kubo no longer has $layer; pulling again with A and the registry down"
  pull c pull-c-big-2 "$BIG" || return 1
  file_check c "$BIG" "$KNOWN_BIG"
}

check_wrong_mapping_caught() {
  "$root/integration/images/registry.sh" start "$reg_dir" --port "${reg##*:}" >/dev/null 2>&1 || return 1
  # small's own layer (the last one; the first is shared with big).
  local mdigest layer size fake fake_cid good_cid
  mdigest=$(jq -r '.manifests[0].digest' "$IMAGES/small/index.json")
  layer=$(jq -r '.layers[-1].digest' "$IMAGES/small/blobs/sha256/${mdigest#sha256:}")
  size=$(jq -r '.layers[-1].size' "$IMAGES/small/blobs/sha256/${mdigest#sha256:}")
  fake="$work/fake.bin"; head -c "$size" /dev/urandom >"$fake"
  fake_cid=$(ipfs b 60 add -Q --cid-version 1 --raw-leaves --chunker size-262144 "$fake") || return 1
  logged fake-pin cctl b pin add --name "$layer" --metadata ipcs-kind=blob \
    --metadata "ipcs-digest=$layer" --metadata "ipcs-size=$size" "$fake_cid" || return 1
  say "cluster pin maps $layer to the wrong CID $fake_cid"
  sleep $((REFRESH * 3))
  pull c pull-c-small "$SMALL" || return 1
  file_check c "$SMALL" "$KNOWN_SMALL" || return 1
  local refused; refused=$(p2p_metric c 'ipcs_peer_adoptions_total{outcome="refused_digest"}') || return 1
  [ "$refused" -ge 1 ] || { say "c refused no mapping for its digest (ipcs_peer_adoptions_total)"; return 1; }
  good_cid=$(blobs c | awk -v d="$layer" '$1 == d { print $2 }')
  say "c maps $layer to $good_cid"
  [ -n "$good_cid" ] && [ "$good_cid" != "$fake_cid" ] || return 1
  local expect; expect=$(ipfs c 60 add --only-hash -Q --cid-version 1 --raw-leaves \
    --chunker size-262144 "$IMAGES/small/blobs/sha256/${layer#sha256:}")
  [ "$good_cid" = "$expect" ] || { say "expected $expect"; return 1; }
}

check_cluster_down() {
  "$root/scripts/cluster-node.sh" stop "$work/b/cluster" >/dev/null 2>&1
  "$root/scripts/cluster-node.sh" stop "$work/c/cluster" >/dev/null 2>&1
  local off; off=$(stat -c %s "$reg_log")
  pull b pull-b-multi "$MULTI" || return 1
  local n; n=$(tail -c +"$((off + 1))" "$reg_log" | grep -c '/blobs/sha256:' || true)
  say "cluster down: pull of multi on B made $n blob requests to the registry"
  [ "$n" -gt 0 ]
}

check "1a. A pulls big from the registry; its blobs and the tag reach the cluster pinset" check_a_pulls
blobs a >"$logs/cids-a.txt"
check "1b. the registry is stopped"                                 check_registry_stopped
check "1c. B pulls big (unpack, byte check) from peers"              check_pull_from_peers b
check "1d. C pulls big (unpack, byte check) from peers"              check_pull_from_peers c
blobs c >"$logs/cids-c.txt"
check "1e. the registry log shows no blob request from B or C"       check_no_blob_requests
check "1f. every socket of every daemon is on loopback (ss -tunap)"  check_loopback_only
check "2. A killed; C removes big, drops its blocks, pulls again from B" check_c_repulls_from_b
check "3. a cluster pin with a wrong CID is caught; C's pull falls back; no wrong byte" check_wrong_mapping_caught
check "4. cluster down: B pulls multi through the registry"          check_cluster_down
all_run=1
