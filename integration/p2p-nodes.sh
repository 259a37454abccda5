# Peer-to-peer nodes for integration/p2p.sh and integration/bench.sh (sourced, not run;
# needs lib.sh). Node N lives in $P2P_DIR/N:
#   kubo/        Kubo, online, in a private network (swarm key), peered only with the nodes
#                named to p2p_kubo_peer (no DHT: Routing.Type none)
#   cluster/     IPFS Cluster peer (CRDT), shared secret, replication factor 1
#   data/ ipcs.sock ipcs.log
#                ipcs with the cluster API and its registry mirror on 127.0.0.1:${P2P_MIRROR[N]}
#                (the mirror wants the header in data/mirror-secret; hosts.toml sends it)
#   run/         the API sockets, as in a deployment's /run: run/kubo/api.sock and
#                run/ipfs-cluster/api.sock, each directory 0750 (plugin-config units)
#   containerd/  containerd with ipcs as its content store and, on 2.x, differ (or its
#                built-in store)
#   hosts/       containerd's --hosts-dir: ipcs's mirror first, then the registry
#
# Before calling anything, the caller sets P2P_DIR, P2P_LOG (start-up errors are appended
# there) and P2P_NS (containerd namespace), then runs p2p_network_init. Optional:
# P2P_IPCS, P2P_IPFS, P2P_CLUSTER_CTL (binaries), P2P_CONTAINERD (containerd 1.6 or 2, 1.6),
# P2P_DIFFER (with containerd 2 and ipcs as content store: ipcs (default), ipcs applies the
# layers as README recommends for 2.x, or walking, containerd's applier reading them
# through the content proxy),
# P2P_REFRESH (cluster refresh seconds, 2),
# P2P_REBROADCAST (cluster CRDT rebroadcast interval, e.g. 2s; default the cluster's 1m: a
# peer joining after the last pin change waits that long for the pinset).
# Daemons start with fds 8 and 9 closed: callers keep their own stdout/stderr there, and a
# daemon holding them would keep the caller's pipe open after it exits.
#
#   p2p_network_init                 swarm key and cluster secret shared by every node
#   p2p_kubo_start N                 -> P2P_API[N] (unix://…), P2P_MADDR[N], P2P_SWARM[N]
#   p2p_kubo_peer N M...             N's Kubo peers with (and dials) the Kubos of M...
#   p2p_cluster_start N [M...]       cluster peer bootstrapping to M... -> P2P_REST[N]
#                                    (unix://…), P2P_CMA[N]
#   p2p_cluster_wait_peers N COUNT   until N's cluster sees COUNT peers (60 s)
#   p2p_ipcs_start N [--alone]       -> P2P_PID[N], P2P_MIRROR[N], P2P_METRICS[N] (its
#                                    metrics endpoint: IPCS_METRICS_LISTEN if set, else
#                                    unix://N/metrics.sock); --alone: no cluster, no
#                                    mirror (a node that neither asks peers nor publishes)
#   p2p_containerd_start N REGISTRY [--no-mirror | --builtin-content]
#                                    containerd plus hosts.toml for REGISTRY (host:port)
#   p2p_node_start N REGISTRY [M...] all of the above for one node joining M...
#   p2p_node_stop N / p2p_stop_all   stop containerd, ipcs, cluster, Kubo (idempotent)
#   p2p_wait_published N VIEW        until VIEW's cluster pinset holds every blob N's ipcs
#                                    has, then two mirror refreshes
#   p2p_wait_synced FROM TO          until TO's pinset holds every pin of FROM's, ditto
#   p2p_ctr N TIMEOUT ARGS / p2p_ipfs N TIMEOUT ARGS / p2p_cctl N ARGS / p2p_blobs N
#   p2p_metric N SERIES              SERIES's value in N's ipcs metrics (lib.sh ipcs_metric)

P2P_IPCS="${P2P_IPCS:-$IPCS}"
P2P_IPFS="${P2P_IPFS:-$IPFS}"
P2P_CLUSTER_CTL="${P2P_CLUSTER_CTL:-$CLUSTER_CTL}"
P2P_REFRESH="${P2P_REFRESH:-2}"
P2P_CONTAINERD="${P2P_CONTAINERD:-1.6}"
P2P_DIFFER="${P2P_DIFFER:-ipcs}"
P2P_REBROADCAST="${P2P_REBROADCAST:-}"
declare -A P2P_API=() P2P_MADDR=() P2P_SWARM=() P2P_REST=() P2P_CMA=() P2P_PID=() P2P_MIRROR=() P2P_METRICS=()
P2P_NODES=()

p2p_ctr()   { local n=$1 t=$2; shift 2; timeout -k 10 "$t" "$P2P_DIR/$n/containerd/ctr" -n "$P2P_NS" "$@"; }
p2p_ipfs()  { local n=$1 t=$2; shift 2; timeout -k 5 "$t" "$P2P_IPFS" --api "${P2P_MADDR[$n]}" "$@"; }
p2p_cctl()  { local n=$1; shift; timeout -k 5 60 "$P2P_CLUSTER_CTL" --host "/unix${P2P_REST[$n]#unix://}" "$@"; }
p2p_blobs() { timeout -k 5 60 "$P2P_IPCS" blobs --settle 120 --socket "$P2P_DIR/$1/ipcs.sock"; }
p2p_metric() { ipcs_metric "${P2P_METRICS[$1]}" "$2"; }

p2p_network_init() {
  mkdir -p "$P2P_DIR"
  P2P_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  P2P_SWARM_KEY="$P2P_DIR/swarm.key"
  printf '/key/swarm/psk/1.0.0/\n/base16/\n%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$P2P_SWARM_KEY"
  chmod 600 "$P2P_SWARM_KEY"
}

# p2p_rundir N NAME: N's runtime directory for NAME's socket, made like systemd's
# RuntimeDirectory= with RuntimeDirectoryMode=0750 (root:root here), under a run/ that
# any account may traverse, like /run.
p2p_rundir() {
  local d="$P2P_DIR/$1/run"
  mkdir -p "$d/$2"; chmod 0755 "$d"; chmod 0750 "$d/$2"
  echo "$d/$2"
}

p2p_track() {
  local m
  for m in "${P2P_NODES[@]}"; do [ "$m" != "$1" ] || return 0; done
  P2P_NODES+=("$1")
}

p2p_kubo_start() {
  local n=$1 dir="$P2P_DIR/$1/kubo" api id port
  p2p_track "$n"
  api=$(timeout 120 "$root/scripts/kubo-node.sh" start "$dir" \
          --api-socket "$(p2p_rundir "$n" kubo)/api.sock" \
          --swarm "$(free_port)" --swarm-key "$P2P_SWARM_KEY" 2>>"$P2P_LOG" 8>&- 9>&-) || return 1
  P2P_API[$n]=$api P2P_MADDR[$n]=$(kubo_maddr "$api")
  id=$(p2p_ipfs "$n" 30 id -f '<id>') || return 1
  port=$(IPFS_PATH="$dir" "$P2P_IPFS" config Addresses.Swarm | jq -r '.[0]' | sed 's|.*/tcp/||')
  P2P_SWARM[$n]="/ip4/127.0.0.1/tcp/$port/p2p/$id"
}

p2p_kubo_peer() {
  local n=$1 m addrs=()
  shift
  for m in "$@"; do addrs+=("${P2P_SWARM[$m]}"); done
  timeout 60 "$root/scripts/kubo-peer.sh" "$P2P_DIR/$n/kubo" "${addrs[@]}" >>"$P2P_LOG" 2>&1
}

# Give a new peer every running one to bootstrap to: on loopback the cluster DHT cannot
# look up peer addresses, so a peer known only through another stays unreachable for status.
p2p_cluster_start() {
  local n=$1 m peers="" out
  shift
  p2p_track "$n"
  for m in "$@"; do peers="${peers:+$peers,}${P2P_CMA[$m]}"; done
  out=$(timeout 120 "$root/scripts/cluster-node.sh" start "$P2P_DIR/$n/cluster" \
          --secret "$P2P_SECRET" --kubo-api "${P2P_API[$n]}" --listen "$(free_port)" \
          --rest-socket "$(p2p_rundir "$n" ipfs-cluster)/api.sock" \
          ${peers:+--peers "$peers"} ${P2P_REBROADCAST:+--rebroadcast "$P2P_REBROADCAST"} \
          --replication 1 2>>"$P2P_LOG" 8>&- 9>&-) || return 1
  P2P_REST[$n]=$(sed -n 1p <<<"$out") P2P_CMA[$n]=$(sed -n 2p <<<"$out")
  [ -n "${P2P_CMA[$n]}" ]
}

p2p_cluster_wait_peers() {
  local _
  for _ in $(seq 1 60); do
    [ "$(p2p_cctl "$1" peers ls 2>/dev/null | grep -c '| Sees')" -ge "$2" ] && return 0
    sleep 1
  done
  return 1
}

p2p_ipcs_start() {
  local n=$1 d="$P2P_DIR/$1" peer_args=() _
  p2p_track "$n"
  P2P_MIRROR[$n]=""
  # Tests read what happened (adoptions, in-flight leaders) from the metrics, not the log.
  P2P_METRICS[$n]=${IPCS_METRICS_LISTEN:-unix://$d/metrics.sock}
  [ -n "${IPCS_METRICS_LISTEN:-}" ] || peer_args=(--metrics-listen "${P2P_METRICS[$n]}")
  if [ "${2:-}" != --alone ]; then
    P2P_MIRROR[$n]=$(free_port)
    peer_args+=(--cluster-api "${P2P_REST[$n]}" --cluster-replication 1
               --cluster-refresh-secs "$P2P_REFRESH" --peer-fetch-deadline-secs 60
               --mirror-listen "127.0.0.1:${P2P_MIRROR[$n]}")
  fi
  start_ipcs --bin "$P2P_IPCS" --socket "$d/ipcs.sock" --data "$d/data" --log "$d/ipcs.log" \
    --kubo "${P2P_API[$n]}" -- "${peer_args[@]}" 2>>"$P2P_LOG" || return 1
  P2P_PID[$n]=$IPCS_STARTED_PID
}

p2p_containerd_start() {
  local n=$1 reg=$2 mode=${3:-} d="$P2P_DIR/$1" content=()
  p2p_track "$n"
  if [ "$mode" = --builtin-content ]; then content=(--builtin-content)
  else
    content=(--content-socket "$d/ipcs.sock")
    # containerd 1.6 has no diff proxy plugins: its walking differ it is.
    [ "$P2P_CONTAINERD" = 1.6 ] || content+=(--differ "$P2P_DIFFER")
  fi
  timeout 120 "$root/integration/containerd-node.sh" start "$d/containerd" --version "$P2P_CONTAINERD" \
    "${content[@]}" >/dev/null 2>>"$P2P_LOG" 8>&- 9>&- || return 1
  mkdir -p "$d/hosts/$reg"
  echo "server = \"http://$reg\"" >"$d/hosts/$reg/hosts.toml"
  [ -z "$mode" ] || return 0
  # containerd asks ipcs's mirror first, then the registry itself. The mirror answers only
  # requests carrying its secret header; hosts.toml holds the secret, so it is 0600 too.
  chmod 600 "$d/hosts/$reg/hosts.toml"
  cat >>"$d/hosts/$reg/hosts.toml" <<EOF

[host."http://127.0.0.1:${P2P_MIRROR[$n]}"]
  capabilities = ["pull", "resolve"]
  [host."http://127.0.0.1:${P2P_MIRROR[$n]}".header]
    x-ipcs-mirror-secret = "$(cat "$d/data/mirror-secret")"
EOF
}

p2p_node_start() {
  local n=$1 reg=$2
  shift 2
  p2p_kubo_start "$n" || return 1
  if [ $# -gt 0 ]; then p2p_kubo_peer "$n" "$@" || return 1; fi
  p2p_cluster_start "$n" "$@" || return 1
  p2p_ipcs_start "$n" || return 1
  p2p_containerd_start "$n" "$reg"
}

p2p_node_stop() {
  local n=$1 d="$P2P_DIR/$1" pid _
  timeout 120 "$root/integration/containerd-node.sh" stop "$d/containerd" >/dev/null 2>&1 || true
  pid=${P2P_PID[$n]:-}
  if [ -n "$pid" ]; then
    stop_pid "$pid" TERM 10
    P2P_PID[$n]=""
  fi
  timeout 60 "$root/scripts/cluster-node.sh" stop "$d/cluster" >/dev/null 2>&1 || true
  timeout 60 "$root/scripts/kubo-node.sh" stop "$d/kubo" >/dev/null 2>&1 || true
}

p2p_stop_all() {
  local n
  for n in "${P2P_NODES[@]}"; do p2p_node_stop "$n"; done
}

# p2p_wait_pins VIEW WANT: until VIEW's cluster pinset holds every CID in WANT (one per
# line), then two mirror refreshes (the mirror reads the pinset every P2P_REFRESH seconds).
p2p_wait_pins() {
  local view=$1 want=$2 have _
  for _ in $(seq 1 60); do
    have=$(p2p_cctl "$view" pin ls 2>/dev/null | awk '{ print $1 }' | sort -u)
    if [ -z "$(comm -23 <(echo "$want") <(echo "$have"))" ]; then
      sleep $((P2P_REFRESH * 2 + 1)); return 0
    fi
    sleep 1
  done
  say "pinset of $view lacks: $(comm -23 <(echo "$want") <(echo "$have") | tr '\n' ' ')"
  return 1
}

p2p_wait_published() {
  p2p_wait_pins "$2" "$(p2p_blobs "$1" | awk '{ print $2 }' | sort -u)"
}

# Tag records are pins too: a node that must resolve a tag with the registry down needs them.
p2p_wait_synced() {
  local want
  want=$(p2p_cctl "$1" pin ls 2>/dev/null | awk '{ print $1 }' | sort -u)
  [ -n "$want" ] || return 1
  p2p_wait_pins "$2" "$want"
}
