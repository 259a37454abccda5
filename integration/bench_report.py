#!/usr/bin/env python3
"""The report of `make bench`: reads the raw results integration/bench.sh recorded
(BENCH_RESULTS, one "KEY<TAB>VARIANT<TAB>VALUE" line per measurement) and the run's facts
from BENCH_* environment variables, prints the table and writes BENCHMARKS.md (BENCH_OUT,
"-" = print only), keeping anything below its "<!-- notes -->" line."""
import os, statistics, platform, re, subprocess, datetime, collections

E = os.environ
vals = collections.defaultdict(list)
for line in open(E["BENCH_RESULTS"]):
    k, v, x = line.rstrip("\n").split("\t")
    vals[(k, v)].append(x)

def nums(k, v):
    return [float(x) for x in vals.get((k, v), [])]

def med(k, v):
    xs = nums(k, v)
    return statistics.median(xs) if xs else None

def fmt(x, d=2):
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{d}f}"

def cell(k, v, d=2):
    xs = nums(k, v)
    if not xs:
        return "—"
    m = statistics.median(xs)
    if len(xs) == 1:
        return f"{fmt(m, d)} (1 run)"
    return f"{fmt(m, d)} [{fmt(min(xs), d)}–{fmt(max(xs), d)}]"

rows = []
def row(label, k, unit, vb="builtin", vi="ipcs", target=None, higher=False, d=2, ratio=True, show_b=True):
    b, i = med(k, vb), med(k, vi)
    r = i / b if (ratio and b and i is not None) else None
    verdict = ""
    if target is not None and r is not None:
        ok = r >= target if higher else r <= target
        verdict = ("yes" if ok else "**no**")
    tgt = "" if target is None else (f"≥ {target:.2f}×" if higher else f"≤ {target:.2f}×")
    rows.append((f"{label} ({unit})", cell(k, vb, d) if show_b else "", cell(k, vi, d),
                 f"{r:.2f}×" if r is not None else "", tgt, verdict))

def row_abs(label, unit, value_cell, target, ok):
    rows.append((f"{label} ({unit})", "", value_cell, "", target, "yes" if ok else "**no**"))

def section(title):
    rows.append((f"**{title}**", "", "", "", "", ""))

N = int(E["BENCH_META_N"])
ing = int(E["BENCH_INGEST_N"]); rd = int(E["BENCH_READ_N"])
def size(n):
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB"

if any(k == "pull.total" for k, _ in vals):
    section(f"1. pull of huge ({E['BENCH_HUGE']}), ctr 1.6, plain HTTP, with unpack")
    row("pull total", "pull.total", "s", target=1.10)
    row("  fetch phase (registry → store)", "pull.fetch", "s")
    row("  unpack phase (ctr \"done:\")", "pull.unpack", "s")
    if ("pull.disk", "builtin") in vals:
        row("disk after the pull: content dir / ipcs data dir + Kubo repo growth", "pull.disk", "MB", target=1.10, d=1)
        rows.append(("  ipcs data dir / Kubo repo growth (MB)", "",
                     f"{cell('pull.disk_data', 'ipcs', 1)} / {cell('pull.disk_kubo', 'ipcs', 1)}", "", "", ""))
    row("  containerd peak RSS (ipcs column: with the proxy)", "pull.containerd_hwm", "MiB", ratio=False, d=1)
    rows.append(("  ipcs peak RSS (MiB)", "", cell("pull.ipcs_hwm", "ipcs", 1), "", "", ""))
    rows.append(("  Kubo peak RSS (MiB)", "", cell("pull.kubo_hwm", "ipcs", 1), "", "", ""))
    if ("pull.cpu.containerd", "builtin") in vals:
        row("  CPU: containerd (+ its unpigz children)", "pull.cpu.containerd", "s")
        row("  CPU: registry", "pull.cpu.registry", "s")
        rows.append(("  CPU: ipcs / Kubo (s)", "", f"{cell('pull.cpu.ipcs', 'ipcs')} / {cell('pull.cpu.kubo', 'ipcs')}",
                     "", "", ""))
        tb = sum(med(f"pull.cpu.{p}", "builtin") or 0 for p in ("containerd", "registry"))
        ti = sum(med(f"pull.cpu.{p}", "ipcs") or 0 for p in ("containerd", "registry", "ipcs", "kubo"))
        rows.append(("  CPU: all daemons together (s)", fmt(tb), fmt(ti), f"{ti / tb:.2f}×" if tb else "", "", ""))
if any(k == "ingest.mbps" for k, _ in vals):
    section(f"2. ingest of one {size(ing)} blob through the Write stream (1 MiB messages)")
    row("Write stream → commit", "ingest.mbps", "MB/s", target=0.8, higher=True)
    row("  via containerd → ipcs proxy", "ingest.mbps", "MB/s", vi="proxy", higher=True, show_b=False)
    row("  `ipfs add` of the same file alone", "ingest.mbps", "MB/s", vi="ipfsadd", higher=True, show_b=False)
    row("  commit phase (COMMIT → response)", "ingest.commit_s", "s")
    cm = vals.get(("ingest.cid_match", "-"), ["?"])[0]
    rows.append(("  ipcs CID = `ipfs add` CID", "", cm, "", "", ""))
if any(k.startswith("read.") for k, _ in vals):
    section(f"3. reads of a {size(rd)} blob, sequential, one Read stream per chunk")
    row("32 KiB per Read", "read.32KiB.mbps", "MB/s", target=0.9, higher=True)
    rows.append(("  32 KiB per Read, p50 per RPC (ms)", cell("read.32KiB.p50", "builtin", 3),
                 cell("read.32KiB.p50", "ipcs", 3), "", "", ""))
    b = med("read.32KiB.mbps", "builtin"); p = med("read.32KiB.mbps", "proxy")
    rows.append(("  32 KiB via containerd → ipcs proxy (MB/s)", "", cell("read.32KiB.mbps", "proxy"),
                 f"{p / b:.2f}×" if b and p else "", "", ""))
    b = med("read.1MiB.mbps", "builtin"); i = med("read.1MiB.mbps", "ipcs")
    rows.append(("1 MiB per Read (MB/s)", cell("read.1MiB.mbps", "builtin"), cell("read.1MiB.mbps", "ipcs"),
                 f"{i / b:.2f}×" if b and i else "", "≥ 0.90×", ("yes" if i / b >= 0.9 else "**no**") if b and i else ""))
    p = med("read.1MiB.mbps", "proxy")
    rows.append(("  1 MiB via containerd → ipcs proxy (MB/s)", "", cell("read.1MiB.mbps", "proxy"),
                 f"{p / b:.2f}×" if b and p else "", "", ""))
if ("ingest.ipcs_hwm", "ipcs") in vals:
    section(f"4. memory during the {size(ing)} ingest (VmHWM of a fresh process)")
    h = med("ingest.ipcs_hwm", "ipcs"); mx = max(nums("ingest.ipcs_hwm", "ipcs"))
    rows.append(("ipcs peak RSS (MiB)", "", cell("ingest.ipcs_hwm", "ipcs", 1), "", "≤ 64 MiB",
                 "yes" if mx <= 64 else "**no**"))
    rows.append(("  containerd (builtin) / Kubo peak RSS (MiB)", cell("ingest.containerd_hwm", "builtin", 1),
                 "Kubo " + cell("ingest.kubo_hwm", "ipcs", 1), "", "", ""))
if ("meta.info.p50", "ipcs") in vals:
    section(f"5. metadata with {N:,} tiny blobs committed".replace(",", " "))
    row(f"Info p50, {N} blobs", "meta.info.p50", "ms", d=3)
    row(f"Info p99, {N} blobs", "meta.info.p99", "ms", d=3)
    row("commit latency p50, ~0 blobs", "meta.commit0.p50", "ms", d=2)
    row(f"commit latency p50, {N} blobs", "meta.commitN.p50", "ms", d=2)
    gb = (med("meta.commitN.p50", "builtin") or 0) / (med("meta.commit0.p50", "builtin") or 1)
    gi = (med("meta.commitN.p50", "ipcs") or 0) / (med("meta.commit0.p50", "ipcs") or 1)
    rows.append((f"commit latency growth, {N} vs 0 blobs", f"{gb:.2f}×", f"{gi:.2f}×", "",
                 "ipcs ≤ 1.20×", "yes" if gi <= 1.2 else "**no**"))
    rows.append((f"  Kubo add+pin of 64 B alone, p50, ~0 → {N} pins (ms)", "",
                 f"{fmt(med('meta.kubo_add0.p50', 'ipcs'), 2)} → {fmt(med('meta.kubo_addN.p50', 'ipcs'), 2)}", "", "", ""))
    rows.append((f"  time to commit {N} blobs, concurrency 8 (s)", cell("meta.populate_s", "builtin", 1),
                 cell("meta.populate_s", "ipcs", 1), "", "", ""))
    if ("meta.infoB.p50", "ipcs") in vals:
        B = int(E["BENCH_META_BIG_N"])
        nb = "not run (see method)"
        rows.append((f"Info p50, {B} blobs (ms)", nb, cell("meta.infoB.p50", "ipcs", 3), "", "", ""))
        p99 = med("meta.infoB.p99", "ipcs")
        rows.append((f"Info p99, {B} blobs (ms)", nb, cell("meta.infoB.p99", "ipcs", 3), "", "≤ 1 ms",
                     "yes" if p99 is not None and p99 <= 1.0 else "**no**"))
        gB = (med("meta.commitB.p50", "ipcs") or 0) / (med("meta.commit0.p50", "ipcs") or 1)
        rows.append((f"commit latency p50, {B} blobs (ms)", nb, cell("meta.commitB.p50", "ipcs", 2),
                     "", "", ""))
        rows.append((f"  commit latency growth, {B} vs 0 blobs", "", f"{gB:.2f}×", "", "", ""))
        rows.append((f"  time to grow from {N} to {B} blobs, concurrency 16 (s)", "",
                     cell("meta.populateB_s", "ipcs", 1), "", "", ""))
if any(k == "p2p.total" for k, _ in vals):
    section("6. peer to peer: a fresh node B pulls huge while node A holds it; builtin column: "
            "B with containerd's own store; ratio column: from peers ÷ from the registry")
    def p2p_pair(label, key, unit, target=None, d=2):
        p, r = med(key, "peers"), med(key, "registry")
        ratio = p / r if p is not None and r else None
        verdict = "" if target is None or ratio is None else ("yes" if ratio <= target else "**no**")
        rows.append((f"{label} from peers, registry stopped ({unit})", "", cell(key, "peers", d),
                     f"{ratio:.2f}×" if ratio is not None else "", f"≤ {target:.2f}×" if target else "", verdict))
        rows.append((f"{label} from the registry ({unit})", cell(key, "builtin", d), cell(key, "registry", d),
                     "", "", ""))
    p2p_pair("node B pull", "p2p.total", "s", target=1.20)
    p2p_pair("  fetch phase,", "p2p.fetch", "s")
    p2p_pair("  unpack phase,", "p2p.unpack", "s")
    for v, what in (("peers", "from peers"), ("registry", "from the registry")):
        rows.append((f"  B's ipcs; Kubo peak RSS, {what} (MiB)", "",
                     f"ipcs {cell('p2p.ipcs_hwm', v, 1)}; Kubo {cell('p2p.kubo_hwm', v, 1)}", "", "", ""))
    fp = [int(x) for x in nums("p2p.from_peers", "peers")]
    if fp:
        rng = f"{min(fp)}" if min(fp) == max(fp) else f"{min(fp)}–{max(fp)}"
        rows.append(("  blobs B's ipcs obtained from peers, verified, per pull", "", f"{rng} of {E['BENCH_HUGE_BLOBS']}",
                     "", "", ""))

hdr = ("measurement", "builtin: median [min–max]", "ipcs: median [min–max]", "ipcs ÷ builtin", "target", "met")
table = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] * len(hdr)) + "|"]
table += ["| " + " | ".join(r) + " |" for r in rows]
table = "\n".join(table)

def cpu_model():
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            return l.split(":", 1)[1].strip()
    return "?"
mem = next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
loads = ", ".join(f"{k[0].split('.', 1)[1]} {v[0]}" for k, v in vals.items() if k[0].startswith("load."))
info = f"""- date: {now}; whole run {int(E['BENCH_ELAPSED']) // 60} min {int(E['BENCH_ELAPSED']) % 60} s
- machine: {os.cpu_count()} CPUs (nproc {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}), {cpu_model()}, {int(mem) / 2**20:.1f} GiB RAM, kernel {platform.release()}
- load average (1 min) after each section: {loads or '?'} (shared machine)
- containerd {E['BENCH_CD']} (Debian), Kubo {E['BENCH_KUBO']}, ipcs {E['BENCH_REV']}
- {E['BENCH_REPS_N']} repetitions per measurement unless marked "1 run"; median [min–max]; ratio = ipcs median ÷ builtin median"""

method = f"""Method (integration/bench.sh, client examples/content_bench.rs):
- builtin = containerd 1.6 with its own content store; ipcs = ipcs's socket directly (for pulls,
  containerd 1.6 with ipcs as its content proxy plugin); "via containerd → ipcs proxy" = the
  client talks to containerd, which forwards to ipcs (what containerd's own pulls and unpacks do).
- pull: every repetition on fresh containerd, ipcs and Kubo directories (empty store), builtin and
  ipcs alternating, one untimed warm-up pull of each first; fetch = total − ctr's unpack time.
- ingest: deterministic PRNG data, sha256 computed in a first pass, then streamed as 1 MiB WRITE
  messages, one in flight (as containerd's writer), then COMMIT with the expected digest; fresh
  daemons and Kubo repo per repetition; `ipfs add --cid-version 1 --raw-leaves --chunker
  size-262144 --pin` of the same bytes from a file. MB/s = 10^6 bytes/s.
- read: one Read stream per chunk, sequential, after an untimed verified read of the whole blob
  (both stores serve from the page cache).
- metadata: {N} distinct 64-byte blobs written with 8 concurrent Write streams; 1000 Info calls on
  random ones per round; commit latency = one whole Write stream (stat, write, commit) of a
  64-byte blob, 20 per round, p50 per round; rounds: {E['BENCH_REPS_N']}. ipcs is then grown to
  {E['BENCH_META_BIG_N']} blobs the same way (16 concurrent Write streams, every blob imported and pinned
  in Kubo) and Info/commit latency are measured again over all of them; containerd's store is not
  grown (its commits ran at 56–292 a second in our runs: 100 000 would add 6–30 minutes), and that
  target is absolute (p99 ≤ 1 ms).
- p2p: node A = Kubo (private swarm key) + IPFS Cluster peer (CRDT, replication 1) + ipcs
  (cluster, registry mirror) + containerd 1.6, which pulled huge once through its mirror and
  published it. Each pull is by a fresh node B (new Kubo repo peered with A, new cluster peer
  joined to A, new ipcs data dir, new containerd dir), `ctr images pull --hosts-dir` with
  unpack; builtin, registry and peers alternate, one untimed warm-up pull of each first.
  from peers: B's hosts.toml lists B's ipcs mirror, then the registry; B waits until its cluster
  peer holds A's pins, then the registry is stopped (curl checked before and after the pull) and
  B's ipcs log must show blobs "obtained from peers, verified". From the registry (ipcs column):
  B's hosts.toml lists only the registry and B's ipcs runs without the cluster API and mirror
  (its Kubo and cluster peer still run, peered and synced): ctr polls Info on every blob while
  pulling and ipcs answers an Info miss from peers, so with the cluster this variant still took
  blobs from A. Its log must show no blob from peers, the registry log blob requests.
  builtin column: B is containerd 1.6 with its own store and the registry-only hosts.toml,
  measured in this section alongside the others (section 1's figures are not reused)."""

differ_md = ""
if os.path.exists(E.get("BENCH_DIFFER_MD", "")):
    differ_md = open(E["BENCH_DIFFER_MD"]).read() + "\n"
doc = f"""# ipcs benchmarks

Generated by `make bench` (integration/bench.sh). Do not edit above the notes marker: the next run
rewrites it.

{info}

{table}

{differ_md}{method}
"""
print()
print(table)
print()
if differ_md:
    print(differ_md)
print(info)
out = E["BENCH_OUT"]
if out != "-":
    notes = ""
    if os.path.exists(out):
        old = open(out).read()
        if "<!-- notes -->" in old:
            notes = old[old.index("<!-- notes -->"):]
    open(out, "w").write(doc + "\n" + (notes or "<!-- notes -->\n"))
    print(f"\nwritten to {out}")
