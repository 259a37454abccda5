#!/usr/bin/env bash
# Benchmark: ipcs against containerd's built-in content store, side by side, same data.
#
#   integration/bench.sh
#
# Measurements (each repeated BENCH_REPS times, default 5; builtin and ipcs alternate):
#   1. pull    `ctr images pull --plain-http` (with unpack) of the `huge` test image from a
#              local registry; containerd 1.6 (Debian) with its built-in store vs the same
#              binary with ipcs as its content proxy plugin. Every repetition starts from
#              fresh containerd, ipcs and Kubo directories (an empty store). Reported: total,
#              and ctr's own split into fetch and unpack.
#   2. ingest  one BENCH_INGEST_BYTES (1 GiB) blob through the Write stream
#              (examples/content_bench.rs): containerd's socket (built-in store) vs ipcs's
#              socket, plus containerd -> ipcs proxy, plus `ipfs add` of the same file alone.
#              Fresh daemons and Kubo repo per repetition.
#   3. read    BENCH_READ_BYTES (256 MiB) blob read as one Read RPC per 32 KiB (containerd's
#              unpack pattern) and one Read RPC per 1 MiB.
#   4. memory  VmHWM of the (fresh) ipcs process after each 1 GiB ingest.
#   5. metadata Info p50/p99 with BENCH_META_BLOBS (10 000) tiny blobs committed; commit
#              latency of a small blob with 0 vs BENCH_META_BLOBS blobs committed; Kubo's own
#              add+pin latency at both points (to separate Kubo from ipcs). Then ipcs alone
#              grows to BENCH_META_BIG (100 000) blobs, each committed through the Write
#              stream, and Info and commit latency are measured again (containerd's store
#              would need 6–30 minutes more to commit that many, so it is not run there).
#   6. p2p     node A (Kubo, IPFS Cluster peer, ipcs with the cluster and its registry
#              mirror, containerd 1.6; integration/p2p-nodes.sh) pulls huge once; then a
#              fresh node B pulls huge, alternating: from A with the registry stopped (through
#              B's ipcs mirror), from the registry into ipcs, and from the registry into
#              containerd's built-in store (reference). Reported: total, fetch and unpack
#              as in 1, peers ÷ registry, ipcs and Kubo peak RSS on B.
#   7. containerd 2.x (integration/bench-differ.sh, also `make bench-differ` alone): huge and
#              huge with uncompressed layers, containerd's own store and walking differ vs ipcs
#              as content store and differ, with and without unpigz: pull+unpack, the unpack
#              phase alone, CPU seconds of all daemons. Its own table, below the 1.6 table.
# Prints the table at the end and writes it, with machine info, into BENCHMARKS.md
# (BENCH_OUT). Anything in BENCHMARKS.md below the line "<!-- notes -->" is kept.
#
# Env: BENCH_REPS (5), BENCH_INGEST_BYTES (1073741824), BENCH_READ_BYTES (268435456),
#      BENCH_META_BLOBS (10000), BENCH_META_BIG (100000; 0 = skip), BENCH_META_ROUNDS (= BENCH_REPS), BENCH_WARMUP (1),
#      BENCH_OUT (BENCHMARKS.md at the repo root; "-" = do not write), IPCS_IMAGES,
#      IPCS_TOOLS, KEEP_WORK=1 (keep the work dir), BENCH_SKIP (comma list of
#      pull,ingest,read,meta,p2p,differ to skip; for development only).
# All daemons bind 127.0.0.1 or unix sockets in a work dir under /tmp; all are stopped on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
# shellcheck source=integration/p2p-nodes.sh
. "$root/integration/p2p-nodes.sh"
IPFS="${IPFS_BIN:-$TOOLS/bin/ipfs}"
REPS="${BENCH_REPS:-5}"
INGEST_BYTES="${BENCH_INGEST_BYTES:-1073741824}"
READ_BYTES="${BENCH_READ_BYTES:-268435456}"
META_BLOBS="${BENCH_META_BLOBS:-10000}"
META_BIG="${BENCH_META_BIG:-100000}"
META_ROUNDS="${BENCH_META_ROUNDS:-$REPS}"
WARMUP="${BENCH_WARMUP:-1}"
OUT="${BENCH_OUT:-$root/BENCHMARKS.md}"
SKIP=",${BENCH_SKIP:-},"
NS=bench
LEASE=bench-lease
PULL_TIMEOUT=600

exec 8>&1 9>&2
started_ns=$(date +%s%N)
work=$(mktemp -d /tmp/ipcs-bench-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
results="$work/results.tsv"; : >"$results"
# Binaries are copied: a concurrent `cargo build` must not swap them mid-run.
IPCS="$work/bin/ipcs"; BENCH="$work/bin/content_bench"
reg_dir="$work/registry"
ipcs_pid=""
live_kubo=() live_cd=()

# ------------------------------------------------------------------------------ helpers
log() { echo "[bench $(date +%T)] $*" >&2; }
skip() { [[ "$SKIP" == *",$1,"* ]]; }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }   # KEY VARIANT VALUE
hwm_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
# CPU seconds a process used so far, its waited-for children included (containerd runs
# unpigz as a child); fields 14-17 of /proc/PID/stat, after the parenthesised name.
cpu_s() {
  local hz; hz=$(getconf CLK_TCK)
  sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$hz" '{ printf "%.2f", ($12 + $13 + $14 + $15) / hz }'
}
jget() { jq -r ".$2" <<<"$1"; }
# Bytes a directory occupies on disk (allocated blocks, not apparent sizes).
disk_bytes() { du -s --block-size=1 "$1" 2>/dev/null | cut -f1; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

kubo_start() {  # kubo_start DIR -> sets $api, $kubo_ma
  local dir="$1"
  api=$(timeout 120 "$root/scripts/kubo-node.sh" start "$dir" --offline 2>"$logs/kubo-start.log" 8>&- 9>&-)
  [[ "$api" =~ ^unix:///.+$ ]] || { log "bad Kubo API address '$api'"; cat "$logs/kubo-start.log" >&2; return 1; }
  kubo_ma=$(kubo_maddr "$api")
  live_kubo+=("$dir")
}
kubo_stop() { timeout 60 "$root/scripts/kubo-node.sh" stop "$1" >/dev/null 2>&1 || true; }
kubo_pid() { cat "$1/ipcs-kubo.pid"; }
ipfs() { local t="$1"; shift; timeout -k 5 "$t" "$IPFS" --api "$kubo_ma" "$@"; }

# ipcs_start DIR API: socket DIR/ipcs.sock, data DIR/data, log DIR/ipcs.log (lib.sh's start_ipcs)
ipcs_start() {
  start_ipcs --bin "$IPCS" --socket "$1/ipcs.sock" --data "$1/data" --log "$1/ipcs.log" --kubo "$2" \
    || { log "ipcs did not start"; return 1; }
  ipcs_pid=$IPCS_STARTED_PID
}
ipcs_stop() { stop_pid "$ipcs_pid" TERM 10; ipcs_pid=""; }

cd_start() {  # cd_start DIR --builtin-content | --content-socket SOCK
  local dir="$1"; shift
  timeout 120 "$root/integration/containerd-node.sh" start "$dir" --version 1.6 "$@" \
    >/dev/null 2>"$logs/containerd-start.log" 8>&- 9>&- \
    || { cat "$logs/containerd-start.log" >&2; return 1; }
  live_cd+=("$dir")
}
cd_stop() { timeout 120 "$root/integration/containerd-node.sh" stop "$1" >/dev/null 2>&1 || true; }
ctr() { local dir="$1" t="$2"; shift 2; timeout -k 10 "$t" "$dir/ctr" -n "$NS" "$@"; }
lease() { ctr "$1" 60 leases create --id "$LEASE" >/dev/null; }

# bench SOCKET_OR_CONTAINERD_DIR ARGS...: the bench client against ipcs (a socket path) or
# containerd (a containerd-node dir: its socket, namespace and lease).
bench() {
  local target="$1"; shift
  if [ -d "$target" ]; then
    timeout -k 10 900 "$BENCH" "$1" --socket "$target/containerd.sock" --namespace "$NS" --lease "$LEASE" "${@:2}"
  else
    timeout -k 10 900 "$BENCH" "$1" --socket "$target" "${@:2}"
  fi
}

# Go duration (1m2.5s, 7.76s, 850ms) -> seconds.
go_duration() {
  awk '{ s = $0; t = 0
         while (match(s, /^[0-9.]+(h|ms|m|s|us|µs|ns)/)) {
           tok = substr(s, 1, RLENGTH); s = substr(s, RLENGTH + 1)
           match(tok, /^[0-9.]+/); v = substr(tok, 1, RLENGTH); u = substr(tok, RLENGTH + 1)
           if (u == "h") t += v * 3600; else if (u == "m") t += v * 60; else if (u == "s") t += v
           else if (u == "ms") t += v / 1e3; else if (u == "ns") t += v / 1e9; else t += v / 1e6
         }
         if (t > 0) printf "%.3f", t }'
}

settle() { sync; sleep 1; }   # flush the previous step's dirty pages before timing the next

rmdir_fresh() { rm -rf "$1"; mkdir -p "$1"; }

cleanup() {
  local rc=$?
  set +e
  exec >&8 2>&9
  trap - EXIT INT TERM
  ipcs_stop
  local d
  for d in "${live_cd[@]}"; do cd_stop "$d"; done
  for d in "${live_kubo[@]}"; do kubo_stop "$d"; done
  p2p_stop_all
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
  if [ "$rc" -ne 0 ]; then
    log "FAILED (exit status $rc); logs and results kept in $work"
  elif [ -n "${KEEP_WORK:-}" ]; then
    log "work dir kept: $work"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -------------------------------------------------------------------------------- setup
log "work dir $work; $REPS repetitions"
for b in "$IPFS" /usr/bin/containerd /usr/bin/ctr; do
  [ -x "$b" ] || { log "missing $b (make setup)"; exit 1; }
done
for t in jq python3 curl skopeo; do command -v "$t" >/dev/null || { log "missing $t"; exit 1; }; done
if ! skip p2p; then
  for b in "$TOOLS/bin/ipfs-cluster-service" "$TOOLS/bin/ipfs-cluster-ctl"; do
    [ -x "$b" ] || { log "missing $b (make setup)"; exit 1; }
  done
fi
log "building ipcs and examples/content_bench (cargo build --release)"
(cd "$root" && cargo build --release --locked --bin ipcs --example content_bench) >"$logs/cargo.log" 2>&1 \
  || { tail -n 30 "$logs/cargo.log" >&2; exit 1; }
mkdir -p "$work/bin"
cp "$root/target/release/ipcs" "$IPCS"
cp "$root/target/release/examples/content_bench" "$BENCH"

if ! skip pull || ! skip p2p; then
  log "building the huge test image (cached in $IMAGES) and starting the registry"
  timeout 1800 "$root/integration/images/build-images.sh" --only huge "$IMAGES" >"$logs/build-images.log" 2>&1 \
    || { tail -n 20 "$logs/build-images.log" >&2; exit 1; }
  "$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>"$logs/registry.log" 8>&- 9>&-
  reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
  reg_log=$("$root/integration/images/registry.sh" log "$reg_dir")
  timeout 900 "$root/integration/images/push-images.sh" "$IMAGES" "$reg" huge >"$logs/push.log" 2>&1 \
    || { cat "$logs/push.log" >&2; exit 1; }
  HUGE="$reg/ipcs/huge:v1"
  huge_layers=$(awk -F'\t' '$1 == "huge" { print $6 }' "$IMAGES/summary.tsv")
  huge_bytes=$(awk -F'\t' '$1 == "huge" { print $7 }' "$IMAGES/summary.tsv")
  log "registry $reg, $HUGE: $huge_layers layers, $huge_bytes bytes compressed"
fi

# ---------------------------------------------------------------------------- 1. pull
# timed_pull CONTAINERD_DIR TAG CTR_ARGS...: `ctr images pull CTR_ARGS huge` (with unpack) into
# a node with an empty store; sets pull_total and pull_unpack (seconds) and pull_blobs.
timed_pull() {
  local dir="$1" tag="$2" t0 t1 rc=0
  shift 2
  t0=$(now_ms)
  ctr "$dir" "$PULL_TIMEOUT" images pull --platform linux/amd64 "$@" "$HUGE" >"$logs/pull-$tag.log" 2>&1 || rc=$?
  t1=$(now_ms)
  if [ "$rc" != 0 ]; then log "pull $tag failed ($rc):"; tail -n 5 "$logs/pull-$tag.log" >&2; return 1; fi
  pull_total=$(awk -v ms=$((t1 - t0)) 'BEGIN { printf "%.3f", ms / 1000 }')
  # ctr 1.6 prints "done: DURATION" timed from the start of the unpack.
  pull_unpack=$(sed -n 's/^done: \([0-9.hmsuµn]*\).*/\1/p' "$logs/pull-$tag.log" | tail -n 1 | go_duration)
  pull_blobs=$(ctr "$dir" 60 content ls -q | wc -l)
  if [ "$pull_blobs" -ne $((huge_layers + 2)) ]; then
    log "pull $tag: content ls lists $pull_blobs blobs, want $((huge_layers + 2))"; return 1
  fi
}

# record_pull SECTION VARIANT: total, unpack and fetch (= total - unpack) of the last timed_pull.
record_pull() {
  record "$1.total" "$2" "$pull_total"
  [ -z "$pull_unpack" ] || { record "$1.unpack" "$2" "$pull_unpack"
                             record "$1.fetch" "$2" "$(awk -v t="$pull_total" -v u="$pull_unpack" 'BEGIN { printf "%.3f", t - u }')"; }
}

# One pull into a fresh node; VARIANT builtin|ipcs; records total/fetch/unpack seconds.
pull_once() {
  local variant="$1" tag="$2" d="$work/pull-$2"
  rm -rf "$d"; mkdir -p "$d"
  local kubo0=0
  if [ "$variant" = ipcs ]; then
    kubo_start "$d/kubo"
    ipcs_start "$d/ipcs" "$api"
    kubo0=$(disk_bytes "$d/kubo")
    cd_start "$d/cd" --content-socket "$d/ipcs/ipcs.sock"
  else
    cd_start "$d/cd" --builtin-content
  fi
  settle
  local reg_pid reg_cpu0
  reg_pid=$(cat "$reg_dir/registry.pid"); reg_cpu0=$(cpu_s "$reg_pid")
  if ! timed_pull "$d/cd" "$tag" --plain-http; then
    [ "$variant" != ipcs ] || tail -n 10 "$d/ipcs/ipcs.log" >&2
    return 1
  fi
  if [ "$variant" = ipcs ]; then
    local nb; nb=$(timeout 30 "$IPCS" blobs --settle 120 --socket "$d/ipcs/ipcs.sock" | wc -l)
    [ "$nb" -eq "$pull_blobs" ] || { log "pull $tag: ipcs has $nb blobs, containerd $pull_blobs"; return 1; }
  fi
  if [ "$tag" != warmup-$variant ]; then
    record_pull pull "$variant"
    record pull.containerd_hwm "$variant" "$(hwm_mib "$(cat "$d/cd/containerd.pid")")"
    record pull.cpu.containerd "$variant" "$(cpu_s "$(cat "$d/cd/containerd.pid")")"
    record pull.cpu.registry "$variant" "$(awk -v a="$reg_cpu0" -v b="$(cpu_s "$reg_pid")" 'BEGIN { printf "%.2f", b - a }')"
    # Disk the blobs take, measured while the daemons still run: containerd's content dir
    # for the built-in store; ipcs's data dir plus what the Kubo repo grew by for ipcs.
    if [ "$variant" = ipcs ]; then
      local data kubo
      data=$(disk_bytes "$d/ipcs/data"); kubo=$(( $(disk_bytes "$d/kubo") - kubo0 ))
      record pull.disk_data ipcs "$(mb "$data")"; record pull.disk_kubo ipcs "$(mb "$kubo")"
      record pull.disk ipcs "$(mb $((data + kubo)))"
      log "pull $tag disk: ipcs data dir $(mb "$data") MB + Kubo repo growth $(mb "$kubo") MB"
    else
      record pull.disk builtin "$(mb "$(disk_bytes "$d/cd/root/io.containerd.content.v1.content")")"
      log "pull $tag disk: containerd content dir $(mb "$(disk_bytes "$d/cd/root/io.containerd.content.v1.content")") MB"
    fi
    if [ "$variant" = ipcs ]; then
      record pull.ipcs_hwm ipcs "$(hwm_mib "$ipcs_pid")"
      record pull.kubo_hwm ipcs "$(hwm_mib "$(kubo_pid "$d/kubo")")"
      record pull.cpu.ipcs ipcs "$(cpu_s "$ipcs_pid")"
      record pull.cpu.kubo ipcs "$(cpu_s "$(kubo_pid "$d/kubo")")"
    fi
  fi
  log "pull $tag: ${pull_total} s (unpack ${pull_unpack:-?} s), $pull_blobs blobs"
  cd_stop "$d/cd"
  if [ "$variant" = ipcs ]; then ipcs_stop; kubo_stop "$d/kubo"; fi
  rm -rf "$d"
}

if ! skip pull; then
  log "== 1. pull of huge ($huge_layers layers), $REPS x builtin and ipcs, alternating"
  if [ "$WARMUP" = 1 ]; then pull_once builtin warmup-builtin; pull_once ipcs warmup-ipcs; fi
  for r in $(seq 1 "$REPS"); do
    if [ $((r % 2)) = 1 ]; then order="builtin ipcs"; else order="ipcs builtin"; fi
    for v in $order; do pull_once "$v" "$v-$r"; done
  done
  record load.after_pull - "$(cut -d' ' -f1 /proc/loadavg)"
fi

# --------------------------------------------------------------------------- 2. ingest
ingest_once() {  # VARIANT builtin|ipcs|proxy|ipfsadd, REP
  local variant="$1" r="$2" d="$work/ingest-$1-$2" out
  rm -rf "$d"; mkdir -p "$d"
  case "$variant" in
    builtin)
      cd_start "$d/cd" --builtin-content; lease "$d/cd"; settle
      out=$(bench "$d/cd" ingest --size "$INGEST_BYTES" --seed 1 --ref "bench-ingest-$r")
      record ingest.containerd_hwm builtin "$(hwm_mib "$(cat "$d/cd/containerd.pid")")"
      cd_stop "$d/cd";;
    ipcs)
      kubo_start "$d/kubo"; ipcs_start "$d/ipcs" "$api"; settle
      out=$(bench "$d/ipcs/ipcs.sock" ingest --size "$INGEST_BYTES" --seed 1 --ref "bench-ingest-$r")
      record ingest.ipcs_hwm ipcs "$(hwm_mib "$ipcs_pid")"
      record ingest.kubo_hwm ipcs "$(hwm_mib "$(kubo_pid "$d/kubo")")"
      ipcs_cid=$(timeout 30 "$IPCS" blobs --settle 120 --socket "$d/ipcs/ipcs.sock" | awk '{ print $2 }')
      ipcs_stop; kubo_stop "$d/kubo";;
    proxy)
      kubo_start "$d/kubo"; ipcs_start "$d/ipcs" "$api"
      cd_start "$d/cd" --content-socket "$d/ipcs/ipcs.sock"; lease "$d/cd"; settle
      out=$(bench "$d/cd" ingest --size "$INGEST_BYTES" --seed 1 --ref "bench-ingest-$r")
      record ingest.proxy_ipcs_hwm proxy "$(hwm_mib "$ipcs_pid")"
      cd_stop "$d/cd"; ipcs_stop; kubo_stop "$d/kubo";;
    ipfsadd)
      kubo_start "$d/kubo"; settle
      local t0 t1 cid
      t0=$(now_ms)
      cid=$(ipfs 900 add --cid-version 1 --raw-leaves --chunker size-262144 --pin -Q --progress=false "$ingest_file")
      t1=$(now_ms)
      out=$(jq -nc --arg s "$(awk -v ms=$((t1 - t0)) 'BEGIN { printf "%.3f", ms / 1000 }')" \
                   --arg c "$cid" --argjson b "$INGEST_BYTES" \
            '{seconds: ($s | tonumber), mb_per_s: ($b / 1e6 / ($s | tonumber)), commit_seconds: null, cid: $c}')
      add_cid="$cid"
      kubo_stop "$d/kubo";;
  esac
  record ingest.mbps "$variant" "$(jget "$out" mb_per_s)"
  record ingest.seconds "$variant" "$(jget "$out" seconds)"
  [ "$(jget "$out" commit_seconds)" = null ] || record ingest.commit_s "$variant" "$(jget "$out" commit_seconds)"
  log "ingest $variant #$r: $(jget "$out" mb_per_s) MB/s ($(jget "$out" seconds) s, commit $(jget "$out" commit_seconds) s)"
  rm -rf "$d"
}

if ! skip ingest; then
  log "== 2. ingest of $INGEST_BYTES bytes: builtin, ipcs, containerd->ipcs proxy, ipfs add alone"
  ingest_file="$work/ingest.bin"
  gen=$(timeout 600 "$BENCH" gen --size "$INGEST_BYTES" --seed 1 --out "$ingest_file")
  log "test data: $(jget "$gen" digest)"
  ipcs_cid="" add_cid=""
  for r in $(seq 1 "$REPS"); do
    if [ $((r % 2)) = 1 ]; then order="builtin ipcs proxy ipfsadd"; else order="ipfsadd proxy ipcs builtin"; fi
    for v in $order; do ingest_once "$v" "$r"; done
  done
  if [ -n "$ipcs_cid" ] && [ "$ipcs_cid" = "$add_cid" ]; then record ingest.cid_match - yes
  else record ingest.cid_match - "no ($ipcs_cid vs $add_cid)"; fi
  rm -f "$ingest_file"
  record load.after_ingest - "$(cut -d' ' -f1 /proc/loadavg)"
fi

# ----------------------------------------------------------------------------- 3. read
if ! skip read; then
  log "== 3. reads of a $READ_BYTES-byte blob: one Read RPC per 32 KiB and per 1 MiB"
  d="$work/read"; mkdir -p "$d"
  cd_start "$d/cdb" --builtin-content; lease "$d/cdb"
  kubo_start "$d/kubo"; ipcs_start "$d/ipcs" "$api"
  cd_start "$d/cdp" --content-socket "$d/ipcs/ipcs.sock"; lease "$d/cdp"
  read_digest=$(jget "$(bench "$d/cdb" ingest --size "$READ_BYTES" --seed 3)" digest)
  bench "$d/ipcs/ipcs.sock" ingest --size "$READ_BYTES" --seed 3 >/dev/null
  # The proxy path needs its own blob: one ipcs already holds is not added to containerd's
  # namespace by a Write through containerd.
  proxy_digest=$(jget "$(bench "$d/cdp" ingest --size "$READ_BYTES" --seed 4)" digest)
  declare -A read_target=([builtin]="$d/cdb" [ipcs]="$d/ipcs/ipcs.sock" [proxy]="$d/cdp")
  declare -A read_dg=([builtin]="$read_digest" [ipcs]="$read_digest" [proxy]="$proxy_digest")
  for v in builtin ipcs proxy; do   # untimed: verifies the bytes and warms the page cache
    bench "${read_target[$v]}" read --digest "${read_dg[$v]}" --size "$READ_BYTES" --chunk 1MiB --verify >/dev/null
  done
  settle
  for r in $(seq 1 "$REPS"); do
    if [ $((r % 2)) = 1 ]; then order="builtin ipcs proxy"; else order="proxy ipcs builtin"; fi
    for chunk in 32KiB 1MiB; do
      for v in $order; do
        out=$(bench "${read_target[$v]}" read --digest "${read_dg[$v]}" --size "$READ_BYTES" --chunk "$chunk")
        record "read.$chunk.mbps" "$v" "$(jget "$out" mb_per_s)"
        record "read.$chunk.p50" "$v" "$(jget "$out" p50_ms)"
        record "read.$chunk.p99" "$v" "$(jget "$out" p99_ms)"
        log "read $chunk $v #$r: $(jget "$out" mb_per_s) MB/s, p50 $(jget "$out" p50_ms) ms per RPC"
      done
    done
  done
  cd_stop "$d/cdp"; cd_stop "$d/cdb"; ipcs_stop; kubo_stop "$d/kubo"; rm -rf "$d"
  record load.after_read - "$(cut -d' ' -f1 /proc/loadavg)"
fi

# ------------------------------------------------------------------------- 5. metadata
# Direct Kubo add+pin of 20 distinct 64-byte files over one connection to the API socket
# (curl -w).
kubo_add_p50() {
  local tag="$1" args=() i f sock; sock=$(kubo_sock "$api")
  for i in $(seq 1 20); do
    f="$work/kubo-tiny-$i"
    printf 'kubo-bench %s %s %-40s\n' "$tag" "$i" "" >"$f"
    args+=(--unix-socket "$sock" -s -o /dev/null -w '%{time_total}\n' -X POST -F "file=@$f"
           "http://localhost/api/v0/add?cid-version=1&raw-leaves=true&chunker=size-262144&pin=true&quieter=true" --next)
  done
  curl "${args[@]}" --unix-socket "$sock" -s -o /dev/null -X POST "http://localhost/api/v0/version" | sort -n |
    awk '{ a[NR] = $1 } END { printf "%.4f", a[int((NR + 1) / 2)] * 1000 }'
}

meta_run() {  # VARIANT builtin|ipcs
  local variant="$1" d="$work/meta-$1" target r out
  mkdir -p "$d"
  if [ "$variant" = ipcs ]; then
    kubo_start "$d/kubo"; ipcs_start "$d/ipcs" "$api"; target="$d/ipcs/ipcs.sock"
  else
    cd_start "$d/cd" --builtin-content; lease "$d/cd"; target="$d/cd"
  fi
  settle
  for r in $(seq 1 "$META_ROUNDS"); do
    out=$(bench "$target" commit-latency --samples 20 --prefix c0 --start $((r * 20)))
    record meta.commit0.p50 "$variant" "$(jget "$out" p50_ms)"
    [ "$variant" != ipcs ] || record meta.kubo_add0.p50 ipcs "$(kubo_add_p50 "zero-$r")"
  done
  out=$(bench "$target" populate --count "$META_BLOBS" --concurrency 8 --prefix pop)
  record meta.populate_s "$variant" "$(jget "$out" seconds)"
  record meta.populate_rate "$variant" "$(jget "$out" per_s)"
  log "meta $variant: $META_BLOBS blobs committed in $(jget "$out" seconds) s ($(jget "$out" per_s)/s, concurrency 8)"
  settle
  for r in $(seq 1 "$META_ROUNDS"); do
    out=$(bench "$target" commit-latency --samples 20 --prefix cN --start $((r * 20)))
    record meta.commitN.p50 "$variant" "$(jget "$out" p50_ms)"
    [ "$variant" != ipcs ] || record meta.kubo_addN.p50 ipcs "$(kubo_add_p50 "n-$r")"
    out=$(bench "$target" info --count "$META_BLOBS" --samples 1000 --prefix pop --seed "$r")
    record meta.info.p50 "$variant" "$(jget "$out" p50_ms)"
    record meta.info.p99 "$variant" "$(jget "$out" p99_ms)"
  done
  log "meta $variant: info p50 $(jget "$out" p50_ms) ms, p99 $(jget "$out" p99_ms) ms (last round)"
  if [ "$variant" = ipcs ] && [ "$META_BIG" -gt "$META_BLOBS" ]; then
    out=$(bench "$target" populate --count $((META_BIG - META_BLOBS)) --start "$META_BLOBS" \
            --concurrency 16 --prefix pop)
    record meta.populateB_s ipcs "$(jget "$out" seconds)"
    log "meta ipcs: grown to $META_BIG blobs in $(jget "$out" seconds) s more ($(jget "$out" per_s)/s, concurrency 16)"
    settle
    for r in $(seq 1 "$META_ROUNDS"); do
      out=$(bench "$target" commit-latency --samples 20 --prefix cB --start $((r * 20)))
      record meta.commitB.p50 ipcs "$(jget "$out" p50_ms)"
      out=$(bench "$target" info --count "$META_BIG" --samples 1000 --prefix pop --seed "$r")
      record meta.infoB.p50 ipcs "$(jget "$out" p50_ms)"
      record meta.infoB.p99 ipcs "$(jget "$out" p99_ms)"
    done
    log "meta ipcs: $META_BIG blobs: info p50 $(jget "$out" p50_ms) ms, p99 $(jget "$out" p99_ms) ms (last round)"
  fi
  if [ "$variant" = ipcs ]; then
    record meta.ipcs_hwm ipcs "$(hwm_mib "$ipcs_pid")"
    ipcs_stop; kubo_stop "$d/kubo"
  else
    cd_stop "$d/cd"
  fi
  rm -rf "$d"
}

if ! skip meta; then
  log "== 5. metadata: $META_BLOBS tiny blobs, Info and commit latency"
  meta_run builtin
  meta_run ipcs
  record load.after_meta - "$(cut -d' ' -f1 /proc/loadavg)"
fi

# ------------------------------------------------------------------------ 6. peer to peer
# p2p_b_pull VARIANT TAG: a fresh node B pulls huge while node A, which holds it, runs.
#   builtin   containerd's built-in store, from the registry
#   registry  ipcs on B, from the registry: B's hosts.toml lists only the registry, and B's
#             ipcs runs without the cluster: ctr polls Info on every blob while it pulls, and
#             ipcs answers an Info miss by fetching the blob from peers, so a B that knew the
#             pinset would take blobs from A even with the registry as the only host
#   peers     ipcs on B with the cluster and its mirror listed first in hosts.toml; the
#             registry is stopped for the pull, so every byte must come from A
p2p_b_pull() {
  local variant="$1" tag="$2" b="$P2P_DIR/b" reg_off n
  rm -rf "$b"
  case "$variant" in
    builtin)  p2p_containerd_start b "$reg" --builtin-content;;
    registry) p2p_kubo_start b; p2p_kubo_peer b a; p2p_cluster_start b a
              p2p_ipcs_start b --alone; p2p_containerd_start b "$reg" --no-mirror
              p2p_wait_synced a b;;
    peers)    p2p_node_start b "$reg" a; p2p_wait_synced a b;;
  esac
  if [ "$variant" = peers ]; then
    "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
    if curl -fsS -m 2 "http://$reg/v2/" >/dev/null 2>&1; then log "p2p $tag: the registry still answers"; return 1; fi
  fi
  reg_off=$(stat -c %s "$reg_log")
  settle
  if ! timed_pull "$b/containerd" "p2p-$tag" --hosts-dir "$b/hosts"; then
    [ ! -f "$b/ipcs.log" ] || tail -n 10 "$b/ipcs.log" >&2
    return 1
  fi
  if [ "$variant" = peers ]; then
    # The registry must have stayed down for the whole pull.
    if curl -fsS -m 2 "http://$reg/v2/" >/dev/null 2>&1; then log "p2p $tag: the registry answered after the pull"; return 1; fi
    "$root/integration/images/registry.sh" start "$reg_dir" --port "${reg##*:}" >/dev/null 2>>"$logs/registry.log" 8>&- 9>&-
  fi
  n=0
  if [ "$variant" != builtin ]; then
    n=$(p2p_metric b 'ipcs_peer_adoptions_total{outcome="ok"}') || { log "p2p $tag: B's metrics do not answer"; return 1; }
  fi
  local reqs; reqs=$(tail -c +"$((reg_off + 1))" "$reg_log" | grep -c '/blobs/sha256:' || true)
  case "$variant" in
    peers)    [ "$n" -ge 1 ] || { log "p2p $tag: no blob obtained from peers"; return 1; };;
    registry) [ "$n" -eq 0 ] || { log "p2p $tag: $n blobs came from peers, not the registry"; return 1; }
              [ "$reqs" -ge 1 ] || { log "p2p $tag: no blob request reached the registry"; return 1; };;
  esac
  if [ "$variant" != builtin ]; then
    local nb; nb=$(p2p_blobs b | wc -l)
    [ "$nb" -eq "$pull_blobs" ] || { log "p2p $tag: ipcs has $nb blobs, containerd $pull_blobs"; return 1; }
  fi
  if [ "${tag#warmup}" = "$tag" ]; then
    record_pull p2p "$variant"
    if [ "$variant" != builtin ]; then
      record p2p.ipcs_hwm "$variant" "$(hwm_mib "${P2P_PID[b]}")"
      record p2p.kubo_hwm "$variant" "$(hwm_mib "$(kubo_pid "$b/kubo")")"
    fi
    [ "$variant" != peers ] || record p2p.from_peers peers "$n"
  fi
  log "p2p $tag: ${pull_total} s (unpack ${pull_unpack:-?} s); $n blobs from peers, $reqs blob requests to the registry"
  p2p_node_stop b
  [ ! -f "$b/ipcs.log" ] || cp "$b/ipcs.log" "$logs/ipcs-p2p-$tag.log"
  rm -rf "$b"
}

if ! skip p2p; then
  log "== 6. peer to peer: node B pulls huge from node A (registry stopped) or from the registry, $REPS x"
  P2P_DIR="$work/p2p" P2P_LOG="$logs/p2p-setup.log" P2P_NS="$NS" P2P_IPCS="$IPCS" P2P_IPFS="$IPFS"
  P2P_REBROADCAST=2s
  p2p_network_init
  p2p_node_start a "$reg"
  ctr "$P2P_DIR/a/containerd" "$PULL_TIMEOUT" images pull --platform linux/amd64 --hosts-dir "$P2P_DIR/a/hosts" \
    "$HUGE" >"$logs/pull-p2p-a.log" 2>&1 || { log "node A's pull failed"; tail -n 5 "$logs/pull-p2p-a.log" >&2; exit 1; }
  p2p_wait_published a a
  log "node A holds huge; its blobs and tag are in the cluster pinset"
  if [ "$WARMUP" = 1 ]; then for v in builtin registry peers; do p2p_b_pull "$v" "warmup-$v"; done; fi
  for r in $(seq 1 "$REPS"); do
    if [ $((r % 2)) = 1 ]; then order="builtin registry peers"; else order="peers registry builtin"; fi
    for v in $order; do p2p_b_pull "$v" "$v-$r"; done
  done
  p2p_node_stop a
  record load.after_p2p - "$(cut -d' ' -f1 /proc/loadavg)"
fi

# ------------------------------------------------------------- 7. containerd 2.x differ
if ! skip differ; then
  log "== 7. containerd 2.x: ipcs as content store and differ vs containerd's store and walking differ"
  BENCH_DIFFER_IMAGE=huge BENCH_DIFFER_OUT="$work/differ.md" BENCH_REPS="$REPS" \
    bash "$root/integration/bench-differ.sh" 8>&- 9>&- || { log "bench-differ failed"; exit 1; }
  record load.after_differ - "$(cut -d' ' -f1 /proc/loadavg)"
fi

# ---------------------------------------------------------------------------- report
elapsed_s=$(( ($(date +%s%N) - started_ns) / 1000000000 ))
kubo_version=$("$IPFS" version --number 2>/dev/null || echo "?")
cd_version=$(/usr/bin/containerd --version 2>/dev/null | awk '{ print $3 }')
ipcs_rev=$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(cd "$root" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then ipcs_rev="$ipcs_rev+local changes"; fi

export BENCH_RESULTS="$results" BENCH_OUT="$OUT" BENCH_REPS_N="$REPS" BENCH_META_N="$META_BLOBS" \
  BENCH_META_BIG_N="$META_BIG" \
  BENCH_INGEST_N="$INGEST_BYTES" BENCH_READ_N="$READ_BYTES" BENCH_ELAPSED="$elapsed_s" \
  BENCH_KUBO="$kubo_version" BENCH_CD="$cd_version" BENCH_REV="$ipcs_rev" \
  BENCH_HUGE="${huge_layers:-?} layers, ${huge_bytes:-?} bytes compressed" \
  BENCH_HUGE_BLOBS="$(( ${huge_layers:-0} + 2 ))" BENCH_DIFFER_MD="$work/differ.md"
python3 "$root/integration/bench_report.py"
