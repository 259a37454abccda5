#!/usr/bin/env bash
# Benchmark, containerd 2.x: ipcs as content store and differ against containerd's own content
# store and walking differ (issue 11, acceptance 4). Run alone (`make bench-differ`) or as
# section 7 of integration/bench.sh.
#
#   integration/bench-differ.sh
#
# Image: BENCH_DIFFER_IMAGE (default big; bench.sh passes huge) as built by
# integration/images/build-images.sh (gzip layers), and the same image with every layer
# uncompressed (integration/differ/uncompressed_image.py: same config, same diffIDs).
# Variants, alternating, BENCH_REPS (5) repetitions each, every one on fresh containerd, ipcs
# and Kubo directories (an empty store):
#   builtin  containerd $CONTAINERD2_VERSION with its own content store and walking differ
#   ipcs     the same binary with ipcs as content store (proxy plugin) and, when the ipcs
#            build serves containerd.services.diff.v1.Diff, as differ (--differ ipcs); else
#            the walking differ, and the table says so
# each with pigz on PATH (containerd's walking differ then inflates gzip with unpigz) and
# without it (CONTAINERD_DISABLE_PIGZ=1 in containerd's environment, the switch containerd
# itself reads).
# Measured per run:
#   pull+unpack  wall time of `ctr images pull` (transfer service, with unpack) on a fresh node
#   in ipfs      for ipcs: until every blob is in Kubo as well (`ipcs status --settle`; a
#                commit answers before Kubo's import ends); for builtin the same as the pull
#   CPU          CPU seconds of every daemon from the pull's start until then: containerd
#                (with its waited-for children, e.g. unpigz), ipcs, Kubo, the registry's share
#   unpack       a second fresh node: `ctr content fetch` of every blob first (untimed), then the
#                timed `ctr images pull`, which finds every blob present and only unpacks
# Prints a markdown table (median [min–max], ipcs ÷ builtin) and writes it to BENCH_DIFFER_OUT
# (default: stdout only; bench.sh puts it into BENCHMARKS.md).
# Env: BENCH_REPS (5), BENCH_DIFFER_IMAGE (big), BENCH_DIFFER_OUT, IPCS_IMAGES, IPCS_TOOLS,
#      KEEP_WORK=1.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
IMAGE="${BENCH_DIFFER_IMAGE:-big}"
REPS="${BENCH_REPS:-5}"
OUT="${BENCH_DIFFER_OUT:-}"
NS=bench
PULL_TIMEOUT=900

exec 8>&1 9>&2
started_ns=$(date +%s%N)
work=$(mktemp -d /tmp/ipcs-bench-differ-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
results="$work/results.tsv"; : >"$results"
reg_dir="$work/registry"
IPCS="$work/bin/ipcs"
ipcs_pid="" cd_dir="" kubo_dir=""

log() { echo "[bench-differ $(date +%T)] $*" >&2; }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }
cpu_s() {  # CPU seconds of a live process, waited-for children included
  local hz; hz=$(getconf CLK_TCK)
  sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$hz" '{ printf "%.2f", ($12 + $13 + $14 + $15) / hz }'
}
ctr() { local t="$1"; shift; timeout -k 10 "$t" "$cd_dir/ctr" -n "$NS" "$@"; }

node_stop() {
  [ -z "$cd_dir" ] || timeout 120 "$root/integration/containerd-node.sh" stop "$cd_dir" >/dev/null 2>&1 || true
  stop_pid "$ipcs_pid"
  [ -z "$kubo_dir" ] || timeout 60 "$root/scripts/kubo-node.sh" stop "$kubo_dir" >/dev/null 2>&1 || true
  cd_dir="" ipcs_pid="" kubo_dir=""
}

# node_start DIR VARIANT PIGZ(pigz|nopigz)
node_start() {
  local d="$1" variant="$2" pigz="$3" api _ env=()
  rm -rf "$d"; mkdir -p "$d"
  [ "$pigz" = pigz ] || env=(CONTAINERD_DISABLE_PIGZ=1)
  if [ "$variant" = ipcs ]; then
    kubo_dir="$d/kubo"
    api=$(timeout 120 "$root/scripts/kubo-node.sh" start "$kubo_dir" --offline --swarm "$(free_port)" 2>>"$logs/kubo.log" 8>&- 9>&-)
    mkdir -p "$d/ipcs"
    start_ipcs --bin "$IPCS" --socket "$d/ipcs/ipcs.sock" --data "$d/ipcs/data" --log "$d/ipcs/ipcs.log" \
      --kubo "$api" || { log "ipcs did not start"; return 1; }
    ipcs_pid=$IPCS_STARTED_PID
    cd_dir="$d/cd"
    env "${env[@]}" timeout 120 "$root/integration/containerd-node.sh" start "$cd_dir" --version 2 \
      --content-socket "$d/ipcs/ipcs.sock" "${differ_opts[@]}" >/dev/null 2>>"$logs/containerd.log" 8>&- 9>&-
  else
    cd_dir="$d/cd"
    env "${env[@]}" timeout 120 "$root/integration/containerd-node.sh" start "$cd_dir" --version 2 \
      --builtin-content >/dev/null 2>>"$logs/containerd.log" 8>&- 9>&-
  fi
  sync; sleep 1
}

daemon_cpu() {  # sum of CPU seconds of the node's daemons (+ the registry)
  local s
  s=$(cpu_s "$(cat "$cd_dir/containerd.pid")")
  [ -z "$ipcs_pid" ] || s=$(awk -v a="$s" -v b="$(cpu_s "$ipcs_pid")" 'BEGIN { printf "%.2f", a + b }')
  [ -z "$kubo_dir" ] || s=$(awk -v a="$s" -v b="$(cpu_s "$(cat "$kubo_dir/ipcs-kubo.pid")")" 'BEGIN { printf "%.2f", a + b }')
  awk -v a="$s" -v b="$(cpu_s "$(cat "$reg_dir/registry.pid")")" 'BEGIN { printf "%.2f", a + b }'
}

# one_run VARIANT PIGZ IMG(name in the registry) TAG: records total, cpu and unpack
one_run() {
  local variant="$1" pigz="$2" img="$3" tag="$4" ref="$reg/ipcs/$3:v1" t0 t1 c0 c1 key
  key="$img.$pigz"
  # 1. pull + unpack on a fresh node, CPU of every daemon
  node_start "$work/node" "$variant" "$pigz"
  c0=$(daemon_cpu); t0=$(now_ms)
  ctr "$PULL_TIMEOUT" images pull --plain-http --platform linux/amd64 "$ref" >"$logs/pull-$tag.log" 2>&1 \
    || { log "pull $tag failed"; tail -n 5 "$logs/pull-$tag.log" >&2; return 1; }
  t1=$(now_ms)
  # ipcs answers a commit before Kubo's import ends: the run lasts until every blob is in
  # Kubo too ("in ipfs"), and the CPU counts that import.
  if [ -n "$ipcs_pid" ]; then
    timeout 300 "$IPCS" status --settle 240 --socket "$work/node/ipcs/ipcs.sock" >/dev/null \
      || { log "$tag: imports into Kubo did not finish"; return 1; }
  fi
  t2=$(now_ms); c1=$(daemon_cpu)
  check_unpacked "$tag" || return 1
  record "total.$key" "$variant" "$(awk -v ms=$((t1 - t0)) 'BEGIN { printf "%.3f", ms / 1000 }')"
  record "inipfs.$key" "$variant" "$(awk -v ms=$((t2 - t0)) 'BEGIN { printf "%.3f", ms / 1000 }')"
  record "cpu.$key" "$variant" "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')"
  [ -z "$ipcs_pid" ] || cp "$work/node/ipcs/ipcs.log" "$logs/ipcs-$tag.log"
  node_stop
  # 2. unpack alone: every blob fetched first, then the pull only unpacks
  node_start "$work/node" "$variant" "$pigz"
  ctr "$PULL_TIMEOUT" content fetch --plain-http --platform linux/amd64 "$ref" >"$logs/fetch-$tag.log" 2>&1 \
    || { log "fetch $tag failed"; tail -n 5 "$logs/fetch-$tag.log" >&2; return 1; }
  sync; sleep 1
  t0=$(now_ms)
  ctr "$PULL_TIMEOUT" images pull --plain-http --platform linux/amd64 "$ref" >"$logs/unpack-$tag.log" 2>&1 \
    || { log "unpack $tag failed"; tail -n 5 "$logs/unpack-$tag.log" >&2; return 1; }
  t1=$(now_ms)
  check_unpacked "$tag-unpack" || return 1
  record "unpack.$key" "$variant" "$(awk -v ms=$((t1 - t0)) 'BEGIN { printf "%.3f", ms / 1000 }')"
  node_stop
  log "$tag: total $(tail -n 4 "$results" | head -n 1 | cut -f3) s, in ipfs $(tail -n 3 "$results" | head -n 1 | cut -f3) s, unpack $(tail -n 1 "$results" | cut -f3) s, cpu $(tail -n 2 "$results" | head -n 1 | cut -f3) s"
}

# the unpacked rootfs holds the image's known files, byte for byte
check_unpacked() {
  local m="$work/mnt" ok=0
  mkdir -p "$m"
  ctr 120 images mount --platform linux/amd64 "$ref" "$m" >"$logs/mount-$1.log" 2>&1 || { log "mount $1 failed"; return 1; }
  (cd "$m" && sha256sum --quiet -c opt/ipcs/SHA256SUMS) >"$logs/sums-$1.log" 2>&1 || { log "$1: SHA256SUMS failed"; ok=1; }
  ctr 120 images unmount --rm "$m" >/dev/null 2>&1 || umount "$m" 2>/dev/null || umount -l "$m"
  return $ok
}

cleanup() {
  local rc=$?
  set +e
  exec >&8 2>&9
  trap - EXIT INT TERM
  mountpoint -q "$work/mnt" 2>/dev/null && { umount "$work/mnt" || umount -l "$work/mnt"; }
  node_stop
  "$root/integration/images/registry.sh" stop "$reg_dir" >/dev/null 2>&1
  if [ "$rc" -ne 0 ]; then log "FAILED (exit status $rc); logs kept in $work"
  elif [ -n "${KEEP_WORK:-}" ]; then log "work dir kept: $work"
  else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------------- setup
mkdir -p "$work/bin"
[ -x "$root/target/release/ipcs" ] || { log "missing target/release/ipcs (cargo build --release)"; exit 1; }
cp "$root/target/release/ipcs" "$IPCS"
command -v unpigz >/dev/null || { log "unpigz missing (scripts/install-system-deps.sh installs pigz)"; exit 1; }
if grep -aq 'containerd.services.diff.v1.Diff' "$IPCS"; then
  differ_opts=(--differ ipcs); ipcs_label="ipcs content store + ipcs differ"
else
  differ_opts=(); ipcs_label="ipcs content store + walking differ (this ipcs build serves no Diff)"
fi
log "work dir $work; $IMAGE and $IMAGE-plain, $REPS repetitions; ipcs variant: $ipcs_label"
timeout 1800 "$root/integration/images/build-images.sh" --only "$IMAGE" "$IMAGES" >"$logs/build.log" 2>&1 \
  || { tail -n 20 "$logs/build.log" >&2; exit 1; }
python3 "$root/integration/differ/uncompressed_image.py" "$IMAGES/$IMAGE" "$IMAGES/$IMAGE-plain"
"$root/integration/images/registry.sh" start "$reg_dir" --port "$(free_port)" >/dev/null 2>"$logs/registry.log" 8>&- 9>&-
reg=$("$root/integration/images/registry.sh" hostport "$reg_dir")
for i in "$IMAGE" "$IMAGE-plain"; do
  timeout 900 skopeo copy --quiet --preserve-digests --dest-tls-verify=false \
    "oci:$IMAGES/$i:v1" "docker://$reg/ipcs/$i:v1" >>"$logs/push.log" 2>&1 || { cat "$logs/push.log" >&2; exit 1; }
done
size_of() { du -sb "$IMAGES/$1/blobs" | cut -f1; }
log "registry $reg: $IMAGE ($(size_of "$IMAGE") bytes of blobs), $IMAGE-plain ($(size_of "$IMAGE-plain") bytes)"

# ----------------------------------------------------------------------------- measure
for img in "$IMAGE" "$IMAGE-plain"; do
  for pigz in pigz nopigz; do
    # gzip is what pigz changes; the plain image is measured once, without it mattering
    [ "$img" = "$IMAGE-plain" ] && [ "$pigz" = nopigz ] && continue
    for r in $(seq 1 "$REPS"); do
      if [ $((r % 2)) = 1 ]; then order="builtin ipcs"; else order="ipcs builtin"; fi
      for v in $order; do one_run "$v" "$pigz" "$img" "$img-$pigz-$v-$r"; done
    done
  done
done

# ------------------------------------------------------------------------------ report
export BD_RESULTS="$results" BD_IMAGE="$IMAGE" BD_REPS="$REPS" BD_LABEL="$ipcs_label" \
  BD_CD="$CONTAINERD2_VERSION" BD_SIZE="$(size_of "$IMAGE")" BD_SIZE_PLAIN="$(size_of "$IMAGE-plain")" \
  BD_ELAPSED="$(( ($(date +%s%N) - started_ns) / 1000000000 ))" BD_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 - >"$work/table.md" <<'PY'
import collections, os, statistics
E = os.environ
vals = collections.defaultdict(list)
for line in open(E["BD_RESULTS"]):
    k, v, x = line.rstrip("\n").split("\t")
    vals[(k, v)].append(float(x))
def cell(k, v):
    xs = vals.get((k, v))
    if not xs:
        return "—", None
    m = statistics.median(xs)
    return (f"{m:.2f}" if len(xs) == 1 else f"{m:.2f} [{min(xs):.2f}–{max(xs):.2f}]"), m
img = E["BD_IMAGE"]
print(f"**7. containerd {E['BD_CD']}: {img} pulled with unpack, builtin = containerd's content store and "
      f"walking differ, ipcs = {E['BD_LABEL']}; {E['BD_REPS']} alternating repetitions, median [min–max]**")
print()
print("| measurement | builtin | ipcs | ipcs ÷ builtin | target | met |")
print("|---|---|---|---|---|---|")
mb = lambda n: f"{int(n) / 1e6:.0f} MB"
for name, label in ((img, f"{img}, gzip layers ({mb(E['BD_SIZE'])})"),
                    (img + "-plain", f"{img}-plain, uncompressed layers ({mb(E['BD_SIZE_PLAIN'])})")):
    for pigz in ("pigz", "nopigz"):
        key = f"{name}.{pigz}"
        if (f"total.{key}", "builtin") not in vals:
            continue
        tag = "unpigz on PATH" if pigz == "pigz" else "no unpigz (CONTAINERD_DISABLE_PIGZ=1)"
        for m, what, target in (("total", "pull+unpack (s)", 1.00),
                                ("inipfs", "pull+unpack until every blob is in Kubo too (s)", None),
                                ("unpack", "unpack phase alone (s)", None),
                                ("cpu", "CPU of all daemons until then (s)", None)):
            cb, b = cell(f"{m}.{key}", "builtin")
            ci, i = cell(f"{m}.{key}", "ipcs")
            r = i / b if b and i is not None else None
            met = "" if target is None or r is None else ("yes" if r <= target else "**no**")
            print(f"| {label}, {tag}: {what} | {cb} | {ci} | {f'{r:.2f}×' if r is not None else ''} | "
                  f"{f'≤ {target:.2f}×' if target else ''} | {met} |")
print()
print(f"(bench-differ: {int(E['BD_ELAPSED']) // 60} min {int(E['BD_ELAPSED']) % 60} s in all; every run on a fresh "
      "node; unpack = timed `ctr images pull` after `ctr content fetch` of every blob; CPU = containerd "
      "(with unpigz, its child) + ipcs + Kubo + the registry until every blob is in Kubo; load average at the end "
      f"{E['BD_LOAD']})")
PY
cat "$work/table.md"
[ -z "$OUT" ] || cp "$work/table.md" "$OUT"
