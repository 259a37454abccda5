#!/usr/bin/env bash
# nerdctl's `ipfs://` images with ipcs as containerd's content store, and ipcs's mirror
# serving them by CID with no registry anywhere.
#
#   integration/nerdctl-ipfs.sh
#
# Two nodes on 127.0.0.1, each Kubo (private network, peered) + ipcs + containerd 2.x
# (integration/containerd-node.sh); B's ipcs also runs its registry mirror. A registry
# serves the test image small to node A only; it is stopped before anything ipfs:// runs.
#   a. A: nerdctl push ipfs://small prints a CID; `ipfs cat CID` is a JSON descriptor of
#      the converted manifest with an ipfs:// URL
#   b. every descriptor of the pushed image carries an ipfs://<CID> URL: config and layers
#      are in A's ipcs under exactly that CID (same import options), pinned, `ipfs cat`
#      hashing to the digest; the converted manifest (no image references it, so
#      containerd's GC drops it from ipcs) is still pinned on A under its CID
#   c. B: nerdctl pull ipfs://CID (B's Kubo, blocks from A): the image is in B's
#      containerd, its blobs in B's ipcs with the same CIDs, pinned, known file intact
#   d. B: nerdctl rmi + GC empties B's ipcs
#   e. B: ctr images pull 127.0.0.1:<B's mirror>/ipfs/CID:latest: every blob adopted by the
#      CID of its ipfs:// URL and verified; image mounts with the known file
#   f. B: after rm + GC, nerdctl pull of the same mirror reference works too
#   g. hostile roots on B's mirror: a CID that is not a descriptor, a digest the image does
#      not name, and a descriptor whose URL points at other bytes of the right size are
#      404, the last one logged as not matching its digest, and nothing wrong is stored
# One TAP-like line per check; the last line is `nerdctl-ipfs: N passed, M failed`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
PULL_TIMEOUT="${NERDCTL_IPFS_TIMEOUT:-300}"
NS=ipfs
KNOWN_SMALL='ipcs test image: small v1'

started_at=$(date +%s%N)
exec 8>&1 9>&2
work=$(mktemp -d /tmp/ipcs-nerdctl-ipfs-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
reg_dir="$work/registry"
passed=0 failed=0 setup_done=0 all_run=0 last_log=""
# shellcheck source=integration/p2p-nodes.sh
. "$root/integration/p2p-nodes.sh"
P2P_DIR="$work" P2P_LOG="$logs/setup.log" P2P_NS="$NS" P2P_IPCS="$IPCS" P2P_IPFS="$IPFS"
p2p_network_init
declare -A IPCS_PID=() MIRROR=() KUBO_TCP=() PUSHED=()

ctr()     { local n=$1 t=$2; shift 2; timeout -k 10 "$t" "$work/$n/containerd/ctr" -n "$NS" "$@"; }
ipfs()    { p2p_ipfs "$@"; }
blobs()   { timeout -k 5 60 "$IPCS" blobs --settle 120 --socket "$work/$1/ipcs.sock"; }
metric()  { ipcs_metric "unix://$work/$1/metrics.sock" "$2"; }
# nerdctl's IPFS client dials only host:port and Kubo's API is a unix socket here, so it
# gets a loopback bridge to the socket (--ipfs-address, KUBO_TCP[N]); its registry hosts
# (the mirror's secret header) come from $work/N/hosts.
nerdctl() {
  local n=$1 t=$2; shift 2
  NERDCTL_TOML="$work/$n/nerdctl.toml" timeout -k 10 "$t" "$NERDCTL" \
    --address "$work/$n/containerd/containerd.sock" --namespace "$NS" --data-root "$work/$n/nerdctl" \
    --hosts-dir "$work/$n/hosts" "$@"
}
ipfs_addr() { echo "/ip4/127.0.0.1/tcp/${KUBO_TCP[$1]}"; }

diagnostics() { show_logs "$work/a" "$work/b"; }

# ipcs_start N [--mirror]: ipcs alone (no cluster), optionally with its registry mirror.
ipcs_start() {
  local n=$1 d="$work/$1" args=() _
  if [ "${2:-}" = --mirror ]; then MIRROR[$n]=$(free_port); args=(--mirror-listen "127.0.0.1:${MIRROR[$n]}"); fi
  args+=(--metrics-listen "unix://$d/metrics.sock")
  start_ipcs --bin "$IPCS" --socket "$d/ipcs.sock" --data "$d/data" --log "$d/ipcs.log" \
    --kubo "${P2P_API[$n]}" -- "${args[@]}" || return 1
  IPCS_PID[$n]=$IPCS_STARTED_PID
}

stop_all() {
  local n _
  for n in a b; do
    mountpoint -q "$work/$n/mnt" 2>/dev/null && umount -l "$work/$n/mnt"
    timeout 120 "$root/integration/containerd-node.sh" stop "$work/$n/containerd" >/dev/null 2>&1
    if [ -n "${IPCS_PID[$n]:-}" ]; then
      stop_pid "${IPCS_PID[$n]}" TERM 10
    fi
    kubo_tcp_bridge_stop "$work/$n/bridge"
    timeout 60 "$root/scripts/kubo-node.sh" stop "$work/$n/kubo" >/dev/null 2>&1
  done
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
}
on_exit nerdctl-ipfs stop_all

# ---------------------------------------------------------------------------------- setup
require_bins "$IPCS" "$IPFS" "$NERDCTL"
say "nerdctl $NERDCTL_VERSION ipfs:// on containerd $CONTAINERD2_VERSION, work dir $work"
last_log="$logs/setup.log"
"$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>>"$last_log" 8>&- 9>&-
reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
timeout 1800 "$root/integration/images/build-images.sh" --only small,multi "$IMAGES" >>"$last_log" 2>&1
timeout 900 "$root/integration/images/push-images.sh" "$IMAGES" "$reg" small multi >>"$last_log" 2>&1
SMALL="$reg/ipcs/small:v1" MULTI="$reg/ipcs/multi:v1" DOCKER="$reg/ipcs/small-docker:v1"
# small again with Docker schema 2 media types, for the Docker -> OCI conversion
timeout 300 skopeo copy --quiet --format v2s2 --dest-tls-verify=false "oci:$IMAGES/small:v1" "docker://$DOCKER" \
  >>"$last_log" 2>&1

p2p_kubo_start a
p2p_kubo_start b
p2p_kubo_peer a b
p2p_kubo_peer b a
for n in a b; do KUBO_TCP[$n]=$(kubo_tcp_bridge "${P2P_API[$n]}" "$work/$n/bridge"); done
ipcs_start a
ipcs_start b --mirror
# B's hosts for its mirror, which is the registry of ipfs/<CID> images: plain HTTP, and the
# secret header the mirror requires (so the file is 0600).
SECRET=$(cat "$work/b/data/mirror-secret")
mkdir -p "$work/b/hosts/127.0.0.1:${MIRROR[b]}"
printf 'server = "http://127.0.0.1:%s"\n[header]\n  x-ipcs-mirror-secret = "%s"\n' "${MIRROR[b]}" "$SECRET" \
  >"$work/b/hosts/127.0.0.1:${MIRROR[b]}/hosts.toml"
chmod 600 "$work/b/hosts/127.0.0.1:${MIRROR[b]}/hosts.toml"
for n in a b; do
  timeout 120 "$root/integration/containerd-node.sh" start "$work/$n/containerd" --version 2 \
    --content-socket "$work/$n/ipcs.sock" >/dev/null 2>>"$last_log" 8>&- 9>&-
  mkdir -p "$work/$n/mnt"
done
# A gets small from the registry; then the registry is gone for good.
for ref in "$SMALL" "$MULTI" "$DOCKER"; do
  ctr a "$PULL_TIMEOUT" images pull --plain-http --platform linux/amd64 "$ref" >>"$last_log" 2>&1
done
"$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
! curl -fsS -m 2 "http://$reg/v2/" >/dev/null 2>&1
setup_done=1
say "nodes a, b up; registry stopped after A's pull ($(secs $(( $(now_ms) - started_at / 1000000 ))) s)"

# --------------------------------------------------------------------------------- checks
# in_ipcs N DIGEST CID: DIGEST is in N's ipcs with CID, pinned there, bytes hash to DIGEST.
in_ipcs() {
  local n=$1 d=$2 want=$3 cid got
  cid=$(awk -v d="$d" '$1 == d { print $2 }' "$logs/blobs-$n.txt")
  [ "$cid" = "$want" ] || { say "$n: $d has CID '$cid' in ipcs, URL says $want"; return 1; }
  grep -qxF "$cid" "$logs/pins-$n.txt" || { say "$n: $cid not pinned"; return 1; }
  got=$(ipfs "$n" 60 cat --progress=false "$cid" </dev/null | sha256sum | cut -d' ' -f1)
  [ "sha256:$got" = "$d" ] || { say "$n: ipfs cat $cid gives sha256:$got"; return 1; }
}

# image_urls N: "DIGEST CID" for the pushed image's manifest, config and layers, read
# from the root descriptor and the manifest stored in N's ipcs.
image_urls() {
  local n=$1 m
  m=$(jq -r .digest "$logs/root.json")
  echo "$m $(jq -r '.urls[0]' "$logs/root.json" | sed 's|^ipfs://||')"
  ipfs "$n" 60 cat "$(jq -r '.urls[0]' "$logs/root.json" | sed 's|^ipfs://||')" \
    | jq -r '(.config, .layers[]) | "\(.digest) \(.urls[0] | sub("^ipfs://"; ""))"'
}

snapshot() {  # snapshot N: its ipcs blobs and Kubo recursive pins into $logs
  blobs "$1" >"$logs/blobs-$1.txt" && ipfs "$1" 60 pin ls --type=recursive -q >"$logs/pins-$1.txt"
}

check_push() {
  logged push-a nerdctl a "$PULL_TIMEOUT" push --ipfs-address "$(ipfs_addr a)" "ipfs://$SMALL" || return 1
  ROOT=$(grep -E '^(baf[a-z2-7]+|Qm[1-9A-HJ-NP-Za-km-z]+)$' "$last_log" | tail -n 1)
  [ -n "$ROOT" ] || { say "no CID printed"; return 1; }
  ipfs a 60 cat "$ROOT" >"$logs/root.json" || return 1
  say "nerdctl printed $ROOT: $(cat "$logs/root.json")"
  jq -e '(.mediaType | test("manifest|index")) and (.urls[0] | startswith("ipfs://"))' "$logs/root.json" >/dev/null
}

# The converted manifest (URLs added) is referenced by no image in containerd, so GC
# removes it from ipcs right after the push; nerdctl's own pin of it must survive that.
check_push_blobs_in_ipcs() {
  local ok=0 d cid n=0 mcid mdigest got lease
  image_urls a >"$logs/urls.txt" || return 1
  read -r mdigest mcid <"$logs/urls.txt"
  # A GC pass now, not whenever containerd's scheduler gets to it.
  lease=$(ctr a 60 leases create) && ctr a 300 leases rm --sync "$lease" >/dev/null || return 1
  snapshot a || return 1
  if grep -q "^$mdigest " "$logs/blobs-a.txt"; then say "GC kept the converted manifest in A's ipcs"; ok=1; fi
  got=$(ipfs a 60 cat --progress=false "$mcid" | sha256sum | cut -d' ' -f1)
  [ "sha256:$got" = "$mdigest" ] || { say "manifest $mcid hashes to sha256:$got, not $mdigest"; ok=1; }
  grep -qxF "$mcid" "$logs/pins-a.txt" || { say "manifest $mcid is no longer pinned on A"; ok=1; }
  [ "$(ipfs a 60 cat "$mcid" | ipfs a 60 add -Q --only-hash --cid-version 1 --raw-leaves --chunker size-262144)" = "$mcid" ] \
    || { say "manifest CID $mcid is not what ipcs's import options give"; ok=1; }
  while read -r d cid; do
    [ "$d" = "$mdigest" ] && continue
    n=$((n + 1)); in_ipcs a "$d" "$cid" || ok=1
  done <"$logs/urls.txt"
  say "manifest $mdigest = $mcid pinned on A; $n config/layer URLs = ipcs's CIDs on A, pinned, bytes = digest"
  [ "$n" -ge 2 ] || return 1
  return $ok
}

file_check() {  # file_check NODE REF [KNOWN TEXT]
  local n=$1 ok=0
  logged "mount-$n" ctr "$n" 120 images mount "$2" "$work/$n/mnt" || return 1
  printf '%s\n' "${3:-$KNOWN_SMALL}" | cmp -s - "$work/$n/mnt/etc/ipcs-test.txt" || { say "/etc/ipcs-test.txt differs"; ok=1; }
  logged "unmount-$n" ctr "$n" 120 images unmount --rm "$work/$n/mnt" || ok=1
  return $ok
}

# b_has_image: every URL's digest is in B's ipcs under the URL's CID, pinned, bytes = digest.
b_has_image() {
  local ok=0 d cid
  snapshot b || return 1
  while read -r d cid; do in_ipcs b "$d" "$cid" || ok=1; done <"$logs/urls.txt"
  return $ok
}

check_nerdctl_pull() {
  logged pull-b nerdctl b "$PULL_TIMEOUT" pull --ipfs-address "$(ipfs_addr b)" "ipfs://$ROOT" || return 1
  b_has_image || return 1
  file_check b "$ROOT" || file_check b "ipfs://$ROOT" || return 1
  say "B: $(wc -l <"$logs/urls.txt") blobs with A's CIDs, pinned; /etc/ipcs-test.txt intact"
}

remove_all_b() {
  local i lease
  for i in $(ctr b 60 images ls -q); do ctr b 300 images rm --sync "$i" >/dev/null || return 1; done
  lease=$(ctr b 60 leases create) && ctr b 300 leases rm --sync "$lease" >/dev/null || return 1
  local left; left=$(blobs b) || return 1
  [ -z "$left" ] || { say "B's ipcs still lists $(grep -c . <<<"$left") blobs"; return 1; }
}

check_rmi_b() {
  logged rmi-b nerdctl b 120 rmi "ipfs://$ROOT" || logged rmi-b nerdctl b 120 rmi "$ROOT" || true
  remove_all_b
}

check_mirror_ctr() {
  local before n want ref="127.0.0.1:${MIRROR[b]}/ipfs/$ROOT:latest"
  local series='ipcs_peer_adopted_by_hint_total{hint="manifest_url"}'
  before=$(metric b "$series") || { say "B's metrics do not answer"; return 1; }
  logged mirror-ctr ctr b "$PULL_TIMEOUT" images pull --hosts-dir "$work/b/hosts" --platform linux/amd64 "$ref" || return 1
  b_has_image || return 1
  file_check b "$ref" || return 1
  # Each blob adopted during this pull, by the CID its ipfs:// URL (or the root) names.
  n=$(metric b "$series") || return 1; n=$((n - before))
  want=$(wc -l <"$logs/urls.txt")
  say "B's ipcs adopted $n blobs by their ipfs:// URLs during the pull (the image has $want)"
  [ "$n" -ge "$want" ]
}

check_mirror_nerdctl() {
  remove_all_b || return 1
  local ref="127.0.0.1:${MIRROR[b]}/ipfs/$ROOT:latest"
  logged mirror-nerdctl nerdctl b "$PULL_TIMEOUT" pull "$ref" || return 1
  b_has_image || return 1
  file_check b "$ref"
}

ipcs_push() {  # ipcs_push N REF [ARGS...]: ipcs's export in nerdctl's format; CID on stdout
  local n=$1 ref=$2; shift 2
  timeout -k 5 300 "$IPCS" ipfs-push --socket "$work/$n/ipcs.sock" \
    --containerd-socket "$work/$n/containerd/containerd.sock" --namespace "$NS" "$@" "$ref"
}

# same_cid REF: nerdctl push ipfs://REF and ipcs ipfs-push REF on A print the same CID.
same_cid() {
  local ref=$1 tag=$2 want got
  logged "nerdctl-push-$tag" nerdctl a "$PULL_TIMEOUT" push --ipfs-address "$(ipfs_addr a)" "ipfs://$ref" || return 1
  want=$(grep -E '^baf[a-z2-7]+$' "$last_log" | tail -n 1)
  logged "ipcs-push-$tag" ipcs_push a "$ref" || return 1
  got=$(grep -E '^baf[a-z2-7]+$' "$last_log" | tail -n 1)
  say "$tag: nerdctl printed $want, ipcs printed $got"
  [ -n "$want" ] && [ "$got" = "$want" ] || return 1
  PUSHED[$tag]=$got
}

check_ipcs_push_small() {
  logged ipcs-push-small ipcs_push a "$SMALL" || return 1
  local got; got=$(grep -E '^baf[a-z2-7]+$' "$last_log" | tail -n 1)
  say "nerdctl printed $ROOT (check a), ipcs printed $got"
  [ "$got" = "$ROOT" ]
}
check_ipcs_push_multi()  { same_cid "$MULTI" multi; }
check_ipcs_push_docker() {
  same_cid "$DOCKER" docker || return 1
  # the root names an OCI manifest although the image's own are Docker's
  ipfs a 60 cat "${PUSHED[docker]}" | jq -e '.mediaType == "application/vnd.oci.image.manifest.v1+json"' >/dev/null \
    || { say "root media type: $(ipfs a 60 cat "${PUSHED[docker]}")"; return 1; }
}

check_pull_ipcs_pushed() {
  [ -n "${PUSHED[multi]:-}" ] || { say "no CID from check i"; return 1; }
  remove_all_b || return 1
  logged pull-b-multi nerdctl b "$PULL_TIMEOUT" pull --ipfs-address "$(ipfs_addr b)" "ipfs://${PUSHED[multi]}" || return 1
  file_check b "${PUSHED[multi]}" "ipcs test image: multi v1" \
    || file_check b "ipfs://${PUSHED[multi]}" "ipcs test image: multi v1" || return 1
}

check_ipcs_push_errors() {
  local ok=0
  # A holds only multi's amd64 manifest: arm64 must fail, naming what is missing
  if logged ipcs-push-arm ipcs_push a "$MULTI" --platform linux/arm64; then say "arm64 push succeeded"; ok=1; fi
  say "arm64: $(tail -n 1 "$last_log" | cut -c1-200)"
  grep -qi 'not found' "$last_log" || ok=1
  if logged ipcs-push-unknown ipcs_push a "no-such-image:v1"; then say "unknown image pushed"; ok=1; fi
  say "unknown image: $(tail -n 1 "$last_log" | cut -c1-200)"
  grep -qi 'not found' "$last_log" || ok=1
  if logged ipcs-push-badplat ipcs_push a "$MULTI" --platform "linux"; then say "bad platform accepted"; ok=1; fi
  grep -q 'os/arch' "$last_log" || ok=1
  return $ok
}

check_hostile_roots() {
  local ok=0 url="http://127.0.0.1:${MIRROR[b]}/v2/ipfs" code junk fake_cid fake_root mdigest msize refused now
  junk=$(printf 'not a descriptor' | ipfs b 30 add -Q --cid-version 1) || return 1
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 60 -H "x-ipcs-mirror-secret: $SECRET" "$url/$junk/manifests/latest")
  say "a CID of plain text: $code"; [ "$code" = 404 ] || ok=1
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 60 -H "x-ipcs-mirror-secret: $SECRET" \
    "$url/$ROOT/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000")
  say "a digest the image does not name: $code"; [ "$code" = 404 ] || ok=1
  remove_all_b || return 1
  # A root naming the real manifest digest and size, but a URL to other bytes.
  mdigest=$(jq -r .digest "$logs/root.json"); msize=$(jq -r .size "$logs/root.json")
  fake_cid=$(head -c "$msize" /dev/urandom | ipfs b 30 add -Q --cid-version 1 --raw-leaves) || return 1
  fake_root=$(jq -c --arg u "ipfs://$fake_cid" '.urls = [$u]' "$logs/root.json" | ipfs b 30 add -Q --cid-version 1) || return 1
  refused=$(metric b 'ipcs_peer_adoptions_total{outcome="refused_digest"}') || { say "B's metrics do not answer"; return 1; }
  code=$(curl -s -o "$work/fake.out" -w '%{http_code}' -m 120 -H "x-ipcs-mirror-secret: $SECRET" "$url/$fake_root/manifests/latest")
  say "a root whose URL holds other bytes: $code"; [ "$code" = 404 ] || ok=1
  # B's store was emptied above: the only adoption tried is the manifest by its URL.
  now=$(metric b 'ipcs_peer_adoptions_total{outcome="refused_digest"}') || return 1
  say "adoptions refused for their digest: $refused -> $now"
  [ "$now" -gt "$refused" ] || { say "the bytes of $fake_cid were not refused for their digest"; ok=1; }
  [ -z "$(blobs b)" ] || { say "something was stored"; ok=1; }
  return $ok
}

check "a. A: nerdctl push ipfs://$SMALL prints a CID of a descriptor with an ipfs:// URL" check_push
check "b. pushed URLs = ipcs's CIDs on A, pinned, bytes = digest; the manifest stays pinned after GC" check_push_blobs_in_ipcs
check "c. B: nerdctl pull ipfs://CID: blobs in B's ipcs with the same CIDs, pinned, file intact" check_nerdctl_pull
check "d. B: nerdctl rmi + GC empties B's ipcs"                             check_rmi_b
check "e. B: ctr pull 127.0.0.1:<mirror>/ipfs/CID:latest, no registry: adopted by URL, verified" check_mirror_ctr
check "f. B: nerdctl pull of the same mirror reference"                     check_mirror_nerdctl
check "g. hostile roots on the mirror: 404, the wrong bytes refused for their digest, nothing stored" check_hostile_roots
check "h. A: ipcs ipfs-push of $SMALL prints nerdctl's CID"                 check_ipcs_push_small
check "i. A: ipcs ipfs-push of multi (an index, host platform) = nerdctl push ipfs://" check_ipcs_push_multi
check "j. A: ipcs ipfs-push of a Docker-media-type image = nerdctl push ipfs://" check_ipcs_push_docker
check "k. B: nerdctl pull ipfs://<ipcs's CID of multi>: blocks from A, file intact" check_pull_ipcs_pushed
check "l. ipcs ipfs-push refuses a missing platform and an unknown image, clearly" check_ipcs_push_errors
all_run=1
