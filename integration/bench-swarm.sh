#!/usr/bin/env bash
# Bench of the swarm testbed (integration/swarm-testbed.sh, issue 13): the registry in its
# own network namespace behind a BENCH_SWARM_RATE (100mbit) tbf link, BENCH_SWARM_N (4) nodes
# pulling BENCH_SWARM_IMAGE (big, ~87 MB) with `ctr images pull` (fetch + unpack), once
# with containerd 2.x's built-in content store (every node downloads from the registry) and
# once with ipcs (Kubo + IPFS Cluster + ipcs with in-flight sharing), side by side in one run.
# Every scenario starts from fresh nodes.
#
#   a. staggered: node 1 pulls, then 2, ..., N, one after the other; then node 1's lone
#      pull BENCH_SWARM_SOLO_REPS (3) more times, built-in and ipcs alternating
#   b. herd: all N start within one second
#   c. late join: N-1 nodes hold the image (pulled as a herd); node N starts and pulls
#   d. herd in which the node leading the largest layer has its ipcs killed (-9) at ~50%
#      of that layer (built-in: the herd of b, nobody killed)
# and, once all N cluster peers are up (in c), the CRDT pinset's convergence time.
#
# Registry egress is the veth's tx_bytes inside the registry's namespace. Prints a table
# and puts it into BENCHMARKS.md between "<!-- bench-swarm -->" markers (BENCH_SWARM_OUT;
# "-" = stdout only). ~8 min on 2 cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
N="${BENCH_SWARM_N:-4}"
IMG="${BENCH_SWARM_IMAGE:-big}"
OUT="${BENCH_SWARM_OUT:-$root/BENCHMARKS.md}"

exec 8>&1 9>&2
work=$(mktemp -d /tmp/ipcs-bench-swarm-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
# shellcheck source=integration/p2p-nodes.sh
. "$root/integration/p2p-nodes.sh"
P2P_DIR="$work" P2P_LOG="$logs/setup.log" P2P_NS=bench P2P_CONTAINERD=2 P2P_REBROADCAST=2s
TB_RATE="${BENCH_SWARM_RATE:-100mbit}" TB_STALL="${BENCH_SWARM_STALL:-10}"
# shellcheck source=integration/swarm-testbed.sh
. "$root/integration/swarm-testbed.sh"
p2p_network_init
results="$work/results.tsv"; : >"$results"
t_start=$(date +%s)

cleanup() {
  local rc=$?
  set +e
  exec 1>&8 2>&9
  p2p_stop_all
  tb_down
  if [ "$rc" -ne 0 ]; then say "bench-swarm failed (exit $rc); work dir kept: $work"; tail -n 20 "$P2P_LOG" 2>/dev/null | indent
  else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }   # record KEY STORE VALUE

tb_up
tb_push "$IMG"
REF="$TB_REG/ipcs/$IMG:v1"
manifest=$(jq -r '.manifests[0].digest' "$IMAGES/$IMG/index.json")
mjson="$IMAGES/$IMG/blobs/sha256/${manifest#sha256:}"
IMAGE_BYTES=$(jq '[.config.size, (.layers[].size)] | add' "$mjson")
LAYERS=$(jq '.layers | length' "$mjson")
BIG_LAYER=$(jq -r '.layers | max_by(.size) | .digest' "$mjson")
BIG_LAYER_BYTES=$(jq '.layers | max_by(.size) | .size' "$mjson")
say "registry $TB_REG behind $TB_RATE; $N nodes; $IMG = $IMAGE_BYTES bytes in blobs"

start_swarm() {  # start_swarm I...: ipcs nodes joining those started before
  local n prev=()
  for n in "$@"; do tb_node_up "$n" "${prev[@]}"; prev+=("$n"); done
}
start_builtin() { local n; for n in "$@"; do tb_builtin_up "$n"; done; }

# pull_all STORE SCENARIO NODE...: the nodes pull at once; records each node's seconds,
# the wall time until the last finished, and fails if any pull failed (except $SKIP).
pull_all() {
  local store=$1 sc=$2 n pids=() t0 node
  shift 2
  t0=$(now_ms)
  for n in "$@"; do
    node=$n; [ "$store" = builtin ] && node="b$n"
    ( rc=0; tb_pull "$node" "$REF" >"$work/time-$n" || rc=$?; echo "$rc" >"$work/rc-$n" ) &
    pids+=($!)
  done
  wait "${pids[@]}" || true
  record "$sc.wall" "$store" "$(secs $(( $(now_ms) - t0 )))"
  for n in "$@"; do
    [ "${SKIP:-}" = "$n" ] && continue
    [ "$(cat "$work/rc-$n")" = 0 ] || { say "$store $sc: node $n's pull failed"; return 1; }
    record "$sc.node$n" "$store" "$(secs "$(cat "$work/time-$n")")"
  done
}

egress() { record "$1.egress" "$2" "$(tb_egress "$3" | cut -d' ' -f1)"; }

# crdt_convergence: IPFS Cluster's CRDT pinset on its own, 5 samples: a pin added through
# node 1's cluster peer, timed until every other peer's pinset lists it (the shared pinset,
# GET /allocations/CID on each peer's REST socket, not the pinning status). The probe CIDs
# are tiny blocks in node 1's Kubo, unpinned again after each sample.
crdt_convergence() {
  local i cid t0 n sock ok
  for i in 1 2 3 4 5; do
    cid=$(echo "crdt probe $i $(date +%s%N)" | p2p_ipfs 1 30 add -Q --pin=false) || return 1
    t0=$(now_ms)
    p2p_cctl 1 pin add --no-status --name "crdt-probe-$i" "$cid" >/dev/null || return 1
    for n in $(seq 2 "$N"); do
      sock=${P2P_REST[$n]#unix://} ok=""
      for _ in $(seq 1 1500); do
        curl -sf --max-time 2 --unix-socket "$sock" "http://localhost/allocations/$cid" >/dev/null && { ok=1; break; }
        sleep 0.01
      done
      [ -n "$ok" ] || { say "crdt probe $i: node $n's pinset never listed $cid"; return 1; }
    done
    record "crdt.$i" ipcs "$(awk -v ms=$(( $(now_ms) - t0 )) 'BEGIN { printf "%.3f", ms / 1000 }')"
    p2p_cctl 1 pin rm --no-status "$cid" >/dev/null || true
  done
}

# scenario STORE SC START PULL...: starts the nodes listed in START (builtin or ipcs; ""
# when the caller started them), marks the registry's egress, pulls on PULL... (scenario
# a: one node after another, else all at once), records the egress, stops every node.
scenario() {
  local store=$1 sc=$2 start=$3 n m
  shift 3
  if [ -n "$start" ]; then
    if [ "$store" = builtin ]; then start_builtin $start; else start_swarm $start; fi
  fi
  m=$(tb_mark)
  if [ "$sc" = a ]; then for n in "$@"; do pull_all "$store" "$sc" "$n"; done
  else pull_all "$store" "$sc" "$@"; fi
  egress "$sc" "$store" "$m"
  [ "$store" = builtin ] || applied "$sc" "$@"
  tb_nodes_down
}

# applied SC NODE...: how many layers ipcs's differ applied on those nodes (containerd 2.x
# unpacks through it, P2P_DIFFER), so the table shows which applier ipcs's pulls used.
applied() {
  local sc=$1 n total=0 x
  shift
  for n in "$@"; do
    x=$(p2p_metric "$n" ipcs_differ_layers_applied_total 2>/dev/null) || x=0
    total=$(( total + ${x%.*} ))
  done
  record "$sc.applied" ipcs "$total"
}

all_nodes=$(seq 1 "$N")

# ------------------------------------------------------------------ built-in content store
say "built-in: a. staggered"
scenario builtin a "$all_nodes" $all_nodes
say "built-in: b. herd"
scenario builtin b "$all_nodes" $all_nodes
say "built-in: c. late join (a fresh node pulls alone)"
scenario builtin c "$N" "$N"

# ------------------------------------------------------------------------------------- ipcs
say "ipcs: a. staggered"
scenario ipcs a "$all_nodes" $all_nodes
say "ipcs: b. herd"
scenario ipcs b "$all_nodes" $all_nodes

# A lone pull is the closest comparison (nothing to gain from peers, only the mirror's
# hops to lose) and one sample of it moves by ±0.5 s here: node 1's pull of a, again
# BENCH_SWARM_SOLO_REPS (3) times, built-in and ipcs alternating, from fresh nodes.
for rep in $(seq 1 "${BENCH_SWARM_SOLO_REPS:-3}"); do
  say "node 1 alone, sample $rep: built-in, then ipcs"
  start_builtin 1
  pull_all builtin "a1.$rep" 1
  tb_nodes_down
  start_swarm $all_nodes
  pull_all ipcs "a1.$rep" 1
  tb_nodes_down
done

say "ipcs: c. late join"
start_swarm $(seq 1 $((N - 1)))
pull_all ipcs c-first $(seq 1 $((N - 1)))
t0=$(now_ms)
tb_node_up "$N" $(seq 1 $((N - 1)))
record c.join ipcs "$(secs $(( $(now_ms) - t0 )))"
say "ipcs: CRDT pinset convergence across the $N cluster peers"
crdt_convergence
scenario ipcs c "" "$N"

say "ipcs: d. herd, the leader of the largest layer killed at ~50%"
start_swarm $all_nodes
m=$(tb_mark)
leader="" size=0 pids=()
t0=$(now_ms)
for n in $all_nodes; do
  ( rc=0; tb_pull "$n" "$REF" >"$work/time-$n" || rc=$?; echo "$rc" >"$work/rc-$n" ) &
  pids+=($!)
done
for _ in $(seq 1 2400); do
  if l=$(tb_inflight_leader "$all_nodes" "$BIG_LAYER"); then
    f=$(ls "$work/$l/data/inflight/${BIG_LAYER#sha256:}"-* 2>/dev/null | head -1) || true
    s=$( [ -n "$f" ] && stat -c %s "$f" 2>/dev/null || echo 0)
    if [ "$s" -ge $((BIG_LAYER_BYTES / 2)) ]; then
      leader=$l size=$s
      kill -9 "${P2P_PID[$leader]}"
      say "killed node $leader's ipcs at $size of $BIG_LAYER_BYTES bytes of ${BIG_LAYER:7:12}"
      break
    fi
  fi
  sleep 0.05
done
wait "${pids[@]}" || true
record d.wall ipcs "$(secs $(( $(now_ms) - t0 )))"
[ -n "$leader" ] || { say "no leader found for ${BIG_LAYER:7:12}"; exit 1; }
record d.killed ipcs "$leader"
for n in $all_nodes; do
  [ "$n" = "$leader" ] && continue
  [ "$(cat "$work/rc-$n")" = 0 ] || { say "ipcs d: node $n's pull failed"; exit 1; }
  record "d.node$n" ipcs "$(secs "$(cat "$work/time-$n")")"
done
egress d ipcs "$m"
grep -h "in-flight: source [a-z]* digest=$BIG_LAYER source=Registry" "$work"/*/ipcs.log >"$work/d-takeover.txt" 2>/dev/null || true
cp "$work"/[0-9]*/ipcs.log "$logs/" 2>/dev/null || true
tb_nodes_down

elapsed=$(( $(date +%s) - t_start ))
table="$work/table.md"
IMAGE_BYTES=$IMAGE_BYTES LAYERS=$LAYERS DIFFER=$P2P_DIFFER N=$N RATE=$TB_RATE IMG=$IMG ELAPSED=$elapsed STALL=$TB_STALL \
LOAD="$(cut -d' ' -f1-3 /proc/loadavg)" python3 - "$results" >"$table" <<'PY'
import os, sys
E = os.environ
v = {}
for line in open(sys.argv[1]):
    k, s, x = line.rstrip("\n").split("\t")
    v[(k, s)] = x
N, size = int(E["N"]), int(E["IMAGE_BYTES"])
def f(k, s):
    x = v.get((k, s)); return float(x) if x is not None else None
def ratio(a, b): return f"{a / b:.2f}×" if a is not None and b else ""
print("<!-- bench-swarm -->")
print(f"### Peer to peer behind one slow registry link (issue 13; `make bench-swarm`)")
print()
print(f"{N} nodes, registry in its own network namespace behind `tc tbf` at {E['RATE']}, image "
      f"{E['IMG']} ({size / 1e6:.1f} MB of blobs), `ctr images pull` (containerd 2.x, fetch + unpack) "
      f"on every node; in-flight stall deadline {E['STALL']} s. Egress = the veth's tx_bytes in the "
      f"registry's namespace (every byte that crossed the link). Built-in = containerd's own "
      f"content store, every node pulling from the registry. ipcs's nodes unpack with "
      f"{'ipcs applying the layers (diff proxy plugin)' if E['DIFFER'] == 'ipcs' else 'containerd walking differ'}: "
      f"layers applied by ipcs's differ in a and b: {v.get(('a.applied', 'ipcs'), '?')} and "
      f"{v.get(('b.applied', 'ipcs'), '?')} of {N} × {E['LAYERS']}.")
print()
print("| scenario | measurement | built-in | ipcs | ipcs ÷ built-in | target | met |")
print("|---|---|---|---|---|---|---|")
def row(sc, what, b, i, target=None, le=True, fmt="{:.1f}"):
    r = i / b if (i is not None and b) else None
    met = ""
    if target is not None and r is not None:
        met = "yes" if r <= target else "**no**"
    cb = fmt.format(b) if b is not None else ""
    ci = fmt.format(i) if i is not None else ""
    print(f"| {sc} | {what} | {cb} | {ci} | {f'{r:.2f}×' if r is not None else ''} | {f'≤ {target:.2f}×' if target else ''} | {met} |")
names = {"a": "a. staggered", "b": "b. herd", "c": "c. late join", "d": "d. leader killed"}
for sc in "abcd":
    eg_b = f(f"{sc}.egress", "builtin") if sc != "d" else f("b.egress", "builtin")
    eg_i = f(f"{sc}.egress", "ipcs")
    if eg_i is not None:
        # Egress as a multiple of the image: built-in N×, target 1.1× for a and b.
        mb, mi = (eg_b / size if eg_b else None), eg_i / size
        t = 1.1 if sc in "ab" else None
        met = "" if t is None else ("yes" if mi <= t else "**no**")
        print(f"| {names[sc]} | registry egress, × image size | {f'{mb:.2f}×' if mb is not None else ''} | {mi:.2f}× | "
              f"{ratio(eg_i, eg_b)} | {f'≤ {t:.2f}× image' if t else ''} | {met} |")
    if sc == "b":
        row(names[sc], "wall time until all pulled and unpacked (s)", f("b.wall", "builtin"), f("b.wall", "ipcs"), 0.5)
    if sc == "a":
        solo = {st: sorted(float(x) for (k, s), x in v.items() if k.startswith("a1.") and k.endswith(".node1") and s == st)
                for st in ("builtin", "ipcs")}
        if solo["builtin"] and solo["ipcs"]:
            med = {st: xs[len(xs) // 2] for st, xs in solo.items()}
            r = med["ipcs"] / med["builtin"]
            spread = {st: f"{xs[0]:.1f}–{xs[-1]:.1f}" for st, xs in solo.items()}
            print(f"| {names[sc]} | node 1 pull, median of {len(solo['ipcs'])} more samples alternating with the built-in "
                  f"[range] (s) | {med['builtin']:.1f} [{spread['builtin']}] | {med['ipcs']:.1f} [{spread['ipcs']}] | "
                  f"{r:.2f}× | ≤ 1.10× | {'yes' if r <= 1.10 else '**no**'} |")
    worst = None
    for n in range(1, N + 1):
        ref_sc = {"a": "a", "b": "b", "c": "c", "d": "b"}[sc]
        bn = f(f"{ref_sc}.node{n}", "builtin")
        inn = f(f"{sc}.node{n}", "ipcs")
        if inn is None or bn is None:
            continue
        row(names[sc], f"node {n} pull (s)", bn, inn, 1.10)
    if sc == "d":
        print(f"| {names[sc]} | node killed (its own pull fails with it) | | node {v.get(('d.killed', 'ipcs'), '?')} | | | |")
    if sc == "c" and f("c.join", "ipcs") is not None:
        print(f"| {names[sc]} | node start (Kubo, cluster peer, ipcs, containerd) (s) | | {f('c.join', 'ipcs'):.1f} | | | |")
    crdt = sorted(float(x) for (k, s), x in v.items() if k.startswith("crdt.") and s == "ipcs")
    if sc == "c" and crdt:
        med = crdt[len(crdt) // 2]
        print(f"| {names[sc]} | CRDT pinset convergence: a pin on node 1 until all {N - 1} other pinsets list it (s), "
              f"median [min–max] of {len(crdt)} | | {med:.3f} [{crdt[0]:.3f}–{crdt[-1]:.3f}] | | | |")
print()
print(f"(bench-swarm: {int(E['ELAPSED']) // 60} min {int(E['ELAPSED']) % 60} s in all; load average at the end {E['LOAD']}; "
      "per-node targets compare each node with the same node of the built-in run of the same scenario, d with b's.)")
print("<!-- /bench-swarm -->")
PY
cat "$table"
say "takeover of ${BIG_LAYER:7:12} in d:"; cut -c1-260 "$work/d-takeover.txt" | indent
write_section bench-swarm "$OUT" "$table"
