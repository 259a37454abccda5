#!/usr/bin/env python3
"""Random layers over random bases (a small name space of files, directories, symlinks
with escaping targets, hard links, whiteouts, opaque markers, FIFOs), applied by
containerd's archive.Apply and by ipcs's applier in both modes; any difference in outcome
or tree is printed with its seed.   fuzz.py [FIRST_SEED [COUNT]]"""
import random, sys, os, tarfile
_src = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.py")).read()
_marker = "# ---------------------------------------------------------------- layer builders"
exec(_src.split(_marker)[0])
exec(_src.split(_marker)[1].split("BASE = tar(")[0])

NAMES = ["a", "b", "c", "a/x", "a/y", "b/x", "a/x/z", "c/d/e", "l1", "a/l2"]
TARGETS = ["a", "b", "/a", "../b", "../../..", "/", "a/x", "x", "c/d", "nope", "/etc", "../a/x", "l1", "."]

def rand_layer(rng, n):
    es = []
    for _ in range(n):
        name = rng.choice(NAMES)
        k = rng.random()
        if k < 0.25:
            es.append(F(name, bytes(rng.randrange(256) for _ in range(rng.randrange(5))), mode=rng.choice([0o644, 0o755, 0o4755, 0o600]), uid=rng.choice([0, 5, 1000]), mtime=rng.randrange(10**9, 2 * 10**9)))
        elif k < 0.45:
            es.append(D(name, mode=rng.choice([0o755, 0o700, 0o1777, 0o2755]), uid=rng.choice([0, 7]), mtime=rng.randrange(10**9, 2 * 10**9)))
        elif k < 0.6:
            es.append(L(name, rng.choice(TARGETS)))
        elif k < 0.7:
            es.append(H(name, rng.choice(NAMES + TARGETS)))
        elif k < 0.85:
            d, b = os.path.split(name)
            es.append(F(os.path.join(d, ".wh." + b)))
        elif k < 0.95:
            d = os.path.dirname(name)
            es.append(F(os.path.join(d, ".wh..wh..opq")))
        else:
            es.append(T(name, tarfile.FIFOTYPE))
    return tar(es)

seed0 = int(sys.argv[1]) if len(sys.argv) > 1 else 1
count = int(sys.argv[2]) if len(sys.argv) > 2 else 50
total = 0
for seed in range(seed0, seed0 + count):
    rng = random.Random(seed)
    base = rand_layer(rng, rng.randrange(0, 8))
    # the base must apply cleanly with containerd's applier
    fresh(os.path.join(W, "probe"))
    if run_go("plain", os.path.join(W, "probe"), [], base)[0] != 0:
        base = tar([D("a"), F("a/x", b"1"), D("b"), L("l1", "a")])
    layer = rand_layer(rng, rng.randrange(1, 10))
    total += case(f"seed{seed}", layer, base)
print("TOTAL DIFFS", total)
sys.exit(1 if total else 0)
