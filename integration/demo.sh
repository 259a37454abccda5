#!/usr/bin/env bash
# The main job, for a new user: start Kubo, ipcs and containerd (1.6 from Debian, or
# CONTAINERD_VERSION=2) with ipcs as the content store, pull a locally built test image from
# a registry on 127.0.0.1 through containerd, and print each blob's digest -> CID and the
# proof that Kubo holds it. Everything runs in one temp dir and is stopped at the end
# (KEEP=1 leaves it running and prints how to reach it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
IMAGE="${IMAGE:-big}"
VERSION="${CONTAINERD_VERSION:-1.6}"
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
work=$(mktemp -d /tmp/ipcs-demo-XXXXXX)
stop_all() {
  [ -n "${KEEP:-}" ] && return
  "$root/integration/containerd-node.sh" stop "$work/containerd" >/dev/null 2>&1 || true
  [ -f "$work/ipcs.pid" ] && kill "$(cat "$work/ipcs.pid")" 2>/dev/null || true
  "$root/scripts/kubo-node.sh" stop "$work/kubo" >/dev/null 2>&1 || true
  "$root/integration/images/registry.sh" stop "$work/registry" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap stop_all EXIT

step() { printf '\n==> %s\n' "$*"; }

step "registry on 127.0.0.1 with the locally built test image '$IMAGE'"
"$root/integration/images/registry.sh" start "$work/registry" --port "$(free_port)" >/dev/null
reg=$("$root/integration/images/registry.sh" hostport "$work/registry")
"$root/integration/images/build-images.sh" --only "$IMAGE" "$IMAGES" >/dev/null
"$root/integration/images/push-images.sh" "$IMAGES" "$reg" "$IMAGE" >/dev/null
ref="$reg/ipcs/$IMAGE:v1"
echo "$ref"

step "Kubo (offline, loopback only)"
api=$("$root/scripts/kubo-node.sh" start "$work/kubo" --offline)
echo "$api ($("$IPFS" version))"

step "ipcs serve"
start_ipcs --bin "$IPCS" --socket "$work/ipcs/ipcs.sock" --data "$work/ipcs/data" --log "$work/ipcs.log" \
  --kubo "$api"
echo "$IPCS_STARTED_PID" >"$work/ipcs.pid"
"$IPCS" status --socket "$work/ipcs/ipcs.sock"

step "containerd $VERSION with ipcs as its content store"
addr=$("$root/integration/containerd-node.sh" start "$work/containerd" --version "$VERSION" \
  --content-socket "$work/ipcs/ipcs.sock")
ctr="$work/containerd/ctr"
"$ctr" version | sed -n '/Server/,$p'

step "ctr images pull --plain-http $ref"
start=$(date +%s.%N)
timeout 600 "$ctr" -n demo images pull --plain-http --platform linux/amd64 "$ref" | tail -n 3
printf 'pulled and unpacked in %.1f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"

step "every blob containerd holds, digest -> CID, checked with ipfs cat"
multiaddr=$(kubo_maddr "$api")
"$IPCS" blobs --settle 120 --socket "$work/ipcs/ipcs.sock" | sort -k3 -n | while read -r digest cid size; do
  got="sha256:$("$IPFS" --api "$multiaddr" cat --progress=false "$cid" | sha256sum | cut -d' ' -f1)"
  pinned=$("$IPFS" --api "$multiaddr" pin ls --type=recursive "$cid" >/dev/null 2>&1 && echo pinned || echo NOT-pinned)
  [ "$got" = "$digest" ] && verdict="ipfs cat matches" || verdict="MISMATCH ($got)"
  printf '%s -> %s  %10s bytes  %s, %s\n' "$digest" "$cid" "$size" "$pinned" "$verdict"
done
echo
"$IPCS" status --socket "$work/ipcs/ipcs.sock"
if [ -n "${KEEP:-}" ]; then
  echo; echo "left running in $work: ctr=$ctr, ipcs socket=$work/ipcs/ipcs.sock, kubo=$api"
fi
