#!/usr/bin/env bash
# IPFS Cluster's CRDT pinset convergence at more peers than the swarm testbed has
# (docs/scale.md, "What to measure next"): for each K in BENCH_CRDT_PEERS ("4 16 32"),
# K pairs of Kubo + cluster peer on loopback (private swarm key and cluster secret, the
# testbeds' settings, no ipcs or containerd: this measures the pinset alone), then
# BENCH_CRDT_SAMPLES (5) probes: a pin added through peer 1's REST API, timed until every
# other peer's shared pinset lists it (GET /allocations/CID, polled every 5 ms by one
# thread per peer), and the same for a burst of BENCH_CRDT_BURST (20) pins (until every
# peer lists all of them). Prints a table and puts it into BENCHMARKS.md between
# "<!-- bench-crdt -->" markers (BENCH_CRDT_OUT; "-" = stdout only). ~6 min on 2 cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
SIZES="${BENCH_CRDT_PEERS:-4 16 32}"
SAMPLES="${BENCH_CRDT_SAMPLES:-5}"
BURST="${BENCH_CRDT_BURST:-20}"
OUT="${BENCH_CRDT_OUT:-$root/BENCHMARKS.md}"

exec 8>&1 9>&2
work=$(mktemp -d /tmp/ipcs-bench-crdt-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
# shellcheck source=integration/p2p-nodes.sh
. "$root/integration/p2p-nodes.sh"
P2P_DIR="$work" P2P_LOG="$logs/setup.log" P2P_NS=bench P2P_REBROADCAST=2s
p2p_network_init
results="$work/results.tsv"; : >"$results"
t_start=$(date +%s)

cleanup() {
  local rc=$?
  set +e
  exec 1>&8 2>&9
  p2p_stop_all
  if [ "$rc" -ne 0 ]; then say "bench-crdt failed (exit $rc); work dir kept: $work"; tail -n 20 "$P2P_LOG" 2>/dev/null | indent
  else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT

# probe K LABEL COUNT: COUNT fresh tiny blocks added to peer 1's Kubo, pinned through
# peer 1's cluster REST socket at once; prints the seconds until every other peer's
# pinset lists all of them. Unpins them afterwards.
probe() {
  local k=$1 label=$2 count=$3 i cids=() socks=()
  for i in $(seq 1 "$count"); do
    cids+=("$(echo "crdt probe $label $i $(date +%s%N)" | p2p_ipfs 1 30 add -Q --pin=false)") || return 1
  done
  for i in $(seq 2 "$k"); do socks+=("${P2P_REST[$i]#unix://}"); done
  python3 - "${P2P_REST[1]#unix://}" "${#cids[@]}" "${cids[@]}" "${socks[@]}" <<'PY'
import http.client, json, socket, sys, threading, time
class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path)
def call(path, method, url):
    c = Unix(path)
    try:
        c.request(method, url)
        r = c.getresponse(); r.read()
        return r.status
    finally:
        c.close()
first, n = sys.argv[1], int(sys.argv[2])
cids, socks = sys.argv[3:3 + n], sys.argv[3 + n:]
seen = {}
deadline = 60.0
def watch(sock):
    left = set(cids)
    while left and time.monotonic() - t0 < deadline:
        for c in list(left):
            try:
                if call(sock, "GET", f"/allocations/{c}") == 200:
                    left.discard(c)
            except OSError:
                pass
        if left:
            time.sleep(0.005)
    if not left:
        seen[sock] = time.monotonic() - t0
# Allocated to peer 1, whose Kubo holds the blocks: no other Kubo tries to fetch them.
c = Unix(first); c.request("GET", "/id"); me = json.loads(c.getresponse().read())["id"]; c.close()
t0 = time.monotonic()
for c in cids:
    st = call(first, "POST", f"/pins/{c}?name=crdt-probe&replication-min=1&replication-max=1&user-allocations={me}")
    if st >= 300:
        sys.exit(f"pin add {c}: HTTP {st}")
threads = [threading.Thread(target=watch, args=(s,)) for s in socks]
for t in threads: t.start()
for t in threads: t.join()
if len(seen) != len(socks):
    sys.exit(f"{len(socks) - len(seen)} peers never listed the pins within {deadline:.0f} s")
print(f"{max(seen.values()):.3f}")
PY
  local rc=$?
  for i in "${cids[@]}"; do p2p_cctl 1 pin rm --no-status "$i" >/dev/null 2>&1 || true; done
  return $rc
}

started=0
for k in $SIZES; do
  t0=$(now_ms)
  for n in $(seq $((started + 1)) "$k"); do
    p2p_kubo_start "$n" || { say "peer $n: kubo did not start"; exit 1; }
    # shellcheck disable=SC2046
    p2p_cluster_start "$n" $( [ "$n" -gt 1 ] && seq 1 $((n - 1)) ) || { say "peer $n: cluster did not start"; exit 1; }
  done
  started=$k
  p2p_cluster_wait_peers 1 "$k" || { say "peer 1 does not see $k cluster peers"; exit 1; }
  say "$k peers up ($(secs $(( $(now_ms) - t0 ))) s to start the new ones)"
  for s in $(seq 1 "$SAMPLES"); do
    x=$(probe "$k" "$k-$s" 1) || { say "$k peers: probe $s failed"; exit 1; }
    printf '%s\tone\t%s\n' "$k" "$x" >>"$results"
  done
  for s in $(seq 1 "$SAMPLES"); do
    x=$(probe "$k" "$k-b$s" "$BURST") || { say "$k peers: burst $s failed"; exit 1; }
    printf '%s\tburst\t%s\n' "$k" "$x" >>"$results"
  done
  printf '%s\tload\t%s\n' "$k" "$(cut -d' ' -f1 /proc/loadavg)" >>"$results"
done

elapsed=$(( $(date +%s) - t_start ))
table="$work/table.md"
BURST=$BURST ELAPSED=$elapsed python3 - "$results" >"$table" <<'PY'
import os, sys
from collections import defaultdict
E = os.environ
v = defaultdict(lambda: defaultdict(list))
for line in open(sys.argv[1]):
    k, what, x = line.rstrip("\n").split("\t")
    v[int(k)][what].append(float(x))
def med(xs):
    xs = sorted(xs); return xs[len(xs) // 2], xs[0], xs[-1]
print("<!-- bench-crdt -->")
print("### IPFS Cluster CRDT pinset convergence by number of peers (issue 13; `make bench-crdt`)")
print()
print("K Kubo + IPFS Cluster peers on loopback (CRDT consensus, rebroadcast 2 s, every peer "
      "bootstrapped to all earlier ones), one 2-core machine. A probe pins through peer 1's REST "
      "socket and times until every other peer's shared pinset lists the pin (`GET /allocations/CID`, "
      f"one poller per peer every 5 ms); a burst pins {E['BURST']} CIDs at once and times until every "
      "peer lists all of them. Median [min–max] of the samples, seconds.")
print()
print("| peers | one pin | burst of %s pins | load average after |" % E["BURST"])
print("|---|---|---|---|")
for k in sorted(v):
    o, b = med(v[k]["one"]), med(v[k]["burst"])
    print(f"| {k} | {o[0]:.3f} [{o[1]:.3f}–{o[2]:.3f}] | {b[0]:.3f} [{b[1]:.3f}–{b[2]:.3f}] | "
          f"{v[k]['load'][0]:.2f} |")
print()
print(f"(bench-crdt: {int(E['ELAPSED']) // 60} min {int(E['ELAPSED']) % 60} s in all.)")
print("<!-- /bench-crdt -->")
PY
cat "$table"
write_section bench-crdt "$OUT" "$table"
