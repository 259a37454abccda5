#!/usr/bin/env bash
# Kubernetes' image path (CRI) through ipcs: containerd 2.x with its CRI plugin enabled and
# ipcs as its content store, driven by crictl (the ImageService only: no pod, no CNI).
#
#   integration/cri.sh [transfer|local]
#
# The argument picks CRI's pull path: `transfer` (default; containerd 2.x pulls through its
# transfer service) or `local` (use_local_image_pull = true, CRI's own client-side pull).
# Two nodes on 127.0.0.1, each Kubo (peered, private network) + IPFS Cluster peer + ipcs
# with its registry mirror (integration/p2p-nodes.sh) + containerd-cri whose CRI image
# service reads hosts.toml from `config_path`: ipcs's mirror first, then the registry.
#   a. A: crictl pull of small from the local registry (through A's mirror)
#   b. every blob of the image in A's ipcs, pinned, `ipfs cat` = digest; the image's own
#      layer, read back from IPFS, holds /etc/ipcs-test.txt; crictl images lists it
#   c. the registry stopped, B: crictl pull of the same tag succeeds from peers: B's mirror
#      answered the tag from the cluster, every blob came from peers with A's CIDs
#   d. A: crictl rmi and a GC pass: A's ipcs holds nothing and none of the image's CIDs has
#      an ipcs pin left in A's Kubo
#   e. the daemons hold only loopback sockets (CRI's stream server included)
#   f. nerdctl-format images by CID: before d, A runs `nerdctl push ipfs://` of small (its
#      Kubo pins the blobs); after d, B removes small, and with the registry still stopped
#      `crictl pull 127.0.0.1:<B's mirror>/ipfs/<CID>:latest` succeeds, every blob adopted
#      and verified with A's CIDs, and the known file in the layer
# One TAP-like line per check; the last line is `cri PATH: N passed, M failed`.
set -euo pipefail

MODE="${1:-transfer}"
case "$MODE" in transfer|local) ;; *) echo "usage: $0 [transfer|local]" >&2; exit 2;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
CONTAINERD_CRI="$TOOLS/containerd-cri-$CONTAINERD2_VERSION/bin/containerd"
CTR2="$TOOLS/containerd-$CONTAINERD2_VERSION/bin/ctr"
CRICTL="$TOOLS/cri-tools-$CRITOOLS_VERSION/bin/crictl"
PULL_TIMEOUT="${CRI_PULL_TIMEOUT:-300}"
NS=k8s.io   # CRI's containerd namespace
KNOWN_SMALL='ipcs test image: small v1'

started_at=$(date +%s%N)
exec 8>&1 9>&2
work=$(mktemp -d "/tmp/ipcs-cri-$MODE-XXXXXX")
logs="$work/logs"; mkdir -p "$logs"
reg_dir="$work/registry"
passed=0 failed=0 setup_done=0 all_run=0 last_log=""
# shellcheck source=integration/p2p-nodes.sh
. "$root/integration/p2p-nodes.sh"
P2P_DIR="$work" P2P_LOG="$logs/setup.log" P2P_NS="$NS" P2P_IPCS="$IPCS" P2P_IPFS="$IPFS"
P2P_CLUSTER_CTL="$CLUSTER_CTL" P2P_REFRESH=2
# CRDT heads rebroadcast every 2 s: B must see A's pins within the wait even on a busy machine.
P2P_REBROADCAST=2s
p2p_network_init

crictl() {  # crictl NODE TIMEOUT ARGS...
  local n=$1 t=$2 s="$work/$1/containerd/containerd.sock"; shift 2
  timeout -k 10 "$t" "$CRICTL" --config "$work/$n/crictl.yaml" --runtime-endpoint "unix://$s" \
    --image-endpoint "unix://$s" --timeout "${t}s" "$@"
}
ctr() { local n=$1 t=$2; shift 2; timeout -k 10 "$t" "$CTR2" --address "$work/$n/containerd/containerd.sock" -n "$NS" "$@"; }

diagnostics() {
  if [ -n "$last_log" ] && [ -s "$last_log" ]; then
    say "--- $(basename "$last_log") (last 15 lines)"; tail -n 15 "$last_log" | indent
  fi
  local n
  for n in a b; do
    [ -f "$work/$n/ipcs.log" ] && { say "--- ipcs $n log (last 8 lines)"; tail -n 8 "$work/$n/ipcs.log" | indent; }
    [ -f "$work/$n/containerd/containerd.log" ] && { say "--- containerd $n (last 8 warnings/errors)";
      grep -E 'level=(warn|error|fatal)' "$work/$n/containerd/containerd.log" | grep -v DEPRECATION | tail -n 8 | indent; }
  done
  return 0
}

# cri_containerd_start N REGISTRY: containerd with CRI in $work/N/containerd, content in
# ipcs, registry hosts from $work/N/hosts (ipcs's mirror first). The config is written here
# rather than by containerd-node.sh, which turns CRI off.
cri_containerd_start() {
  local n=$1 reg=$2 d="$work/$1" local_pull=false
  [ "$MODE" = local ] && local_pull=true
  mkdir -p "$d/containerd/root" "$d/containerd/state" "$d/hosts/$reg" "$d/cni/bin" "$d/cni/conf"
  cat >"$d/hosts/$reg/hosts.toml" <<EOF
server = "http://$reg"

[host."http://127.0.0.1:${P2P_MIRROR[$n]}"]
  capabilities = ["pull", "resolve"]
  [host."http://127.0.0.1:${P2P_MIRROR[$n]}".header]
    x-ipcs-mirror-secret = "$(cat "$d/data/mirror-secret")"
EOF
  chmod 600 "$d/hosts/$reg/hosts.toml"   # it holds the mirror's secret
  # plugin-config/containerd-cri.toml with this node's paths: the documented config is the
  # one tested.
  sed -e "s|\"/var/lib/containerd\"|\"$d/containerd/root\"|" \
      -e "s|\"/run/containerd\"|\"$d/containerd/state\"|" \
      -e "s|\"/run/containerd/containerd.sock|\"$d/containerd/containerd.sock|" \
      -e "s|\"/run/ipcs/ipcs.sock\"|\"$d/ipcs.sock\"|" \
      -e "s|\"/etc/containerd/certs.d\"|\"$d/hosts\"|" \
      -e "s|\"/opt/cni/bin\"|\"$d/cni/bin\"|" -e "s|\"/etc/cni/net.d\"|\"$d/cni/conf\"|" \
      -e "s|^  use_local_image_pull = false$|  use_local_image_pull = $local_pull|" \
      "$root/plugin-config/containerd-cri.toml" >"$d/containerd/config.toml"
  if grep -E '"/(var|run|etc|opt)/' "$d/containerd/config.toml"; then
    echo "cri.sh: a system path is left in $d/containerd/config.toml" >&2; return 1
  fi
  grep -q "use_local_image_pull = $local_pull" "$d/containerd/config.toml" || return 1
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\n' \
    "$d/containerd/containerd.sock" "$d/containerd/containerd.sock" >"$d/crictl.yaml"
  # Its own version's runc shim first on PATH (Debian's 1.6 shim is in /usr/bin).
  PATH="$TOOLS/containerd-$CONTAINERD2_VERSION/bin:$PATH" setsid "$CONTAINERD_CRI" \
    --config "$d/containerd/config.toml" >"$d/containerd/containerd.log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$d/containerd/containerd.pid"
  local _
  for _ in $(seq 1 150); do
    crictl "$n" 10 version >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$d/containerd/containerd.pid")" 2>/dev/null || break
    sleep 0.2
  done
  tail -n 20 "$d/containerd/containerd.log" >>"$P2P_LOG"
  return 1
}
cri_containerd_stop() {
  local f="$work/$1/containerd/containerd.pid" pid _ m
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
  for m in $(awk -v d="$work/$1/containerd/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$?
  set +e
  exec >&8 2>&9
  trap - EXIT INT TERM
  local n
  for n in a b; do cri_containerd_stop "$n"; kubo_tcp_bridge_stop "$work/$n/bridge"; p2p_node_stop "$n"; done
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
  finish_run "cri $MODE" "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------- setup
for b in "$IPCS" "$IPFS" "$CLUSTER_CTL" "$CONTAINERD_CRI" "$CTR2" "$CRICTL" "$NERDCTL"; do
  [ -x "$b" ] || { echo "missing $b (make setup; scripts/install-cri.sh)" >&2; exit 1; }
done
say "CRI ($MODE pull path) on containerd $CONTAINERD2_VERSION, crictl $CRITOOLS_VERSION, work dir $work"
last_log="$logs/setup.log"
"$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>>"$last_log" 8>&- 9>&-
reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
reg_log=$("$root/integration/images/registry.sh" log "$reg_dir")
timeout 1800 "$root/integration/images/build-images.sh" --only small "$IMAGES" >>"$last_log" 2>&1
timeout 900 "$root/integration/images/push-images.sh" "$IMAGES" "$reg" small >>"$last_log" 2>&1
SMALL="$reg/ipcs/small:v1"

for n in a b; do p2p_kubo_start "$n"; done
p2p_kubo_peer a b
p2p_kubo_peer b a
p2p_cluster_start a
p2p_cluster_start b a
p2p_cluster_wait_peers b 2 || say "cluster peer b does not see both peers yet"
for n in a b; do
  p2p_ipcs_start "$n"
  cri_containerd_start "$n" "$reg"
done
setup_done=1
say "registry $reg; nodes a, b up in $(secs $(( $(now_ms) - started_at / 1000000 ))) s"

# --------------------------------------------------------------------------------- checks
# image_digests NODE REF: the manifest digest, then config and layer digests, of REF.
image_digests() {
  local m
  m=$(ctr "$1" 30 images ls | awk -v r="$2" '$1 == r { print $3 }')
  [ -n "$m" ] || { say "$2 not in $1's containerd"; return 1; }
  echo "$m"
  ctr "$1" 30 content get "$m" | jq -r '.config.digest, .layers[].digest'
}

check_a_pull() {
  logged pull-a crictl a "$PULL_TIMEOUT" pull "$SMALL" || return 1
  crictl a 30 images | grep -q "$reg/ipcs/small " || { say "crictl images does not list it"; return 1; }
}

check_a_in_ipcs() {
  local ok=0 d cid got
  mapfile -t A_DIGESTS < <(image_digests a "$SMALL") || return 1
  p2p_blobs a >"$logs/blobs-a.txt" || return 1
  p2p_ipfs a 60 pin ls --type=recursive --names >"$logs/pins-a.txt" || return 1
  for d in "${A_DIGESTS[@]}"; do
    cid=$(awk -v d="$d" '$1 == d { print $2 }' "$logs/blobs-a.txt")
    [ -n "$cid" ] || { say "$d not in A's ipcs"; ok=1; continue; }
    awk -v c="$cid" '$1 == c && $3 ~ /^ipcs:/ { f = 1 } END { exit !f }' "$logs/pins-a.txt" \
      || { say "$d: $cid has no ipcs pin"; ok=1; }
    got=$(p2p_ipfs a 60 cat --progress=false "$cid" </dev/null | sha256sum | cut -d' ' -f1)
    [ "sha256:$got" = "$d" ] || { say "$d: ipfs cat $cid gives sha256:$got"; ok=1; }
  done
  cid=$(awk -v d="${A_DIGESTS[-1]}" '$1 == d { print $2 }' "$logs/blobs-a.txt")
  got=$(p2p_ipfs a 60 cat --progress=false "$cid" | tar -xzOf - etc/ipcs-test.txt)
  [ "$got" = "$KNOWN_SMALL" ] || { say "etc/ipcs-test.txt in layer $cid: '$got'"; ok=1; }
  say "${#A_DIGESTS[@]} blobs in A's ipcs, pinned, ipfs cat = digest; the top layer holds etc/ipcs-test.txt"
  return $ok
}

check_b_from_peers() {
  local ok=0 d ca cb n
  p2p_wait_synced a b || { say "B's cluster view lacks A's pins (blobs and tag)"; return 1; }
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
  if curl -fsS -m 2 "http://$reg/v2/" >/dev/null 2>&1; then say "registry still answers"; return 1; fi
  logged pull-b crictl b "$PULL_TIMEOUT" pull "$SMALL" || return 1
  local tags; tags=$(p2p_metric b ipcs_mirror_tags_from_cluster_total) || { say "B's metrics do not answer"; return 1; }
  say "tags B's mirror answered from the cluster: $tags"
  [ "$tags" -ge 1 ] || { say "B's mirror did not answer the tag (hosts.toml not consulted?)"; ok=1; }
  p2p_blobs b >"$logs/blobs-b.txt" || return 1
  for d in "${A_DIGESTS[@]}"; do
    ca=$(awk -v d="$d" '$1 == d { print $2 }' "$logs/blobs-a.txt")
    cb=$(awk -v d="$d" '$1 == d { print $2 }' "$logs/blobs-b.txt")
    [ -n "$cb" ] && [ "$ca" = "$cb" ] || { say "$d: A $ca, B '${cb}'"; ok=1; }
  done
  n=$(p2p_metric b 'ipcs_peer_adoptions_total{outcome="ok"}') || { say "B's metrics do not answer"; return 1; }
  say "$n blobs adopted from peers on B, same CIDs as A"
  [ "$n" -ge 1 ] || ok=1
  return $ok
}

check_rmi_unpins() {
  local ok=0 lease d cid left
  logged rmi-a crictl a 120 rmi "$SMALL" || return 1
  lease=$(ctr a 60 leases create) || return 1
  logged gc-a ctr a 300 leases rm --sync "$lease" || return 1
  left=$(p2p_blobs a) || return 1
  [ -z "$left" ] || { say "A's ipcs still lists $(grep -c . <<<"$left") blobs"; ok=1; }
  p2p_ipfs a 60 pin ls --type=recursive --names >"$logs/pins-a-after.txt" || return 1
  for d in "${A_DIGESTS[@]}"; do
    cid=$(awk -v d="$d" '$1 == d { print $2 }' "$logs/blobs-a.txt")
    if awk -v c="$cid" '$1 == c && $3 ~ /^ipcs:/ { f = 1 } END { exit !f }' "$logs/pins-a-after.txt"; then
      say "$d: $cid still has an ipcs pin"; ok=1
    fi
  done
  say "ipcs pins left in A's Kubo: $(awk '$3 ~ /^ipcs:/' "$logs/pins-a-after.txt" | wc -l) (the cluster's own pins stay)"
  return $ok
}

check_nerdctl_push_a() {
  local port; port=$(kubo_tcp_bridge "${P2P_API[a]}" "$work/a/bridge") || return 1
  logged push-ipfs-a env NERDCTL_TOML="$work/a/nerdctl.toml" timeout -k 10 300 \
    "$NERDCTL" --address "$work/a/containerd/containerd.sock" --namespace "$NS" \
    --data-root "$work/a/nerdctl" push --ipfs-address "/ip4/127.0.0.1/tcp/$port" "ipfs://$SMALL" || return 1
  IPFS_ROOT=$(grep -E '^(baf[a-z2-7]+|Qm[1-9A-HJ-NP-Za-km-z]+)$' "$last_log" | tail -n 1)
  [ -n "$IPFS_ROOT" ] || { say "no CID printed"; return 1; }
  say "nerdctl push ipfs:// on A printed $IPFS_ROOT"
}

check_crictl_by_cid() {
  local ok=0 lease d ca cb before n ref="127.0.0.1:${P2P_MIRROR[b]}/ipfs/$IPFS_ROOT:latest"
  [ -n "${IPFS_ROOT:-}" ] || return 1
  logged rmi-b crictl b 120 rmi "$SMALL" || return 1
  lease=$(ctr b 60 leases create) && logged gc-b ctr b 300 leases rm --sync "$lease" || return 1
  [ -z "$(p2p_blobs b)" ] || { say "B's ipcs not empty after rmi + GC"; return 1; }
  mkdir -p "$work/b/hosts/127.0.0.1:${P2P_MIRROR[b]}"
  # The mirror is the registry here; it still wants its secret header.
  printf 'server = "http://127.0.0.1:%s"\n[header]\n  x-ipcs-mirror-secret = "%s"\n' "${P2P_MIRROR[b]}" \
    "$(cat "$work/b/data/mirror-secret")" >"$work/b/hosts/127.0.0.1:${P2P_MIRROR[b]}/hosts.toml"
  chmod 600 "$work/b/hosts/127.0.0.1:${P2P_MIRROR[b]}/hosts.toml"
  before=$(p2p_metric b 'ipcs_peer_adoptions_total{outcome="ok"}') || { say "B's metrics do not answer"; return 1; }
  logged pull-b-cid crictl b "$PULL_TIMEOUT" pull "$ref" || return 1
  # Adopted and verified, by the CID from the cluster pinset or from the image's URLs
  # (the same CIDs: A committed the converted manifest too, and published it).
  n=$(p2p_metric b 'ipcs_peer_adoptions_total{outcome="ok"}') || return 1; n=$((n - before))
  p2p_blobs b >"$logs/blobs-b-cid.txt" || return 1
  for d in "${A_DIGESTS[@]:1}"; do   # config and layers: the manifest was rewritten (urls)
    ca=$(awk -v d="$d" '$1 == d { print $2 }' "$logs/blobs-a.txt")
    cb=$(awk -v d="$d" '$1 == d { print $2 }' "$logs/blobs-b-cid.txt")
    [ -n "$cb" ] && [ "$ca" = "$cb" ] || { say "$d: A $ca, B '$cb'"; ok=1; }
  done
  cb=$(awk -v d="${A_DIGESTS[-1]}" '$1 == d { print $2 }' "$logs/blobs-b-cid.txt")
  [ "$(p2p_ipfs b 60 cat --progress=false "$cb" | tar -xzOf - etc/ipcs-test.txt)" = "$KNOWN_SMALL" ] \
    || { say "known file wrong in $cb"; ok=1; }
  say "crictl pull $ref: $n blobs adopted (verified) on B, A's CIDs, known file intact"
  [ "$n" -ge "${#A_DIGESTS[@]}" ] || ok=1
  return $ok
}

check_loopback_only() {
  local pids=() n bad
  for n in a b; do
    pids+=("$(cat "$work/$n/containerd/containerd.pid")" "${P2P_PID[$n]}")
    pids+=("$(cat "$work/$n/kubo/ipcs-kubo.pid" 2>/dev/null)")
  done
  ss -Htunap >"$work/ss.txt" 2>&1 || return 1
  bad=$(awk -v pids=" ${pids[*]} " '
    match($0, /pid=[0-9]+/) {
      p = substr($0, RSTART + 4, RLENGTH - 4)
      if (index(pids, " " p " ") == 0) next
      if ($5 !~ /^(127\.|\[::1\]|\[::ffff:127\.)/ || $6 !~ /^(127\.|\[::1\]|\[::ffff:127\.|\*|0\.0\.0\.0:\*|\[::\]:\*)/) print
    }' "$work/ss.txt")
  say "containerd a listens on: $(grep "pid=$(cat "$work/a/containerd/containerd.pid")," "$work/ss.txt" | awk '$2 == "LISTEN" { print $5 }' | paste -sd' ')"
  [ -z "$bad" ] || { say "non-loopback sockets:"; echo "$bad" | indent; return 1; }
}

check "a. A: crictl pull $SMALL (registry behind A's ipcs mirror)"      check_a_pull
check "b. its blobs in A's ipcs, pinned, ipfs cat = digest, the layer holds the known file" check_a_in_ipcs
check "e. the daemons hold only loopback sockets (CRI stream server included)" check_loopback_only
check "c. registry stopped: B's crictl pull is answered by its mirror and peers, same CIDs" check_b_from_peers
check "f1. A: nerdctl push ipfs:// of small on the CRI node (for f2)"      check_nerdctl_push_a
check "d. A: crictl rmi + GC: A's ipcs empty, no ipcs pin left for the image's CIDs" check_rmi_unpins
check "f2. B: crictl pull 127.0.0.1:<mirror>/ipfs/CID:latest, registry stopped: adopted, verified" check_crictl_by_cid
all_run=1
