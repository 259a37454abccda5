#!/usr/bin/env bash
# Metrics and health (issue 15) against real daemons: two nodes, each Kubo (peered, private
# network) + IPFS Cluster peer + ipcs with its registry mirror + containerd 2.x
# (integration/p2p-nodes.sh). A's ipcs serves metrics on a loopback TCP port, B's on a unix
# socket, and B logs in JSON (IPCS_LOG_FORMAT=json). A keeps a second copy of each blob in
# Kubo's blockstore (IPCS_FILESTORE=false), so that m4 has a cache file to lose and Kubo
# a copy to serve; B keeps each byte once (the default).
#
#   integration/metrics.sh
#
#   m1. /healthz and /readyz answer 200 on both nodes; /metrics is Prometheus text
#   m2. A pulls small from the registry: A's counters moved: Write RPCs (code Ok), bytes
#       ingested = the image's blob bytes, Info misses that fell back to the registry as
#       not_in_cluster, tag lookups and 404s of the mirror, Kubo add_stream calls, Reads served
#       from the cache (containerd's walking differ reads every layer), nothing from peers
#   m3. the registry stopped, B pulls small from peers: B's bytes served from peers cover
#       every layer, none counted as Kubo; adoptions ok > 0 and none refused; Info and Read
#       RPCs counted; nothing ingested; B's pinset gauge and age are exported
#   m4. a layer whose cache file is gone is read back (`ctr content get`) through Kubo: A's
#       bytes served from Kubo grow by exactly the layer's size, one more cache miss
#   m5. B's log is JSON, one object per line, and RPC spans carry method and digest (B logs
#       every finished RPC: IPCS_LOG=info,ipcs::server::rpc=debug)
#   m6. A's Kubo stopped: /readyz answers 503 naming Kubo, /healthz still 200
# One TAP-like line per check; the last line is `metrics: N passed, M failed`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
PULL_TIMEOUT="${METRICS_PULL_TIMEOUT:-180}"
NS=metrics

started_at=$(date +%s%N)
exec 8>&1 9>&2
work=$(mktemp -d /tmp/ipcs-metrics-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
reg_dir="$work/registry"
passed=0 failed=0 setup_done=0 all_run=0 last_log=""
# shellcheck source=integration/p2p-nodes.sh
. "$root/integration/p2p-nodes.sh"
P2P_DIR="$work" P2P_LOG="$logs/setup.log" P2P_NS="$NS" P2P_IPCS="$IPCS" P2P_IPFS="$IPFS"
P2P_CLUSTER_CTL="$CLUSTER_CTL" P2P_REFRESH=2 P2P_CONTAINERD=2 P2P_REBROADCAST=2s
p2p_network_init

A_METRICS="127.0.0.1:$(free_port)"
B_METRICS="$work/b/run/ipcs/metrics.sock"

# http NODE PATH [CURL ARGS]: GET PATH on NODE's metrics endpoint (body on stdout).
http() {
  local n=$1 p=$2; shift 2
  case $n in
    a) curl -sS -m 10 "$@" "http://$A_METRICS$p" ;;
    b) curl -sS -m 10 --unix-socket "$B_METRICS" "$@" "http://localhost$p" ;;
  esac
}
status_of() { http "$1" "$2" -o /dev/null -w '%{http_code}'; }
scrape() { http "$1" /metrics >"$logs/scrape-$1-$2.txt" && cp "$logs/scrape-$1-$2.txt" "$logs/scrape-$1.txt"; }
# m NODE SERIES: the value of SERIES (name{labels} as exported) in NODE's last scrape, 0 if absent.
m() { awk -v s="$2" '$1 == s { v = $2 } END { printf "%d\n", (v == "" ? 0 : v) }' "$logs/scrape-$1.txt"; }
ctr() { p2p_ctr "$@"; }

diagnostics() {
  show_logs "$work/a" "$work/b"
  local n
  for n in a b; do
    [ -f "$logs/scrape-$n.txt" ] && { say "--- $n: ipcs_ counters of the last scrape";
      grep -E '^ipcs_(served|ingested|peer|registry|cache|rpc_requests)' "$logs/scrape-$n.txt" | indent; }
  done
  return 0
}

stop_all() {
  local n
  for n in a b; do p2p_node_stop "$n"; done
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
}
on_exit metrics stop_all

# ---------------------------------------------------------------------------------- setup
require_bins "$IPCS" "$IPFS" "$CLUSTER_CTL"
last_log="$logs/setup.log"
"$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>>"$last_log" 8>&- 9>&-
reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
timeout 900 "$root/integration/images/build-images.sh" --only small "$IMAGES" >>"$last_log" 2>&1
timeout 300 "$root/integration/images/push-images.sh" "$IMAGES" "$reg" small >>"$last_log" 2>&1
SMALL="$reg/ipcs/small:v1"

p2p_kubo_start a
p2p_kubo_start b
p2p_kubo_peer a b
p2p_kubo_peer b a
p2p_cluster_start a
p2p_cluster_start b a
p2p_cluster_wait_peers b 2 || say "cluster peer b does not see both peers yet"
IPCS_METRICS_LISTEN="$A_METRICS" IPCS_FILESTORE=false p2p_ipcs_start a
# B also logs each finished RPC (debug level of ipcs::server::rpc), inside its span.
IPCS_METRICS_LISTEN="unix://$B_METRICS" IPCS_LOG_FORMAT=json IPCS_LOG="info,ipcs::server::rpc=debug" \
  p2p_ipcs_start b
for n in a b; do p2p_containerd_start "$n" "$reg"; done
setup_done=1
say "registry $reg; A metrics on $A_METRICS, B on unix://$B_METRICS; work dir $work"

# --------------------------------------------------------------------------------- checks
pull() {  # pull NODE LOGNAME REF
  logged "$2" ctr "$1" "$PULL_TIMEOUT" images pull --hosts-dir "$work/$1/hosts" --platform linux/amd64 "$3"
}

# The image's blobs on NODE as `digest size` (index/manifest/config/layers), from ipcs.
image_bytes() { p2p_blobs "$1" | awk '{ s += $3 } END { print s + 0 }'; }

check_health() {
  local n code
  for n in a b; do
    for p in /healthz /readyz /metrics; do
      code=$(status_of "$n" "$p") || { say "$n $p: no answer"; return 1; }
      [ "$code" = 200 ] || { say "$n $p: HTTP $code"; return 1; }
    done
    scrape "$n" 0 || return 1
    grep -q '^# TYPE ipcs_rpc_requests counter' "$logs/scrape-$n.txt" || { say "$n: no ipcs_rpc_requests family"; return 1; }
    tail -n 1 "$logs/scrape-$n.txt" | grep -qx '# EOF' || { say "$n: exposition does not end in # EOF"; return 1; }
  done
  [ "$(status_of a /nope)" = 404 ] || return 1
  say "A: $(http a /readyz)"
}

check_a_pulls_from_registry() {
  pull a pull-a-small "$SMALL" || return 1
  p2p_wait_published a b || return 1
  scrape a 1 || return 1
  local want ingested
  want=$(image_bytes a)
  ingested=$(m a ipcs_ingested_bytes_total)
  say "A: $want blob bytes stored, $ingested ingested, served cache=$(m a 'ipcs_served_bytes_total{source="cache"}')"
  [ "$ingested" -ge "$want" ] && [ "$want" -gt 0 ] || { say "ingested $ingested < stored $want"; return 1; }
  [ "$(m a 'ipcs_rpc_requests_total{method="Write",code="Ok"}')" -gt 0 ] || { say "no Write RPC counted"; return 1; }
  [ "$(m a 'ipcs_rpc_duration_seconds_count{method="Write"}')" -gt 0 ] || { say "no Write latency"; return 1; }
  [ "$(m a 'ipcs_rpc_requests_total{method="Info",code="NotFound"}')" -gt 0 ] || { say "no Info miss counted"; return 1; }
  [ "$(m a 'ipcs_registry_fallbacks_total{reason="not_in_cluster"}')" -gt 0 ] || { say "no fallback counted"; return 1; }
  [ "$(m a 'ipcs_registry_fallbacks_total{reason="mirror_tag"}')" -gt 0 ] || { say "no tag lookup counted"; return 1; }
  [ "$(m a 'ipcs_registry_fallbacks_total{reason="mirror_not_found"}')" -gt 0 ] || { say "no mirror 404 counted"; return 1; }
  [ "$(m a 'ipcs_kubo_call_duration_seconds_count{call="add_stream"}')" -gt 0 ] || { say "no Kubo add counted"; return 1; }
  [ "$(m a 'ipcs_served_bytes_total{source="cache"}')" -gt 0 ] || { say "no cache bytes served"; return 1; }
  [ "$(m a 'ipcs_served_bytes_total{source="peers"}')" = 0 ] || { say "A counted bytes from peers"; return 1; }
  [ "$(m a 'ipcs_served_bytes_total{source="kubo"}')" = 0 ] || { say "A counted bytes from Kubo"; return 1; }
  [ "$(m a ipcs_cache_bytes)" -ge "$want" ] || { say "cache_bytes below the stored bytes"; return 1; }
  [ "$(m a ipcs_open_ingests)" = 0 ] || { say "open ingests left after the pull"; return 1; }
}

check_b_pulls_from_peers() {
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1 || return 1
  ! curl -fsS -m 2 "http://$reg/v2/" >/dev/null 2>&1 || { say "registry still answers"; return 1; }
  pull b pull-b-small "$SMALL" || return 1
  scrape b 1 || return 1
  local layers peers kubo
  # Layer bytes: every blob B holds but the index, manifest and config (< 4 KiB each).
  layers=$(p2p_blobs b | awk '$3 > 4096 { s += $3 } END { print s + 0 }')
  peers=$(m b 'ipcs_served_bytes_total{source="peers"}')
  kubo=$(m b 'ipcs_served_bytes_total{source="kubo"}')
  say "B: served peers=$peers kubo=$kubo cache=$(m b 'ipcs_served_bytes_total{source="cache"}'); layer bytes $layers; adoptions ok=$(m b 'ipcs_peer_adoptions_total{outcome="ok"}')"
  [ "$layers" -gt 0 ] && [ "$peers" -ge "$layers" ] || { say "peers bytes $peers < layer bytes $layers"; return 1; }
  [ "$kubo" = 0 ] || { say "blobs from peers counted as Kubo"; return 1; }
  [ "$(m b 'ipcs_peer_adoptions_total{outcome="ok"}')" -gt 0 ] || return 1
  for o in failed refused_digest refused_size; do
    [ "$(m b "ipcs_peer_adoptions_total{outcome=\"$o\"}")" = 0 ] || { say "adoption $o counted"; return 1; }
  done
  [ "$(m b 'ipcs_rpc_requests_total{method="Info",code="Ok"}')" -gt 0 ] || return 1
  [ "$(m b 'ipcs_rpc_requests_total{method="Read",code="Ok"}')" -gt 0 ] || return 1
  [ "$(m b ipcs_ingested_bytes_total)" = 0 ] || { say "B ingested bytes it adopted"; return 1; }
  [ "$(m b ipcs_cluster_pinset_blobs)" -gt 0 ] || { say "pinset gauge empty"; return 1; }
  grep -q '^ipcs_cluster_pinset_age_seconds ' "$logs/scrape-b.txt" || { say "no pinset age"; return 1; }
  [ "$(m b ipcs_cluster_pinset_age_seconds)" -lt 30 ] || { say "pinset snapshot older than 30 s"; return 1; }
}

check_kubo_read() {
  local d size before misses_before after
  read -r d _ size < <(p2p_blobs a | sort -k3 -n | tail -n 1) || return 1
  # The cache keeps whole blobs as data_dir/blobs/<alg>/<hex>.
  rm "$work/a/data/blobs/sha256/${d#sha256:}" || return 1
  scrape a 2 || return 1
  before=$(m a 'ipcs_served_bytes_total{source="kubo"}')
  misses_before=$(m a ipcs_cache_misses_total)
  last_log="$logs/content-get.log"
  ctr a 60 content get "$d" >"$work/layer" 2>"$last_log" || return 1
  [ "$(sha256sum <"$work/layer" | cut -d' ' -f1)" = "${d#sha256:}" ] || { say "content get returned other bytes"; return 1; }
  scrape a 3 || return 1
  after=$(m a 'ipcs_served_bytes_total{source="kubo"}')
  say "A: layer $d ($size bytes) read back through Kubo: kubo bytes $before -> $after"
  [ "$((after - before))" = "$size" ] || return 1
  [ "$(m a ipcs_cache_misses_total)" -gt "$misses_before" ] || { say "no cache miss counted"; return 1; }
  [ "$(m a 'ipcs_kubo_call_duration_seconds_count{call="cat"}')" -gt 0 ] || { say "no Kubo cat counted"; return 1; }
}

check_json_logs() {
  local log="$work/b/ipcs.log" lines bad spans
  lines=$(grep -c . "$log")
  bad=$(while IFS= read -r l; do jq -e 'type == "object" and has("timestamp") and has("level")' <<<"$l" >/dev/null 2>&1 || echo x; done <"$log" | grep -c x || true)
  spans=$(jq -c 'select(.span.name == "rpc" and (.span.method | length) > 0 and (.span.digest | startswith("sha256:")))' "$log" 2>/dev/null | wc -l)
  say "B's log: $lines lines, $bad not JSON objects, $spans inside an RPC span naming a digest"
  [ "$lines" -gt 0 ] && [ "$bad" = 0 ] && [ "$spans" -gt 0 ] || return 1
  say "e.g. $(jq -c 'select(.span.name == "rpc" and .span.digest != null) | {level, message: .fields.message, span}' "$log" | head -n 1)"
  # A logs text (the default).
  ! head -n 1 "$work/a/ipcs.log" | jq -e . >/dev/null 2>&1
}

check_readyz_follows_kubo() {
  timeout 60 "$root/scripts/kubo-node.sh" stop "$work/a/kubo" >/dev/null 2>&1 || return 1
  local code body
  code=$(status_of a /readyz)
  body=$(http a /readyz)
  say "A with Kubo stopped: /readyz $code: $body"
  [ "$code" = 503 ] && grep -qi kubo <<<"$body" || return 1
  [ "$(status_of a /healthz)" = 200 ]
}

check "m1. /healthz, /readyz and /metrics answer on loopback TCP (A) and a unix socket (B)" check_health
check "m2. A pulls from the registry: Writes, ingested bytes, fallbacks, Kubo adds and cache reads counted" check_a_pulls_from_registry
check "m3. registry stopped, B pulls from peers: layer bytes counted as peers, none as Kubo; adoptions ok" check_b_pulls_from_peers
check "m4. a layer missing from A's cache is served through Kubo and counted as Kubo" check_kubo_read
check "m5. B logs JSON objects, RPC spans carry method and digest" check_json_logs
check "m6. A's Kubo stopped: /readyz 503 naming Kubo, /healthz 200" check_readyz_follows_kubo
all_run=1
