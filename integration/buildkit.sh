#!/usr/bin/env bash
# BuildKit end-to-end: buildkitd's containerd worker building into containerd 2.x whose
# content store is ipcs, every blob in Kubo.
#
#   integration/buildkit.sh
#
# Starts, in a fresh work dir under /tmp: a registry on 127.0.0.1 holding the test image
# small (integration/images), an offline Kubo, `ipcs serve`, containerd 2.x with ipcs as its
# content store (integration/containerd-node.sh), and buildkitd with only the containerd
# worker and its gRPC on a unix socket (no OCI worker, no TCP, no frontend image: builds use
# the built-in `dockerfile.v0` frontend). Then:
#   a. a build FROM scratch with COPY, exported as an image into containerd
#   b. its manifest, config and layer are in `ipcs blobs`, pinned in Kubo, `ipfs cat CID`
#      hashes to the digest, and the layer (read back from IPFS) holds the copied bytes
#   c. a multi-stage build whose stages start FROM small pushed to the local registry
#      (a RUN step through containerd's runc shim, then COPY --from between stages)
#   d. every blob of that image (small's layers included) in ipcs, pinned, bytes = digest,
#      and the new layer holds what the RUN and COPY steps made
#   e. the same build again: every step is CACHED and no blob is added to ipcs
#   f. --output type=image,push=true to the local registry with an inline cache export:
#      the registry's manifest digest is the one in containerd/ipcs and the config carries
#      the inline cache (moby.buildkit.cache.v0)
#   g. the daemons hold only loopback sockets (buildkitd: only connections to the registry)
#   h. buildctl prune --all, removal of every image and a containerd GC pass: the worker's
#      namespace holds no content, no recorded CID is pinned, and ipcs holds exactly the
#      blobs buildkitd's build history (namespace buildkit_history) still references
#   i. those history leases removed and a GC pass: ipcs holds nothing, Kubo pins nothing
# One TAP-like line per check; the last line is `buildkit: N passed, M failed`.
# Exit status 0 only if every check passed. The work dir is kept after a failure (or with
# KEEP_WORK=1). Env: IPCS_IMAGES, IPCS_TOOLS, IPCS_BIN, BUILDKIT_TIMEOUT (default 300 s).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
BK_BIN="$TOOLS/buildkit-$BUILDKIT_VERSION/bin"
BUILD_TIMEOUT="${BUILDKIT_TIMEOUT:-300}"
NS=buildkit   # the containerd namespace of buildkitd's worker

started_at=$(date +%s%N)
exec 8>&1 9>&2
work=$(mktemp -d /tmp/ipcs-buildkit-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
sock="$work/ipcs/ipcs.sock"
ipcs_log="$work/ipcs.log"
kubo_dir="$work/kubo" reg_dir="$work/registry" cd_dir="$work/containerd" bk_dir="$work/buildkit"
bk_sock="$bk_dir/buildkitd.sock"
ctr_bin="$cd_dir/ctr"
passed=0 failed=0 setup_done=0 all_run=0
ipcs_pid="" bk_pid="" multiaddr="" reg="" last_log=""

ctr()      { local t="$1"; shift; timeout -k 10 "$t" "$ctr_bin" -n "$NS" "$@"; }
ipfs()     { local t="$1"; shift; timeout -k 5 "$t" "$IPFS" --api "$multiaddr" "$@"; }
blobs()    { timeout -k 5 60 "$IPCS" blobs --settle 120 --socket "$sock"; }
buildctl() { local t="$1"; shift; timeout -k 10 "$t" "$BK_BIN/buildctl" --addr "unix://$bk_sock" "$@"; }

diagnostics() {
  if [ -n "$last_log" ] && [ -s "$last_log" ]; then
    say "--- $(basename "$last_log") (last 20 lines)"; tail -n 20 "$last_log" | indent
  fi
  say "--- ipcs log (last 15 lines)"; tail -n 15 "$ipcs_log" 2>/dev/null | indent || true
  say "--- buildkitd log (last 10 warnings/errors)"
  grep -E 'level=(warn|error|fatal)' "$bk_dir/buildkitd.log" 2>/dev/null | tail -n 10 | indent || true
  say "--- containerd log (last 10 warnings/errors)"
  grep -E 'level=(warn|error|fatal)' "$cd_dir/containerd.log" 2>/dev/null | tail -n 10 | indent || true
}


cleanup() {
  local rc=$?
  set +e
  exec >&8 2>&9
  trap - EXIT INT TERM
  stop_pid "$bk_pid"
  # buildkitd's containerd worker leaves no mounts of its own; its snapshots are containerd's.
  "$root/integration/containerd-node.sh" stop "$cd_dir" >/dev/null 2>&1
  stop_pid "$ipcs_pid"
  "$root/scripts/kubo-node.sh" stop "$kubo_dir" >/dev/null 2>&1
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
  finish_run "buildkit" "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------- setup
say "BuildKit $BUILDKIT_VERSION on containerd $CONTAINERD2_VERSION with ipcs, work dir $work"
for b in "$IPCS" "$IPFS" "$BK_BIN/buildkitd" "$BK_BIN/buildctl"; do
  [ -x "$b" ] || { echo "missing $b (cargo build --release; scripts/install-*.sh)" >&2; exit 1; }
done

last_log="$logs/setup-registry.log"
"$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>"$last_log" 8>&- 9>&-
reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
last_log="$logs/setup-build-images.log"
timeout 1800 "$root/integration/images/build-images.sh" --only small "$IMAGES" >"$last_log" 2>&1
last_log="$logs/setup-push.log"
timeout 900 "$root/integration/images/push-images.sh" "$IMAGES" "$reg" small >"$last_log" 2>&1
BASE="$reg/ipcs/small:v1"
say "registry $reg with $BASE"

last_log="$logs/setup-kubo.log"
api=$(timeout 120 "$root/scripts/kubo-node.sh" start "$kubo_dir" --offline \
        --swarm "$(free_port)" 2>"$last_log" 8>&- 9>&-)
[[ "$api" =~ ^unix:///.+$ ]] || { echo "unexpected Kubo API address '$api'" >&2; exit 1; }
multiaddr=$(kubo_maddr "$api")

last_log="$ipcs_log"
start_ipcs --bin "$IPCS" --socket "$sock" --data "$work/ipcs/data" --log "$ipcs_log" --kubo "$api"
ipcs_pid=$IPCS_STARTED_PID

last_log="$logs/setup-containerd.log"
# RUN steps: containerd starts the shim it finds first on PATH; Debian's 1.6 shim in
# /usr/bin cannot read 2.x's task options ("type with url ...: not found"), so ours first.
PATH="$TOOLS/containerd-$CONTAINERD2_VERSION/bin:$PATH" \
timeout 120 "$root/integration/containerd-node.sh" start "$cd_dir" --version 2 \
  --content-socket "$sock" >/dev/null 2>"$last_log" 8>&- 9>&-

# buildkitd: containerd worker only, gRPC and the OpenTelemetry socket in the work dir, no
# debug listener, plain HTTP for the test registry only. history/cache in $bk_dir/root.
mkdir -p "$bk_dir"
cat >"$bk_dir/buildkitd.toml" <<EOF
root = "$bk_dir/root"
[grpc]
  address = ["unix://$bk_sock"]
[otel]
  socketPath = "$bk_dir/otel-grpc.sock"
[worker.oci]
  enabled = false
[worker.containerd]
  enabled = true
  address = "$cd_dir/containerd.sock"
  namespace = "$NS"
  snapshotter = "overlayfs"
  gc = false
  [worker.containerd.network]
    mode = "host"
[registry."$reg"]
  http = true
EOF
last_log="$bk_dir/buildkitd.log"
setsid "$BK_BIN/buildkitd" --config "$bk_dir/buildkitd.toml" --debug \
  --oci-worker=false --containerd-worker=true --containerd-worker-addr "$cd_dir/containerd.sock" \
  </dev/null >"$bk_dir/buildkitd.log" 2>&1 8>&- 9>&- &
bk_pid=$!
for _ in $(seq 1 300); do
  buildctl 5 debug workers >/dev/null 2>&1 && break
  kill -0 "$bk_pid" 2>/dev/null || { echo "buildkitd exited" >&2; exit 1; }
  sleep 0.1
done
buildctl 10 debug workers >"$logs/workers.txt" 2>&1
grep -q . "$logs/workers.txt"
say "buildkitd $("$BK_BIN/buildkitd" --version | awk '{ print $3 }'), workers: $(awk 'NR > 1 { print $2 }' "$logs/workers.txt" | paste -sd,)"
setup_done=1
say "setup done in $(secs $(( $(now_ms) - started_at / 1000000 ))) s"

# ------------------------------------------------------------------------------- helpers
# build NAME CONTEXTDIR OUTPUT [ARGS...]: buildctl build with the built-in dockerfile
# frontend, plain progress into $logs/NAME.log.
build() {
  local name="$1" ctx="$2" out="$3"; shift 3
  logged "$name" buildctl "$BUILD_TIMEOUT" build --progress=plain --frontend dockerfile.v0 \
    --local context="$ctx" --local dockerfile="$ctx" --output "$out" "$@"
}

# image_blobs IMAGE: prints the manifest digest, the config digest and every layer digest
# of IMAGE in containerd (one per line, manifest first).
image_blobs() {
  local m
  m=$(ctr 30 images ls | awk -v n="$1" '$1 == n { print $3 }')
  [ -n "$m" ] || { say "image $1 not in containerd"; return 1; }
  echo "$m"
  ctr 30 content get "$m" | jq -r '.config.digest, .layers[].digest'
}

# in_ipcs DIGEST...: every digest is in `ipcs blobs`, its CID pinned (recursive) in Kubo and
# `ipfs cat CID | sha256sum` is the digest. Appends "DIGEST CID" lines to $work/cids.txt.
in_ipcs() {
  local ok=0 d cid got
  blobs >"$work/blobs.txt" || return 1
  ipfs 60 pin ls --type=recursive -q >"$work/pins.txt" || return 1
  for d in "$@"; do
    cid=$(awk -v d="$d" '$1 == d { print $2; exit }' "$work/blobs.txt")
    if [ -z "$cid" ]; then say "$d: not in ipcs blobs"; ok=1; continue; fi
    echo "$d $cid" >>"$work/cids.txt"
    grep -qxF "$cid" "$work/pins.txt" || { say "$d: $cid is not pinned"; ok=1; }
    got=$(ipfs 120 cat --progress=false "$cid" </dev/null | sha256sum | cut -d' ' -f1)
    [ "sha256:$got" = "$d" ] || { say "$d: ipfs cat $cid gives sha256:$got"; ok=1; }
  done
  say "$# blobs: in ipcs blobs, CID pinned, ipfs cat sha256 = digest"
  return $ok
}
cid_of() { blobs | awk -v d="$1" '$1 == d { print $2; exit }'; }

# --------------------------------------------------------------------------------- checks
SCRATCH_IMG=ipcs.test/buildkit/scratch:v1
MULTI_IMG=ipcs.test/buildkit/multi:v1
PUSH_IMG="$reg/ipcs/built:v1"
ctx1="$work/ctx-scratch" ctx2="$work/ctx-multi"
mkdir -p "$ctx1" "$ctx2"
head -c 300000 /dev/urandom >"$ctx1/payload.bin"
printf 'FROM scratch\nCOPY payload.bin /payload.bin\n' >"$ctx1/Dockerfile"
head -c 200000 /dev/urandom >"$ctx2/data.bin"
cat >"$ctx2/Dockerfile" <<EOF
FROM $BASE AS stage
RUN cat /etc/ipcs-test.txt > /from-run.txt && wc -c < /etc/ipcs-test.txt >> /from-run.txt
COPY data.bin /data.bin
FROM $BASE
COPY --from=stage /from-run.txt /data.bin /out/
EOF
WANT_RUN=$(printf 'ipcs test image: small v1\n26\n')

check_scratch_build() { build scratch "$ctx1" "type=image,name=$SCRATCH_IMG" || return 1; }

check_scratch_in_ipcs() {
  local ds layer
  mapfile -t ds < <(image_blobs "$SCRATCH_IMG") || return 1
  [ "${#ds[@]}" = 3 ] || { say "want manifest, config, 1 layer; got ${ds[*]}"; return 1; }
  in_ipcs "${ds[@]}" || return 1
  layer=$(cid_of "${ds[2]}")
  ipfs 60 cat --progress=false "$layer" | tar -xzOf - payload.bin >"$work/payload.out" || return 1
  cmp "$ctx1/payload.bin" "$work/payload.out" || { say "payload.bin from the layer in IPFS differs"; return 1; }
  say "layer ${ds[2]} = $layer holds payload.bin (300000 bytes, same)"
}

check_multi_build() { build multi "$ctx2" "type=image,name=$MULTI_IMG" || return 1; }

check_multi_in_ipcs() {
  local ds base_layers n last
  mapfile -t ds < <(image_blobs "$MULTI_IMG") || return 1
  base_layers=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
      "http://$reg/v2/ipcs/small/manifests/v1" | jq -r '.layers[].digest' | paste -sd' ')
  n=${#ds[@]}
  [ "$n" = 5 ] || { say "want manifest, config, 2 base + 1 new layer; got ${ds[*]}"; return 1; }
  [ "${ds[2]} ${ds[3]}" = "$base_layers" ] || { say "base layers ${ds[2]} ${ds[3]}, small has '$base_layers'"; return 1; }
  in_ipcs "${ds[@]}" || return 1
  last=$(cid_of "${ds[4]}")
  ipfs 60 cat --progress=false "$last" | tar -xzf - -C "$work" out/from-run.txt out/data.bin || return 1
  [ "$(cat "$work/out/from-run.txt")" = "$WANT_RUN" ] || { say "out/from-run.txt: $(od -c "$work/out/from-run.txt" | head -3)"; return 1; }
  cmp "$ctx2/data.bin" "$work/out/data.bin" || { say "out/data.bin differs"; return 1; }
  say "new layer ${ds[4]} = $last: the RUN step's output and data.bin, from IPFS"
}

check_cache_hit() {
  local before after steps cached
  # Only the worker's namespace: every build also records its history (a trace and
  # provenance blob) in the namespace buildkit_history, cached or not.
  before=$(ctr 30 content ls -q | sort)
  build multi-again "$ctx2" "type=image,name=$MULTI_IMG" || return 1
  after=$(ctr 30 content ls -q | sort)
  # Plain progress: "#N [stage 2/3] RUN ..." then "#N CACHED" for each step taken from cache.
  steps=$(grep -cE '^#[0-9]+ \[(stage|stage-1) [0-9]+/[0-9]+\] (RUN|COPY)' "$last_log")
  cached=$(grep -cE '^#[0-9]+ CACHED$' "$last_log")
  say "$steps RUN/COPY steps, $cached CACHED lines; blobs of namespace $NS: $(wc -l <<<"$before") -> $(wc -l <<<"$after")"
  [ "$steps" = 3 ] && [ "$cached" = 3 ] || return 1
  [ "$after" = "$before" ] || { say "the cached build added blobs: $(comm -13 <(echo "$before") <(echo "$after") | paste -sd' ')"; return 1; }
}

check_push_inline_cache() {
  local m reg_m cfg
  build push "$ctx2" "type=image,name=$PUSH_IMG,push=true,registry.insecure=true" \
    --export-cache type=inline || return 1
  m=$(ctr 30 images ls | awk -v n="$PUSH_IMG" '$1 == n { print $3 }')
  reg_m=$(curl -fsS -o /dev/null -D - -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
      -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "http://$reg/v2/ipcs/built/manifests/v1" | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }')
  say "containerd $m, registry $reg_m"
  [ -n "$m" ] && [ "$m" = "$reg_m" ] || return 1
  in_ipcs "$m" || return 1
  cfg=$(ctr 30 content get "$m" | jq -r .config.digest)
  curl -fsS "http://$reg/v2/ipcs/built/blobs/$cfg" >"$work/pushed-config.json" || return 1
  jq -e '."moby.buildkit.cache.v0" | length > 0' "$work/pushed-config.json" >/dev/null \
    || { say "no moby.buildkit.cache.v0 in the pushed config"; return 1; }
  [ "$(ctr 30 content get "$cfg" | sha256sum | cut -d' ' -f1)" = "${cfg#sha256:}" ] || return 1
  say "pushed config $cfg carries the inline cache; the same bytes are in ipcs"
}

# gc_pass: creating and synchronously removing a lease runs containerd's collector.
gc_pass() {
  local lease
  lease=$(ctr 60 leases create) || return 1
  logged gc-lease ctr 300 leases rm --sync "$lease"
}

# not_pinned [KEPT]: no CID recorded by in_ipcs is still a recursive pin in Kubo, except
# those whose digest is listed in the file KEPT (still referenced by containerd).
not_pinned() {
  local ok=0 d cid kept="${1:-/dev/null}" n=0
  ipfs 60 pin ls --type=recursive -q >"$work/pins-after.txt" || return 1
  while read -r d cid; do
    grep -qxF "$d" "$kept" && continue
    n=$((n + 1))
    if grep -qxF "$cid" "$work/pins-after.txt"; then say "$d: $cid still pinned"; ok=1; fi
  done < <(sort -u "$work/cids.txt")
  say "$n recorded CIDs that must be unpinned, $(wc -l <"$work/pins-after.txt") recursive pins in Kubo"
  return $ok
}

check_prune_unpins() {
  local ok=0 i content left hist
  logged prune buildctl 300 prune --all || return 1
  for i in $(ctr 60 images ls -q); do
    logged "rm-image" ctr 300 images rm --sync "$i" || { say "ctr images rm $i failed"; ok=1; }
  done
  gc_pass || return 1
  last_log=""
  content=$(ctr 60 content ls -q) || return 1
  if [ -n "$content" ]; then
    say "namespace $NS still has $(echo "$content" | wc -l) blobs; leases:"; ctr 30 leases ls 2>&1 | indent; ok=1
  fi
  # What ipcs still holds must be exactly what buildkitd's build history references (its
  # own namespace, one lease per build record, which also names each result's manifest and
  # config): containerd's GC released everything else, and ipcs unpinned it.
  left=$(blobs | awk '{ print $1 }' | sort) || return 1
  timeout 60 "$ctr_bin" -n buildkit_history content ls -q | sort >"$work/history.txt" || return 1
  say "ipcs holds $(grep -c . <<<"$left") blobs, buildkit_history references $(grep -c . "$work/history.txt")"
  [ "$left" = "$(cat "$work/history.txt")" ] || { say "ipcs blobs differ from the history's content"; ok=1; }
  not_pinned "$work/history.txt" || ok=1
  return $ok
}

# Build history is buildkitd's own record (a lease per build in the namespace
# buildkit_history); removing its leases, as buildkitd does when a record expires, must
# leave ipcs and Kubo without a single blob pin.
check_history_unpins() {
  local l left pins
  for l in $(timeout 60 "$ctr_bin" -n buildkit_history leases ls -q); do
    timeout 120 "$ctr_bin" -n buildkit_history leases rm --sync "$l" >>"$logs/history-rm.log" 2>&1 || return 1
  done
  gc_pass || return 1
  left=$(blobs) || return 1
  # ipcs names every blob pin ipcs:<store id>; Kubo's own pins (the empty directory) stay.
  pins=$(ipfs 60 pin ls --type=recursive --names | awk '$3 ~ /^ipcs:/') || return 1
  say "ipcs blobs: $(grep -c . <<<"$left"), Kubo pins named ipcs:*: $(grep -c . <<<"$pins")"
  not_pinned || return 1
  [ -z "$left" ] && [ -z "$pins" ]
}

check_loopback_only() {
  local pids=() f bad
  for f in "$kubo_dir/ipcs-kubo.pid" "$reg_dir/registry.pid" "$cd_dir/containerd.pid"; do
    [ -f "$f" ] && pids+=("$(cat "$f")")
  done
  pids+=("$ipcs_pid" "$bk_pid")
  ss -Htunap >"$work/ss.txt" 2>&1 || return 1
  bad=$(awk -v pids=" ${pids[*]} " '
    match($0, /pid=[0-9]+/) {
      p = substr($0, RSTART + 4, RLENGTH - 4)
      if (index(pids, " " p " ") == 0) next
      if ($5 !~ /^(127\.|\[::1\]|\[::ffff:127\.)/ || $6 !~ /^(127\.|\[::1\]|\[::ffff:127\.|\*|0\.0\.0\.0:\*|\[::\]:\*)/) print
    }' "$work/ss.txt")
  # buildkitd's only TCP peer is the registry (base image, push); its API is a unix socket.
  if awk -v p="pid=$bk_pid," -v r="$reg" 'index($0, p) && $6 != r' "$work/ss.txt" | grep -q .; then
    say "buildkitd talks to something other than the registry $reg:"; grep "pid=$bk_pid," "$work/ss.txt" | indent; return 1
  fi
  [ -z "$bad" ] || { say "non-loopback sockets:"; echo "$bad" | indent; return 1; }
}

check "a. buildctl build FROM scratch with COPY, image exported into containerd" check_scratch_build
check "b. its manifest, config and layer in ipcs, pinned, bytes = digest; the layer holds the copied file" \
      check_scratch_in_ipcs
check "c. multi-stage build FROM $BASE (registry) with RUN and COPY --from" check_multi_build
check "d. its blobs (base layers too) in ipcs, pinned, bytes = digest; RUN/COPY output in the new layer" \
      check_multi_in_ipcs
check "e. the same build again: every RUN/COPY step CACHED, no new blob" check_cache_hit
check "f. --output type=image,push=true to the registry with --export-cache type=inline" \
      check_push_inline_cache
check "g. the daemons hold only loopback sockets; buildkitd only to the registry" check_loopback_only
check "h. buildctl prune --all, image removal, GC: unreferenced blobs unpinned, ipcs = history's content" \
      check_prune_unpins
check "i. build history leases removed, GC: ipcs holds no blob, no ipcs pin left in Kubo" check_history_unpins
all_run=1
