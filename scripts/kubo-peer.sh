#!/usr/bin/env bash
# Peers a Kubo node (started or not by kubo-node.sh) with other nodes of the test
# network, so bitswap can fetch between them without DHT (Routing.Type none).
#
#   kubo-peer.sh DIR PEER_MULTIADDR...      e.g. /ip4/127.0.0.1/tcp/4002/p2p/12D3Koo...
#
# Each peer is merged into Peering.Peers ({ID, Addrs}) of DIR's config (persisted; an
# entry with the same ID is replaced). If the node is running, the peers are also added
# to the live peering subsystem (`swarm peering add`, which keeps reconnecting) and
# dialed at once (`swarm connect`). Peering is one-sided config; run it on every node
# for all-to-all peering.
set -euo pipefail
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
IPFS="${IPFS_BIN:-$TOOLS/bin/ipfs}"
dir="${1:?usage: kubo-peer.sh DIR PEER_MULTIADDR...}"; shift
[ $# -gt 0 ] || { echo "no peer multiaddr given" >&2; exit 2; }
export IPFS_PATH="$dir" IPFS_TELEMETRY=off
[ -f "$dir/config" ] || { echo "$dir is not a Kubo repo" >&2; exit 1; }

new='[]'
for a in "$@"; do
  [[ "$a" =~ ^(/.+)/p2p/([A-Za-z0-9]+)$ ]] || { echo "not a /.../p2p/ID multiaddr: $a" >&2; exit 2; }
  new=$(jq -c --arg id "${BASH_REMATCH[2]}" --arg addr "${BASH_REMATCH[1]}" \
        '. + [{ID: $id, Addrs: [$addr]}]' <<<"$new")
done

# Merge with what is configured: same ID -> addresses of the new entry win.
old=$("$IPFS" config --json Peering.Peers 2>/dev/null || echo null)
merged=$(jq -c --argjson new "$new" '
  ((. // []) | map(select(.ID as $i | ($new | map(.ID) | index($i)) | not))) + $new' <<<"$old")
"$IPFS" config --json Peering.Peers "$merged" >/dev/null

running=""
if [ -f "$dir/ipcs-kubo.pid" ] && kill -0 "$(cat "$dir/ipcs-kubo.pid")" 2>/dev/null \
   && "$IPFS" id >/dev/null 2>&1; then
  running=1
fi
if [ -n "$running" ]; then
  for a in "$@"; do
    "$IPFS" swarm peering add "$a" >/dev/null
    # The peer may not be up yet; the peering subsystem keeps retrying.
    "$IPFS" swarm connect "$a" >/dev/null 2>&1 || echo "kubo-peer: $a not reachable yet (peering will retry)" >&2
  done
fi
echo "Peering.Peers of $dir: $(jq -r 'map(.ID) | join(",")' <<<"$merged")${running:+ (running: connected)}"
