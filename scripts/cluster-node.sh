#!/usr/bin/env bash
# Starts or stops one IPFS Cluster peer (CRDT consensus) configured for this closed
# network (see shared RUNNING_IPFS_HERE.md): loopback only, no mDNS, only the given
# peers, no tracing/metrics exporters, no relay service, no IPFS proxy / pinning-service
# APIs. Needs the ipcs-patched build from install-ipfs-cluster.sh (no UPnP/NAT-PMP).
# The REST API is a unix socket only (anyone reaching it can pin and unpin cluster-wide;
# its directory's permissions decide who can), and the peer reaches Kubo through Kubo's
# API socket.
#
#   cluster-node.sh start DIR --secret HEX --kubo-api unix:///PATH --listen PORT
#                             [--rest-socket PATH] [--peers MULTIADDR,...] [--replication N]
#                             [--rebroadcast DURATION]
#       inits DIR (IPFS_CLUSTER_PATH, made 0700) if needed, (re)writes service.json from
#       the flags on every start, starts the daemon (log DIR/cluster.log, pid
#       DIR/ipcs-cluster.pid), waits until the REST API answers, then prints two lines:
#         unix://REST_SOCKET          (default DIR/api.sock)
#         /ip4/127.0.0.1/tcp/PORT/p2p/PEERID
#       --peers: cluster multiaddrs (/ip4/127.0.0.1/tcp/P/p2p/ID) to bootstrap to; they
#       become peer_addresses. Give a new peer ALL peers already running, not just the
#       first: on loopback the cluster's DHT cannot find peer addresses (its LAN DHT drops
#       127.0.0.0/8 addresses), so peers that were never told about each other stay
#       unconnected and global `status` from one to the other fails with
#       "routing: not found" (pins still replicate through the CRDT pubsub mesh). --replication N sets replication_factor_min/max
#       (default -1 = pin everywhere). --rebroadcast DURATION (Go syntax, e.g. 2s) sets
#       consensus.crdt.rebroadcast_interval: a peer that joins after the last pin change only
#       learns the pinset when a peer re-announces its heads, by default once a minute at best.
#   cluster-node.sh stop DIR
set -euo pipefail
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
SVC="${IPFS_CLUSTER_SERVICE_BIN:-$TOOLS/bin/ipfs-cluster-service}"
CTL="${IPFS_CLUSTER_CTL_BIN:-$TOOLS/bin/ipfs-cluster-ctl}"
cmd="${1:?usage: cluster-node.sh start|stop DIR ...}"; dir="${2:?DIR missing}"; shift 2
secret=""; kubo=""; listen=""; rest=""; peers=""; repl=-1; rebroadcast=""
while [ $# -gt 0 ]; do
  case "$1" in
    --secret) secret="$2"; shift 2;;
    --kubo-api) kubo="$2"; shift 2;;
    --listen) listen="$2"; shift 2;;
    --rest-socket) rest="$2"; shift 2;;
    --peers) peers="$2"; shift 2;;
    --replication) repl="$2"; shift 2;;
    --rebroadcast) rebroadcast="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
export IPFS_CLUSTER_PATH="$dir"
[ -n "$rest" ] || rest="$dir/api.sock"
case "$rest" in /*) ;; *) rest="$PWD/$rest";; esac
pidfile="$dir/ipcs-cluster.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

stop() {
  if [ -f "$pidfile" ]; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

configure() {
  local kubo_ma peers_json
  if [[ "$kubo" =~ ^unix://(/.+)$ ]]; then
    kubo_ma="/unix${BASH_REMATCH[1]}"
  else
    kubo_ma="$kubo"
  fi
  peers_json=$(jq -cn --arg p "$peers" '$p | split(",") | map(select(length > 0))')
  jq --arg secret "$secret" --arg name "$(basename "$dir")" \
     --arg listen "/ip4/127.0.0.1/tcp/$listen" --arg rest "/unix$rest" \
     --arg kubo "$kubo_ma" --argjson peers "$peers_json" --argjson repl "$repl" \
     --arg rebroadcast "$rebroadcast" '
    .cluster.secret = $secret
    | .cluster.peername = $name
    | .cluster.listen_multiaddress = [$listen]          # TCP on loopback only, no QUIC
    | .cluster.announce_multiaddress = []
    | .cluster.enable_relay_hop = false
    | .cluster.mdns_interval = "0s"
    | .cluster.peer_addresses = $peers
    | .cluster.replication_factor_min = $repl
    | .cluster.replication_factor_max = $repl
    | .consensus.crdt.trusted_peers = ["*"]             # private via the shared secret
    | if $rebroadcast == "" then del(.consensus.crdt.rebroadcast_interval)
      else .consensus.crdt.rebroadcast_interval = $rebroadcast end
    | .api.restapi.http_listen_multiaddress = $rest       # a unix socket, no basic auth:
    | del(.api.restapi.basic_auth_credentials)          # its directory guards it
    | del(.api.ipfsproxy) | del(.api.pinsvcapi)         # absent section = API disabled
    | .ipfs_connector.ipfshttp.node_multiaddress = $kubo
    | .observations.metrics.enable_stats = false
    | .observations.tracing.enable_tracing = false
    | .observations.tracing.jaeger_agent_endpoint = "/ip4/127.0.0.1/udp/6831"
  ' "$dir/service.json" >"$dir/service.json.tmp"
  mv "$dir/service.json.tmp" "$dir/service.json"
}

peer_id() { jq -r .id "$dir/identity.json"; }

case "$cmd" in
  start)
    [[ "$secret" =~ ^[0-9a-fA-F]{64}$ ]] || { echo "--secret must be 32 bytes hex" >&2; exit 2; }
    [ -n "$kubo" ] && [ -n "$listen" ] \
      || { echo "--kubo-api and --listen are required" >&2; exit 2; }
    [ -x "$SVC" ] || { echo "$SVC missing: run scripts/install-ipfs-cluster.sh" >&2; exit 1; }
    running && stop
    if [ ! -f "$dir/service.json" ]; then
      mkdir -p "$dir"
      "$SVC" init --consensus crdt >"$dir/init.log" 2>&1
    fi
    chmod 700 "$dir"
    configure
    if [ -n "$(ss -Htln "sport = :$listen")" ]; then
      echo "port $listen is already in use (a stale cluster daemon?)" >&2; exit 1
    fi
    # A socket left by a killed daemon would make the listen fail.
    [ -S "$rest" ] && rm -f "$rest"
    bootstrap=()
    [ -n "$peers" ] && bootstrap=(--bootstrap "$peers")
    # The daemon outlives this script; its log stays in DIR for post-mortems.
    nohup "$SVC" daemon "${bootstrap[@]}" >>"$dir/cluster.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 600); do
      if "$CTL" --host "/unix$rest" --timeout 2 id >/dev/null 2>&1 && running; then
        echo "unix://$rest"
        echo "/ip4/127.0.0.1/tcp/$listen/p2p/$(peer_id)"
        exit 0
      fi
      running || { tail -n 30 "$dir/cluster.log" >&2; exit 1; }
      sleep 0.1
    done
    echo "cluster peer in $dir did not answer within 60s" >&2; tail -n 30 "$dir/cluster.log" >&2
    stop; exit 1;;
  stop) stop;;
  *) echo "unknown command $cmd" >&2; exit 2;;
esac
