# The swarm testbed of issue 13 (sourced, not run; needs lib.sh and p2p-nodes.sh): a
# registry in a network namespace of its own behind a veth pair whose egress is limited by
# `tc tbf`, and N nodes (Kubo + IPFS Cluster peer + ipcs + containerd 2.x, p2p-nodes.sh) on
# loopback in the root namespace. The registry's address is the only non-loopback address
# anything uses, and it lives in this testbed's own namespace.
#
#   10.213.X.1/24 ipcs-hX (root ns) <── veth ──> ipcs-rX 10.213.X.2/24 (ns ipcs-regX)
#                                                 tbf rate $TB_RATE on its egress
#                                                 docker-registry on 10.213.X.2:5000
#
# Registry egress is counted two ways: the veth's tx_bytes inside the namespace (every byte
# that left the registry, headers and retransmissions included) and the registry's access
# log (bytes of each blob response). X is derived from the caller's pid (10..209).
#
# The caller sets work, logs, IMAGES and the P2P_* variables p2p-nodes.sh wants (P2P_DIR
# $work, P2P_CONTAINERD 2) and may set TB_RATE (default 100mbit), TB_LATENCY (tbf queue,
# default 400ms), TB_STALL (in-flight stall seconds, default 5), TB_SHARE (the next node's
# share_repositories). Everything is bounded in time.
#
#   tb_up                      namespace, veth, tbf, registry -> TB_REG (host:port)
#   tb_push NAME...            pushes layouts from $IMAGES (push-images.sh; ingress, not limited)
#   tb_down                    stops the registry, deletes namespace and veth (idempotent)
#   tb_mark                    prints a mark: "VETH_TX_BYTES LOG_OFFSET"
#   tb_egress MARK             prints "VETH_BYTES BLOB_BYTES BLOB_RESPONSES" since MARK
#   tb_blob_egress MARK        one line per blob since MARK: "DIGEST BYTES RESPONSES"
#   tb_node_up I [J...]        node I in swarm mode (in-flight sharing on, members announced
#                              in and read from the cluster pinset), joining J...; returns
#                              once every swarm node up counts all of them as members
#                              (ipcs_swarm_members), as a herd starting right after needs
#   tb_builtin_up I            node bI: containerd 2.x with its built-in content store only
#   tb_nodes_down              stops every node and removes their directories
#   tb_pull NODE REF           ctr pull (+ unpack) on NODE, log in $logs/pull-NODE-*.log;
#                              prints the elapsed milliseconds, fails if the pull did
#   tb_inflight_leader NODES DIGEST   the node among NODES whose ipcs fetches DIGEST from
#                              the registry now (its metrics show the in-flight series
#                              ipcs_inflight_written_bytes{digest,source="registry"}), if any

TB_RATE="${TB_RATE:-100mbit}"
TB_STALL="${TB_STALL:-5}"
TB_LATENCY="${TB_LATENCY:-400ms}"
TB_X=$(( $$ % 200 + 10 ))
TB_NS="ipcs-reg$TB_X" TB_VH="ipcs-h$TB_X" TB_VR="ipcs-r$TB_X"
TB_HOST_IP="10.213.$TB_X.1" TB_REG_IP="10.213.$TB_X.2"
TB_REG="$TB_REG_IP:5000"
TB_PULL_TIMEOUT="${TB_PULL_TIMEOUT:-600}"

tb_up() {
  local d="$work/registry"
  mkdir -p "$d/storage"
  tb_down
  ip netns add "$TB_NS" || return 1
  ip link add "$TB_VH" type veth peer name "$TB_VR" || return 1
  ip link set "$TB_VR" netns "$TB_NS" || return 1
  ip addr add "$TB_HOST_IP/24" dev "$TB_VH" && ip link set "$TB_VH" up || return 1
  ip netns exec "$TB_NS" ip link set lo up || return 1
  ip netns exec "$TB_NS" ip addr add "$TB_REG_IP/24" dev "$TB_VR" || return 1
  ip netns exec "$TB_NS" ip link set "$TB_VR" up || return 1
  # burst must hold at least one tick's worth at the rate (100 Mbit/s at HZ 250: 50 kB).
  ip netns exec "$TB_NS" tc qdisc add dev "$TB_VR" root tbf rate "$TB_RATE" burst 64kb latency "$TB_LATENCY" || return 1
  cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $d/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $TB_REG
  secret: ipcs-swarm-testbed-not-a-secret
EOF
  ip netns exec "$TB_NS" setsid /usr/bin/docker-registry serve "$d/config.yml" \
    </dev/null >>"$d/registry.log" 2>&1 8>&- 9>&- &
  echo $! >"$d/registry.pid"
  local _
  for _ in $(seq 1 100); do
    curl -fsS -m 2 -o /dev/null "http://$TB_REG/v2/" 2>/dev/null && return 0
    sleep 0.1
  done
  say "registry in $TB_NS did not answer"; return 1
}

tb_push() {
  timeout 900 "$root/integration/images/push-images.sh" "$IMAGES" "$TB_REG" "$@" >>"$logs/push.log" 2>&1
}

tb_down() {
  local pidf="$work/registry/registry.pid"
  if [ -f "$pidf" ]; then
    stop_pid "$(cat "$pidf")" TERM 5
    rm -f "$pidf"
  fi
  ip link del "$TB_VH" 2>/dev/null || true
  ip netns del "$TB_NS" 2>/dev/null || true
}

tb_tx() { ip netns exec "$TB_NS" cat "/sys/class/net/$TB_VR/statistics/tx_bytes"; }
tb_mark() { echo "$(tb_tx) $(stat -c %s "$work/registry/registry.log")"; }

# Access-log lines (combined format) of blob GETs after the mark: "DIGEST BYTES".
tb_blob_lines() {
  local off=${1#* }
  tail -c +$((off + 1)) "$work/registry/registry.log" |
    sed -n 's|.*"GET /v2/[^ ]*/blobs/\(sha256:[0-9a-f]*\) HTTP/[0-9.]*" \(20[06]\) \([0-9]*\) .*|\1 \3|p'
}
tb_egress() {
  local tx0=${1% *}
  echo "$(( $(tb_tx) - tx0 )) $(tb_blob_lines "$1" | awk '{ s += $2; n++ } END { print s + 0, n + 0 }')"
}
tb_blob_egress() {
  tb_blob_lines "$1" | awk '{ b[$1] += $2; n[$1]++ } END { for (d in b) print d, b[d], n[d] }'
}

# A shared mirror secret: nodes of one swarm fetch from each other's mirrors with it.
tb_secret() {
  [ -f "$work/swarm-secret" ] || { od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$work/swarm-secret"; chmod 600 "$work/swarm-secret"; }
  cat "$work/swarm-secret"
}

TB_SWARM=()
tb_node_up() {
  local n=$1 d="$work/$1"
  shift
  mkdir -p "$d/data"; chmod 700 "$d/data"
  (umask 077; tb_secret >"$d/data/mirror-secret")
  IPCS_SWARM=1 IPCS_REGISTRY_PLAIN_HTTP="$TB_REG" \
  IPCS_INFLIGHT_STALL_SECS="$TB_STALL" IPCS_SHARE_REPOSITORIES="${TB_SHARE:-}" \
    p2p_node_start "$n" "$TB_REG" "$@" || return 1
  TB_SWARM+=("$n")
  tb_wait_members
}

# Until every swarm node's ipcs counts ${#TB_SWARM[@]} members (30 s).
tb_wait_members() {
  local want=${#TB_SWARM[@]} m have _
  for _ in $(seq 1 300); do
    have=""
    for m in "${TB_SWARM[@]}"; do
      [ "$(p2p_metric "$m" ipcs_swarm_members 2>/dev/null)" = "$want" ] || have="$have $m"
    done
    [ -n "$have" ] || return 0
    sleep 0.1
  done
  say "swarm nodes not seeing $want members:$have"
  return 1
}

tb_builtin_up() { p2p_containerd_start "b$1" "$TB_REG" --builtin-content; }

tb_nodes_down() {
  local n
  p2p_stop_all
  for n in "${P2P_NODES[@]}"; do rm -rf "${work:?}/$n"; done
  P2P_NODES=() TB_SWARM=()
}

tb_pull() {
  local n=$1 ref=$2 t0 rc=0
  t0=$(now_ms)
  timeout -k 10 "$TB_PULL_TIMEOUT" "$work/$n/containerd/ctr" -n "$P2P_NS" images pull \
    --hosts-dir "$work/$n/hosts" --platform linux/amd64 "$ref" >"$logs/pull-$n-$t0.log" 2>&1 || rc=$?
  echo $(( $(now_ms) - t0 ))
  return $rc
}

tb_inflight_leader() {
  local series="ipcs_inflight_written_bytes{digest=\"$2\",source=\"registry\"}" n
  for n in $1; do
    scrape_metrics "${P2P_METRICS[$n]}" 2>/dev/null | awk -v s="$series" '$1 == s { f = 1 } END { exit !f }' \
      && { echo "$n"; return 0; }
  done
  return 1
}
