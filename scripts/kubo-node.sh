#!/usr/bin/env bash
# Starts or stops one Kubo node configured for this closed network (see shared
# RUNNING_IPFS_HERE.md): loopback only, no bootstrap, no DHT/delegated routing, no
# mDNS, no AutoTLS/AutoConf, no telemetry, no gateway. The RPC API is a unix socket
# only: whoever can open it controls the node (pins, config, keys), so access is decided
# by file permissions; on loopback TCP every local account could (README, Security).
#
#   kubo-node.sh start DIR [--offline] [--api-socket PATH] [--swarm PORT] [--swarm-key FILE]
#       inits DIR as IPFS_PATH if needed, starts the daemon, waits for its API and
#       prints the API address (unix://PATH). PATH defaults to DIR/api.sock; DIR is made
#       0700. The socket's directory is what keeps other accounts out: keep it root-only
#       (or root:ipcs 0750, like /run/kubo in plugin-config/kubo.service).
#       --swarm-key makes the node part of a private network (libp2p PSK): it only talks
#       to nodes holding the same key, and refuses to start without it (LIBP2P_FORCE_PNET).
#   kubo-node.sh stop DIR
#   kubo-node.sh api DIR        prints the API address of a running node
# Scripts call the API through integration/lib.sh's kubo_rpc / kubo_maddr.
set -euo pipefail
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
IPFS="${IPFS_BIN:-$TOOLS/bin/ipfs}"
cmd="${1:?usage: kubo-node.sh start|stop|api DIR}"; dir="${2:?DIR missing}"; shift 2
offline=""; api_sock=""; swarm_port=0; swarm_key=
while [ $# -gt 0 ]; do
  case "$1" in
    --offline) offline="--offline"; shift;;
    --api-socket) api_sock="$2"; shift 2;;
    --swarm) swarm_port="$2"; shift 2;;
    --swarm-key) swarm_key="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
export IPFS_PATH="$dir" IPFS_TELEMETRY=off
[ -n "$api_sock" ] || api_sock="$dir/api.sock"
case "$api_sock" in /*) ;; *) api_sock="$PWD/$api_sock";; esac

api_url() {
  # Kubo writes the multiaddr it listens on to $IPFS_PATH/api.
  local ma; ma=$(cat "$dir/api" 2>/dev/null) || return 1
  [[ "$ma" =~ ^/unix(/.+)$ ]] || return 1
  echo "unix://${BASH_REMATCH[1]}"
}

# Every key below exists in the pinned Kubo (scripts/versions.sh): `ipfs config` refuses an
# unknown key, and so does this script (set -e), instead of silently leaving a default on.
# Checked against Kubo's changelogs 0.37-0.42: AutoConf (0.37) would fill "auto"
# placeholders from a remote manifest; telemetry (0.37) reports home; Provide.* replaced
# Provider.*/Reprovider.* (0.38, which 0.42 refuses to start with); the sweeping DHT
# provider (0.39) and fast-provide of added roots (0.39, `pin add` too since 0.41);
# HTTPRetrieval (0.35) fetches blocks over HTTPS from routing results.
configure() {
  local c="$IPFS config --json"
  local minor; minor=$("$IPFS" version --number | cut -d. -f2)
  $c Addresses.API "\"/unix$api_sock\""
  $c Addresses.Gateway '[]'
  $c Addresses.Swarm "[\"/ip4/127.0.0.1/tcp/$swarm_port\"]"
  $c Addresses.Announce '[]'
  $c Addresses.AppendAnnounce '[]'
  $c Bootstrap '[]'
  $c Discovery.MDNS.Enabled false
  $c Routing.Type '"none"'
  $c Routing.DelegatedRouters '[]'
  $c Ipns.DelegatedPublishers '[]'
  $c DNS.Resolvers '{}'
  $c AutoTLS.Enabled false
  $c AutoTLS.AutoWSS false
  $c AutoNAT.ServiceMode '"disabled"'
  $c HTTPRetrieval.Enabled false
  # Plugins.Plugins is a free-form map: this cannot fail on a typo, so the daemon also
  # runs with IPFS_TELEMETRY=off (which the plugin reads first).
  $c Plugins.Plugins.telemetry '{"Disabled": true, "Config": {"Mode": "off"}}'
  $c Swarm.RelayClient.Enabled false
  $c Swarm.RelayService.Enabled false
  $c Swarm.EnableHolePunching false
  $c Swarm.Transports.Network.Websocket false
  $c Swarm.Transports.Network.WebTransport false
  $c Swarm.Transports.Network.WebRTCDirect false
  $c Swarm.Transports.Network.QUIC false
  $c Swarm.DisableNatPortMap true
  $c Experimental.FilestoreEnabled true
  if [ "$minor" -ge 38 ]; then
    $c AutoConf.Enabled false
    $c Provide.Enabled false
    $c Provide.DHT.SweepEnabled false
    $c Provide.DHT.Interval '"0"'
    $c Import.FastProvideRoot false
  else # KUBO_VERSION older than 0.38 (pre-Provide config); ipcs itself needs >= 0.37
    [ "$minor" -lt 37 ] || $c AutoConf.Enabled false
    $c Provider.Enabled false
    $c Reprovider.Interval '"0"'
  fi
  [ "$minor" -lt 41 ] || $c Import.FastProvideDAG false
  # No "auto" placeholder may be left for AutoConf (or a later default) to resolve.
  if "$IPFS" config show | grep -q '"auto"'; then
    echo "kubo-node: config still has an \"auto\" value:" >&2
    "$IPFS" config show | grep -n '"auto"' >&2
    return 1
  fi
}

case "$cmd" in
  start)
    if [ -f "$dir/ipcs-kubo.pid" ] && kill -0 "$(cat "$dir/ipcs-kubo.pid")" 2>/dev/null && api_url >/dev/null; then
      api_url; exit 0
    fi
    if [ ! -f "$dir/config" ]; then
      mkdir -p "$dir"
      "$IPFS" init --profile test --empty-repo >"$dir/init.log" 2>&1
      if ! configure >>"$dir/init.log" 2>&1; then
        cat "$dir/init.log" >&2; rm -f "$dir/config"; exit 1
      fi
    fi
    chmod 700 "$dir"
    # The socket path is in the config: a --api-socket on a later start changes it.
    if [ "$(jq -r .Addresses.API "$dir/config")" != "/unix$api_sock" ]; then
      $IPFS config --json Addresses.API "\"/unix$api_sock\"" >>"$dir/init.log" 2>&1
    fi
    # A socket left by a killed daemon would make the listen fail.
    [ -S "$api_sock" ] && rm -f "$api_sock"
    rm -f "$dir/api"
    if [ -n "$swarm_key" ]; then
      install -m 0600 "$swarm_key" "$dir/swarm.key"
      export LIBP2P_FORCE_PNET=1
    fi
    # The daemon outlives this script; its log stays in DIR for post-mortems.
    nohup "$IPFS" daemon $offline --migrate=false >"$dir/daemon.log" 2>&1 &
    echo $! >"$dir/ipcs-kubo.pid"
    for _ in $(seq 1 300); do
      if url=$(api_url) && curl -fsS -m 2 --unix-socket "${url#unix://}" -X POST "http://localhost/api/v0/id" >/dev/null 2>&1; then
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
