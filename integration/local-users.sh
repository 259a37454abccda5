#!/usr/bin/env bash
# Local users are not trusted (issue 19): one real node (Kubo, IPFS Cluster peer, ipcs with
# its registry mirror, containerd 2.x; integration/p2p-nodes.sh) laid out with the modes
# the plugin-config units give a deployment, and an unprivileged account (`nobody`) trying
# what would let it read or change what the node holds:
#
#   1. read a blob and a manifest through the mirror (no header, a wrong header) -> 401
#      and no body;
#   2. Kubo's pin/rm, add and config -> EACCES on the API socket; the pin, the blockstore
#      and the config are unchanged;
#   3. the cluster REST API's pin add and pin rm -> EACCES; the pinset is unchanged;
#   4. connect to the ipcs socket -> EACCES; read the data dir (cache, mirror secret) or
#      Kubo's repo -> EACCES.
# Then, as root, the same node pulls again with the registry stopped (a second namespace
# holds the blobs), so through the mirror only: containerd 2.x sends the hosts.toml header (integration/p2p.sh shows the
# same for 1.6); and `ipcs fsck --verify` of the stopped store is clean.
#
# The refusals must come from the deployment's own modes, not from the test's mktemp
# directory (0700): the work dir and node dir are made 0755 (like / and /run), the socket
# directories 0750 like RuntimeDirectoryMode=, and a positive control proves `nobody` can
# traverse to them and reach the loopback mirror.
#
#   integration/local-users.sh        ends with one line `local-users: N passed, M failed`
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
NS=local-users
USER_=nobody

exec 8>&1 9>&2
work=$(mktemp -d /tmp/ipcs-lu-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
reg_dir="$work/registry"
passed=0 failed=0 setup_done=0 all_run=0 last_log="" started_at=$(date +%s%N)
# shellcheck source=integration/p2p-nodes.sh
. "$root/integration/p2p-nodes.sh"
P2P_DIR="$work" P2P_LOG="$logs/setup.log" P2P_NS="$NS" P2P_IPCS="$IPCS" P2P_IPFS="$IPFS"
P2P_CLUSTER_CTL="$CLUSTER_CTL" P2P_CONTAINERD="${LOCAL_USERS_CONTAINERD:-2}"
p2p_network_init
node="$work/a"

diagnostics() {
  if [ -n "$last_log" ] && [ -s "$last_log" ]; then
    say "--- $(basename "$last_log") (last 15 lines)"; tail -n 15 "$last_log" | indent
  fi
  [ -f "$node/ipcs.log" ] && { say "--- ipcs log (last 10 lines)"; tail -n 10 "$node/ipcs.log" | indent; }
  return 0
}

cleanup() {
  local rc=$?
  set +e
  exec >&8 2>&9
  trap - EXIT INT TERM
  p2p_node_stop a
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
  finish_run local-users "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# As the unprivileged account, from a directory it may enter.
as_user() { (cd / && runuser -u "$USER_" -- "$@"); }
# as_user_connect PATH: connects to a unix socket as the account; prints CONNECTED or the
# errno name (EACCES, ENOENT, ...).
as_user_connect() {
  as_user python3 -c '
import errno, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); print("CONNECTED")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))' "$1"
}
# as_user_http NAME CURL_ARGS...: one request as the account; prints "HTTP_CODE BODY_BYTES"
# (000 when no connection was made) and keeps curl's stderr in $logs/NAME.log.
as_user_http() {
  local name=$1; shift
  last_log="$logs/$name.log"
  as_user curl -sS -m 20 -o /dev/null -w '%{http_code} %{size_download}' "$@" 2>"$last_log" || true
}
# expect_refused_socket WHAT PATH: the account cannot open PATH (a socket), EACCES.
expect_refused_socket() {
  local got; got=$(as_user_connect "$2")
  say "$1: connect as $USER_ -> $got"
  [ "$got" = EACCES ]
}

# ---------------------------------------------------------------------------------- setup
require_bins "$IPCS" "$IPFS" "$CLUSTER_CTL"
id "$USER_" >/dev/null
last_log="$logs/setup.log"
"$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>>"$last_log" 8>&- 9>&-
reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
timeout 1800 "$root/integration/images/build-images.sh" --only small "$IMAGES" >>"$last_log" 2>&1
timeout 900 "$root/integration/images/push-images.sh" "$IMAGES" "$reg" small >>"$last_log" 2>&1
SMALL="$reg/ipcs/small:v1"
# Like / and /var/lib: any account may traverse down to the node's directories.
chmod 0755 "$work"; mkdir -p "$node"; chmod 0755 "$node"
p2p_node_start a "$reg"
kubo_sock_path=$(kubo_sock "${P2P_API[a]}")
cluster_sock="${P2P_REST[a]#unix://}"
mirror="http://127.0.0.1:${P2P_MIRROR[a]}"
secret=$(cat "$node/data/mirror-secret")
setup_done=1
say "node up in $work: kubo ${P2P_API[a]}, cluster ${P2P_REST[a]}, mirror $mirror"

ctr() { p2p_ctr a "$@"; }
pull() { logged "$1" ctr 300 images pull --hosts-dir "$node/hosts" --platform linux/amd64 "$SMALL"; }

# --------------------------------------------------------------------------------- checks
check_root_pulls_through_mirror() {
  local off; off=$(wc -l <"$node/ipcs.log")
  pull pull-root || return 1
  # The pull went through the mirror: containerd sent the hosts.toml header.
  [ -n "$(p2p_blobs a)" ] || { say "no blob in ipcs after the pull"; return 1; }
  local got; got=$(curl -s -o /dev/null -w '%{http_code}' -H "x-ipcs-mirror-secret: $secret" \
                     "$mirror/v2/ipcs/small/manifests/v1?ns=$reg")
  say "mirror with the secret, as root: HTTP $got"
  [ "$got" = 200 ]
}

manifest=""; layer=""; layer_cid=""
find_digests() {
  manifest=$(ctr 60 images ls | awk -v r="$SMALL" '$1 == r { print $3 }')
  layer=$(p2p_blobs a | awk '$3 > 1000 { print $1 }' | head -n 1)
  layer_cid=$(p2p_blobs a | awk -v d="$layer" '$1 == d { print $2 }')
  say "manifest $manifest, layer $layer ($layer_cid)"
  [ -n "$manifest" ] && [ -n "$layer" ] && [ -n "$layer_cid" ]
}

check_positive_control() {
  # nobody traverses to every socket directory and reads a file beside them, and reaches
  # the mirror's TCP port: what refuses it below is the socket directories' 0750, the
  # sockets' modes and the mirror's secret, not this test's work dir.
  local d f
  for d in "$work" "$node" "$node/run"; do
    f="$d/canary-$$"; echo ok >"$f"; chmod 0644 "$f"
    as_user cat "$f" >/dev/null 2>&1 || { say "$USER_ cannot read $f"; return 1; }
    rm -f "$f"
  done
  stat -c '%a %U:%G %n' "$node/run" "$(dirname "$kubo_sock_path")" "$kubo_sock_path" \
    "$(dirname "$cluster_sock")" "$cluster_sock" "$node/ipcs.sock" "$node/data" | indent
  local got; got=$(as_user_http control-v2 "$mirror/v2/")
  say "$USER_ reaches the mirror over TCP: HTTP ${got% *}"
  [ "${got% *}" = 401 ]
}

check_mirror_blob_refused() {
  local got
  got=$(as_user_http mirror-blob "$mirror/v2/ipcs/small/blobs/$layer?ns=$reg")
  say "blob, no header: HTTP ${got% *}, ${got#* } bytes"
  [ "$got" = "401 0" ] || return 1
  got=$(as_user_http mirror-blob-wrong -H "x-ipcs-mirror-secret: ${secret%?}0" \
          "$mirror/v2/ipcs/small/blobs/$layer?ns=$reg")
  say "blob, wrong secret: HTTP ${got% *}, ${got#* } bytes"
  [ "$got" = "401 0" ] || return 1
  # The secret is 0600 in a 0700 data dir.
  if as_user cat "$node/data/mirror-secret" >/dev/null 2>&1; then say "$USER_ read the secret"; return 1; fi
}

check_mirror_manifest_refused() {
  local got
  for ref in "$manifest" v1; do
    got=$(as_user_http mirror-manifest -X GET "$mirror/v2/ipcs/small/manifests/$ref?ns=$reg")
    say "manifest $ref, no header: HTTP ${got% *}, ${got#* } bytes"
    [ "$got" = "401 0" ] || return 1
  done
}

pinned() { kubo_rpc "${P2P_API[a]}" "pin/ls?arg=$1&type=recursive" >/dev/null 2>&1; }

check_kubo_pin_rm_refused() {
  pinned "$layer_cid" || { say "layer not pinned before the attempt"; return 1; }
  local got; got=$(as_user_http kubo-pin-rm --unix-socket "$kubo_sock_path" -X POST \
                     "http://localhost/api/v0/pin/rm?arg=$layer_cid")
  last_log="$logs/kubo-pin-rm.log"
  say "pin/rm as $USER_: HTTP ${got% *} (curl: $(tr -d '\n' <"$last_log"))"
  [ "${got% *}" = 000 ] || return 1
  expect_refused_socket "Kubo API socket" "$kubo_sock_path" || return 1
  pinned "$layer_cid" || { say "the layer is no longer pinned"; return 1; }
  say "layer still pinned"
}

check_kubo_add_refused() {
  local f="$work/lu-add.txt" cid got
  echo "local user content $$ $(date +%s%N)" >"$f"; chmod 0644 "$f"
  cid=$(p2p_ipfs a 30 add -Q --only-hash "$f") || return 1
  got=$(as_user_http kubo-add --unix-socket "$kubo_sock_path" -X POST -F "file=@$f" \
          "http://localhost/api/v0/add?pin=true")
  say "add as $USER_: HTTP ${got% *}"
  [ "${got% *}" = 000 ] || return 1
  if p2p_ipfs a 30 block stat --offline "$cid" >/dev/null 2>&1; then say "$cid is in the blockstore"; return 1; fi
  say "$cid not in the blockstore"
}

check_kubo_config_refused() {
  local before after got
  before=$(p2p_ipfs a 30 config show | sha256sum)
  got=$(as_user_http kubo-config --unix-socket "$kubo_sock_path" -X POST \
          'http://localhost/api/v0/config?arg=Addresses.Gateway&arg=%5B%22%2Fip4%2F0.0.0.0%2Ftcp%2F8080%22%5D&json=true')
  say "config as $USER_: HTTP ${got% *}"
  [ "${got% *}" = 000 ] || return 1
  after=$(p2p_ipfs a 30 config show | sha256sum)
  [ "$before" = "$after" ] || { say "Kubo's config changed"; return 1; }
  # Nor can the account read or change it in the repo itself.
  if as_user cat "$node/kubo/config" >/dev/null 2>&1; then say "$USER_ read Kubo's config file"; return 1; fi
  say "config unchanged (Addresses.Gateway $(p2p_ipfs a 30 config Addresses.Gateway | tr -d ' \n'))"
}

check_cluster_refused() {
  local before after got
  before=$(p2p_cctl a pin ls | sort)
  [ -n "$before" ] || { say "empty cluster pinset before the attempt"; return 1; }
  got=$(as_user_http cluster-pin-add --unix-socket "$cluster_sock" -X POST \
          "http://localhost/pins/$layer_cid?name=evil")
  say "cluster pin add as $USER_: HTTP ${got% *}"
  [ "${got% *}" = 000 ] || return 1
  got=$(as_user_http cluster-pin-rm --unix-socket "$cluster_sock" -X DELETE "http://localhost/pins/$layer_cid")
  say "cluster pin rm as $USER_: HTTP ${got% *}"
  [ "${got% *}" = 000 ] || return 1
  last_log="$logs/cluster-ctl.log"
  if as_user "$CLUSTER_CTL" --host "/unix$cluster_sock" --timeout 5 pin rm "$layer_cid" >"$last_log" 2>&1; then
    say "ipfs-cluster-ctl pin rm as $USER_ succeeded"; return 1
  fi
  expect_refused_socket "cluster REST socket" "$cluster_sock" || return 1
  after=$(p2p_cctl a pin ls | sort)
  [ "$before" = "$after" ] || { say "the cluster pinset changed"; return 1; }
  say "cluster pinset unchanged ($(wc -l <<<"$after") pins)"
}

check_ipcs_socket_refused() {
  expect_refused_socket "ipcs socket" "$node/ipcs.sock" || return 1
  last_log="$logs/ipcs-blobs-as-user.log"
  if as_user "$IPCS" blobs --socket "$node/ipcs.sock" >"$last_log" 2>&1; then say "ipcs blobs worked as $USER_"; return 1; fi
  # Whole blobs sit in the stored files, the cache and Kubo's blockstore: none opens.
  if as_user ls "$node/data/stored" >/dev/null 2>&1; then say "$USER_ lists the stored blobs"; return 1; fi
  if as_user ls "$node/data/blobs" >/dev/null 2>&1; then say "$USER_ lists the blob cache"; return 1; fi
  if as_user ls "$node/kubo/blocks" >/dev/null 2>&1; then say "$USER_ lists Kubo's blocks"; return 1; fi
}

check_root_still_works() {
  # A second namespace keeps the blobs in ipcs: kept once (the default), a blob containerd
  # deletes is gone from this node, and with one node and the registry down nothing else
  # has it. The pull below then resolves the tag through the mirror only.
  P2P_NS="$NS-keep" pull pull-root-keep || return 1
  logged rm-small ctr 120 images rm --sync "$SMALL" || return 1
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
  if curl -fsS -m 2 "http://$reg/v2/" >/dev/null 2>&1; then say "the registry still answers"; return 1; fi
  pull pull-root-again || return 1
  say "pulled with the registry stopped: through the mirror, with the header"
  local got; got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "x-ipcs-mirror-secret: $secret" \
                     "$mirror/v2/ipcs/small/blobs/$layer")
  say "root, blob through the mirror with the secret: HTTP ${got% *}, ${got#* } bytes"
  [ "${got% *}" = 200 ] || return 1
  kubo_rpc "${P2P_API[a]}" version >/dev/null || return 1
  p2p_cctl a id >/dev/null || return 1
}

check_fsck() {
  # fsck runs on a stopped store: stop ipcs (containerd first, it holds the socket).
  timeout 120 "$root/integration/containerd-node.sh" stop "$node/containerd" >/dev/null 2>&1 || true
  stop_pid "${P2P_PID[a]}" TERM 10
  last_log="$logs/fsck.log"
  "$IPCS" fsck --verify --data-dir "$node/data" --kubo-api "${P2P_API[a]}" >"$last_log" 2>&1 || return 1
  say "$(grep '^fsck:' "$last_log")"
  grep -q '^fsck:.* found=0' "$last_log"
}

check "0. root pulls small through the mirror (containerd sends the hosts.toml header)" check_root_pulls_through_mirror
check "0b. the pulled image's manifest and a layer are known"                          find_digests
check "0c. control: $USER_ traverses to every socket directory and reaches the mirror" check_positive_control
check "1a. $USER_ reading a blob through the mirror: 401, no bytes"                    check_mirror_blob_refused
check "1b. $USER_ reading a manifest through the mirror: 401, no bytes"                check_mirror_manifest_refused
check "2a. $USER_ calling Kubo's pin/rm: EACCES, the layer stays pinned"               check_kubo_pin_rm_refused
check "2b. $USER_ calling Kubo's add: EACCES, nothing stored"                          check_kubo_add_refused
check "2c. $USER_ calling Kubo's config: EACCES, config unchanged"                     check_kubo_config_refused
check "3. $USER_ calling the cluster's pin add / pin rm: EACCES, pinset unchanged"     check_cluster_refused
check "4. $USER_ connecting to the ipcs socket (or its data, Kubo's repo): EACCES"     check_ipcs_socket_refused
check "5. root: registry stopped, pull again through the mirror; Kubo, cluster answer" check_root_still_works
check "6. root: ipcs fsck --verify of the stopped store is clean"                      check_fsck
all_run=1
