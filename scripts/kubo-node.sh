#!/usr/bin/env bash
# Starts or stops one Kubo node configured for this closed network (see shared
# RUNNING_IPFS_HERE.md): loopback only, no bootstrap, no DHT/delegated routing, no
# mDNS, no AutoTLS/AutoConf, no telemetry.
#
#   kubo-node.sh start DIR [--offline] [--api PORT] [--swarm PORT] [--swarm-key FILE]
#       inits DIR as IPFS_PATH if needed, starts the daemon, waits for its API and
#       prints the API URL (http://127.0.0.1:PORT). Port 0 (default) picks a free one.
#       --swarm-key makes the node part of a private network (libp2p PSK): it only talks
#       to nodes holding the same key, and refuses to start without it (LIBP2P_FORCE_PNET).
#   kubo-node.sh stop DIR
#   kubo-node.sh api DIR        prints the API URL of a running node
set -euo pipefail
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
IPFS="${IPFS_BIN:-$TOOLS/bin/ipfs}"
cmd="${1:?usage: kubo-node.sh start|stop|api DIR}"; dir="${2:?DIR missing}"; shift 2
offline=""; api_port=0; swarm_port=0; swarm_key=
while [ $# -gt 0 ]; do
  case "$1" in
    --offline) offline="--offline"; shift;;
    --api) api_port="$2"; shift 2;;
    --swarm) swarm_port="$2"; shift 2;;
    --swarm-key) swarm_key="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
export IPFS_PATH="$dir" IPFS_TELEMETRY=off

api_url() {
  # Kubo writes the multiaddr it actually bound (port 0 resolved) to $IPFS_PATH/api.
  local ma; ma=$(cat "$dir/api" 2>/dev/null) || return 1
  [[ "$ma" =~ ^/ip4/([0-9.]+)/tcp/([0-9]+) ]] || return 1
  echo "http://${BASH_REMATCH[1]}:${BASH_REMATCH[2]}"
}

configure() {
  local c="$IPFS config --json"
  $c Addresses.API "\"/ip4/127.0.0.1/tcp/$api_port\""
  $c Addresses.Gateway '[]'
  $c Addresses.Swarm "[\"/ip4/127.0.0.1/tcp/$swarm_port\"]"
  $c Addresses.Announce '[]'
  $c Bootstrap '[]'
  $c Discovery.MDNS.Enabled false
  $c Routing.Type '"none"'
  $c Routing.DelegatedRouters '[]' 2>/dev/null || true
  $c Ipns.DelegatedPublishers '[]' 2>/dev/null || true
  $c DNS.Resolvers '{}'
  $c AutoTLS.Enabled false 2>/dev/null || true
  $c AutoConf.Enabled false 2>/dev/null || true
  $c Plugins.Plugins.telemetry.Disabled true 2>/dev/null || true
  $c Swarm.RelayClient.Enabled false
  $c Swarm.RelayService.Enabled false
  $c Swarm.Transports.Network.Websocket false 2>/dev/null || true
  $c Swarm.Transports.Network.WebTransport false 2>/dev/null || true
  $c Swarm.Transports.Network.WebRTCDirect false 2>/dev/null || true
  $c Swarm.Transports.Network.QUIC false 2>/dev/null || true
  $c Swarm.DisableNatPortMap true
  # Kubo >= 0.39 refuses to start with the old Provider/Reprovider keys set: Provide.*.
  $c Provide.Enabled false
  $c Provide.DHT.Interval '"0"'
  $c Experimental.FilestoreEnabled true
}

case "$cmd" in
  start)
    if [ -f "$dir/ipcs-kubo.pid" ] && kill -0 "$(cat "$dir/ipcs-kubo.pid")" 2>/dev/null && api_url >/dev/null; then
      api_url; exit 0
    fi
    if [ ! -f "$dir/config" ]; then
      mkdir -p "$dir"
      "$IPFS" init --profile test --empty-repo >"$dir/init.log" 2>&1
      configure >>"$dir/init.log" 2>&1
    fi
    rm -f "$dir/api"
    if [ -n "$swarm_key" ]; then
      install -m 0600 "$swarm_key" "$dir/swarm.key"
      export LIBP2P_FORCE_PNET=1
    fi
    # The daemon outlives this script; its log stays in DIR for post-mortems.
    nohup "$IPFS" daemon $offline --migrate=false >"$dir/daemon.log" 2>&1 &
    echo $! >"$dir/ipcs-kubo.pid"
    for _ in $(seq 1 300); do
      if url=$(api_url) && curl -fsS -m 2 -X POST "$url/api/v0/id" >/dev/null 2>&1; then
        echo "$url"; exit 0
      fi
      kill -0 "$(cat "$dir/ipcs-kubo.pid")" 2>/dev/null || { cat "$dir/daemon.log" >&2; exit 1; }
      sleep 0.1
    done
    echo "kubo in $dir did not answer within 30s" >&2; cat "$dir/daemon.log" >&2; exit 1;;
  stop)
    if [ -f "$dir/ipcs-kubo.pid" ]; then
      pid=$(cat "$dir/ipcs-kubo.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/ipcs-kubo.pid"
    fi;;
  api) api_url;;
  *) echo "unknown command $cmd" >&2; exit 2;;
esac
