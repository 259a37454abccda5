#!/usr/bin/env python3
"""Quick differential check without containerd: containerd v2.4.2's own archive.Apply
(goapply, built by quickdiff.sh) against ipcs's applier (examples/differ_bench) on
hand-made edge cases, plain (bind/temp mount) and overlay (upperdir + lowerdir) mode.
Outcome (success/failure) and trees (type, mode, owner, mtime ns, content, link target,
device, every xattr, hard-link groups) must be identical. Env: GOAPPLY, DIFFER_BENCH, WORK.
Run as root (devices, ownership, trusted.* xattrs). See quickdiff.sh."""
import os, sys, io, tarfile, hashlib, shutil, subprocess, stat, time, json

GO = os.environ["GOAPPLY"]
RS = os.environ["DIFFER_BENCH"]
W = os.environ["WORK"]
os.makedirs(W, exist_ok=True)
NOW = time.time()

def tree(root):
    out = {}
    inode_paths = {}
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = os.path.join(dp, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            d = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
            mt = st.st_mtime_ns
            d["mtime"] = "recent" if abs(mt / 1e9 - time.time()) < 120 else mt
            if stat.S_ISREG(st.st_mode):
                d["sha"] = hashlib.sha256(open(p, "rb").read()).hexdigest()[:16]
                d["size"] = st.st_size
            if stat.S_ISLNK(st.st_mode):
                d["link"] = os.readlink(p)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                d["rdev"] = st.st_rdev
            try:
                xs = sorted(os.listxattr(p, follow_symlinks=False))
                d["xattrs"] = {x: os.getxattr(p, x, follow_symlinks=False).hex() for x in xs}
            except OSError as e:
                d["xattrs"] = str(e)
            if not stat.S_ISDIR(st.st_mode):
                inode_paths.setdefault(st.st_ino, []).append(rel)
            out[rel] = d
    # root itself
    st = os.lstat(root)
    out["."] = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                "xattrs": {x: os.getxattr(root, x).hex() for x in sorted(os.listxattr(root))}}
    links = sorted(sorted(v) for v in inode_paths.values() if len(v) > 1)
    return out, links

def run_go(mode, root, lowers, data):
    r = subprocess.run([GO, mode, root] + lowers, input=data, capture_output=True)
    return r.returncode, r.stderr.decode().strip()

def run_rs(mode, root, lowers, data):
    f = os.path.join(W, "layer.tar")
    open(f, "wb").write(data)
    args = [RS, "apply" if mode == "plain" else "apply-overlay", f,
            "application/vnd.oci.image.layer.v1.tar", root] + lowers
    r = subprocess.run(args, capture_output=True)
    return r.returncode, r.stderr.decode().strip()

def fresh(p):
    if os.path.exists(p):
        subprocess.run(["rm", "-rf", p], check=True)
    os.makedirs(p)

def case(name, layer, base=None, modes=("plain", "overlay")):
    diffs = 0
    for mode in modes:
        ga, ra = os.path.join(W, "go"), os.path.join(W, "rs")
        lower = os.path.join(W, "lower")
        fresh(ga); fresh(ra); fresh(lower)
        lowers = []
        if base is not None:
            if mode == "plain":
                for root in (ga, ra):
                    rc, err = run_go("plain", root, [], base)
                    assert rc == 0, err
            else:
                rc, err = run_go("plain", lower, [], base)
                assert rc == 0, err
                lowers = [lower]
        grc, gerr = run_go(mode, ga, lowers, layer)
        rrc, rerr = run_rs(mode, ra, lowers, layer)
        gt, rt = tree(ga), tree(ra)
        status = []
        if (grc == 0) != (rrc == 0):
            status.append(f"outcome go={grc} {gerr!r} rs={rrc} {rerr!r}")
        if gt != rt:
            g, r = gt[0], rt[0]
            for k in sorted(set(g) | set(r)):
                if g.get(k) != r.get(k):
                    status.append(f"{k}: go={g.get(k)} rs={r.get(k)}")
            if gt[1] != rt[1]:
                status.append(f"hardlinks go={gt[1]} rs={rt[1]}")
        if status:
            diffs += 1
            print(f"DIFF {name} [{mode}] (go rc={grc}, rs rc={rrc})")
            for s in status[:12]:
                print("   ", s)
        else:
            print(f"ok   {name} [{mode}] {'(both failed: ' + gerr[:80] + ' | ' + rerr[:80] + ')' if grc else ''}")
    return diffs

# ---------------------------------------------------------------- layer builders
def tar(entries, fmt=tarfile.PAX_FORMAT):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for e in entries:
            ti, data = e if isinstance(e, tuple) else (e, None)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return b.getvalue()

def F(name, data=b"", mode=0o644, uid=0, gid=0, mtime=1600000000, pax=None, **kw):
    ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = mode; ti.uid = uid; ti.gid = gid; ti.mtime = mtime
    if pax: ti.pax_headers = pax
    for k, v in kw.items(): setattr(ti, k, v)
    return (ti, data)

def D(name, mode=0o755, **kw):
    ti, _ = F(name, mode=mode, **kw); ti.type = tarfile.DIRTYPE; return (ti, None)

def L(name, target, **kw):
    ti, _ = F(name, mode=0o777, **kw); ti.type = tarfile.SYMTYPE; ti.linkname = target; return (ti, None)

def H(name, target, **kw):
    ti, _ = F(name, **kw); ti.type = tarfile.LNKTYPE; ti.linkname = target; return (ti, None)

def DEV(name, typ, major, minor, mode=0o666, **kw):
    ti, _ = F(name, mode=mode, **kw); ti.type = typ; ti.devmajor = major; ti.devminor = minor; return (ti, None)

def T(name, typ, **kw):
    ti, _ = F(name, **kw); ti.type = typ; return (ti, None)

BASE = tar([D("etc"), F("etc/passwd", b"root:x:0:0\n"), F("etc/group", b"g"), D("usr", mode=0o750, uid=3, gid=4),
            D("usr/lib"), F("usr/lib/libc.so", b"libc" * 100), H("usr/lib/libc.hard", "usr/lib/libc.so"),
            D("opq"), F("opq/old1", b"1"), D("opq/oldd"), F("opq/oldd/x", b"x"), L("link2etc", "etc"),
            D("deep", mode=0o711, uid=7, gid=8, pax={"SCHILY.xattr.user.lower": "lv"}), D("deep/er"), F("deep/er/f", b"f"),
            L("sl", "/etc/passwd"), D("wd"), F("wd/a"), F("wd/b")])

total = 0
C = [
 ("basic", tar([D("a", mode=0o2755, uid=7, gid=8), F("a/suid", b"s", mode=0o4755, uid=1000, gid=1001),
               D("tmp", mode=0o1777), L("a/l", "../x"), F("a/plain", b"p", mode=0o600, uid=3), H("a/hard", "a/plain"),
               T("fifo", tarfile.FIFOTYPE, mode=0o600), DEV("dev/null", tarfile.CHRTYPE, 1, 3),
               DEV("dev/blk", tarfile.BLKTYPE, 7, 300, mode=0o660, gid=6),
               F("x1", b"xa", pax={"SCHILY.xattr.user.note": "hello", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "SCHILY.xattr.trusted.t": "x", "mtime": "1234567890.123456789", "atime": "1999999999.5"}),
               F("bigids", b"", uid=100000, gid=2**21-1)]), BASE),
 ("longnames-gnu", tar([F("d" * 120 + "/" + "f" * 150, b"gnu"), L("s" * 140, "t" * 200)], fmt=tarfile.GNU_FORMAT), None),
 ("longnames-pax", tar([F("d" * 120 + "/" + "p" * 150, b"pax"), L("s" * 140, "t" * 200)]), None),
 ("whiteouts", tar([F("etc/.wh.passwd"), F(".wh.usr"), D("opq"), F("opq/new", b"n"), F("opq/.wh..wh..opq"), F("wd/.wh.a")]), BASE),
 ("opaque-first", tar([D("opq"), F("opq/.wh..wh..opq"), F("opq/new", b"n"), D("opq/sub"), F("opq/sub/f")]), BASE),
 ("opaque-twice", tar([F("opq/.wh..wh..opq"), F("opq/x/y", b"y"), F("opq/.wh..wh..opq")]), BASE),
 ("opaque-new-dir", tar([F("newdir/.wh..wh..opq"), F("newdir/f")]), BASE),
 ("whiteout-missing", tar([F("nope/.wh.nothing"), F(".wh.nothing")]), BASE),
 ("replace", tar([D("etc/passwd"), F("usr", b"now file"), L("opq", "/etc"), D("link2etc", mode=0o700), F("sl", b"was symlink")]), BASE),
 ("dir-merge-meta", tar([D("etc", mode=0o700, uid=5, gid=6, mtime=5)]), BASE),
 ("mkparent-from-lower", tar([F("deep/er/new", b"n"), F("deep/er2/x", b"x"), F("usr/lib/new/f")]), BASE),
 ("hardlink-lower", tar([H("hl", "usr/lib/libc.so"), H("hl2", "/sl")]), BASE),
 ("hardlink-escape", tar([H("esc", "../../../../etc/hostname")]), BASE),
 ("hardlink-root", tar([H("esc", "..")]), BASE),
 ("traversal", tar([F("../../../../tmp/pwned-x", b"p"), F("/abs/file", b"a"), F("a/../../b", b"b")]), BASE),
 ("symlink-parent", tar([L("evil", "/"), F("evil/tmp/pwned2", b"p"), L("up", "../../.."), F("up/tmp/pwned3", b"p"), F("link2etc/viaLink", b"v"), F("sl/x", b"x")]), BASE),
 ("symlink-last", tar([L("f", "/etc/passwd"), F("f", b"replaced")]), BASE),
 ("whiteout-invalid", tar([F("a/.wh..")]), BASE),
 ("whiteout-through-symlink", tar([F("link2etc/.wh.passwd"), F("link2etc/.wh..wh..opq")]), BASE),
 ("global-header", tar([F("etc/passwd", b"x")]) , BASE),
 ("devices-range", tar([DEV("bigdev", tarfile.CHRTYPE, 4095, 1048575), DEV("dev2", tarfile.BLKTYPE, 300, 70000)]), BASE),
 ("unknown-type", tar([T("vol", b"V")]), BASE),
 ("cont-type", tar([T("cont", b"7")]), BASE),
 ("dir-then-symlink", tar([D("dd", mtime=1000), F("dd/f"), L("dd", "etc")]), BASE),
 ("dir-then-whiteout", tar([D("dd2"), F(".wh.dd2")]), BASE),
 ("file-and-whiteout", tar([F("fw", b"x"), F(".wh.fw")]), BASE),
 ("times", tar([F("neg", mtime=-5), F("huge", pax={"mtime": "99999999999"}), F("ns", pax={"mtime": "1.000000001"}), D("negdir", mtime=-100)]), None),
 ("xattr-symlink", tar([L("xl", "t", pax={"SCHILY.xattr.user.x": "v"}), T("xf", tarfile.FIFOTYPE, pax={"SCHILY.xattr.user.y": "v"})]), None),
 ("weird-names", tar([F("./", b""), D("."), F("./.", b""), F("x/./y", b"y"), D("/"), F("//double//slash", b"d")]), None),
 ("root-entry-meta", tar([D("./", mode=0o700, uid=9)]), None),
]
for name, layer, base in C:
    total += case(name, layer, base)

# raw: global header named like an existing file
def raw_header(name, typ, size=0, mode=0o644, linkname=b"", magic=b"ustar\x0000"):
    b = bytearray(512)
    b[0:len(name)] = name
    b[100:108] = b"%07o\0" % mode
    b[108:116] = b"%07o\0" % 0; b[116:124] = b"%07o\0" % 0
    b[124:136] = b"%011o\0" % size; b[136:148] = b"%011o\0" % 1600000000
    b[156] = typ; b[157:157+len(linkname)] = linkname
    b[257:265] = magic
    b[148:156] = b"        "
    b[148:156] = b"%06o\0 " % sum(b)
    return bytes(b)
def pad(d): return d + b"\0" * ((512 - len(d) % 512) % 512)
rec = b"18 path=etc/group\n"
g = raw_header(b"pax_global_header", ord("g"), len(rec)) + pad(rec) + raw_header(b"f", ord("0")) + b"\0" * 1024
total += case("global-header-removes", g, BASE)
v7 = raw_header(b"v7file", ord("0"), 3, magic=b"\0" * 8) + pad(b"abc") + raw_header(b"v7dir/", 0, magic=b"\0" * 8) + b"\0" * 1024
total += case("v7-and-rega", v7, None)
trunc_pad = raw_header(b"tp", ord("0"), 5) + b"hello" + b"\0" * 3
total += case("eof-in-padding", trunc_pad, None)
one_zero = raw_header(b"oz", ord("0"), 0) + b"\0" * 512
total += case("one-zero-block", one_zero, None)
zero_then = raw_header(b"zt", ord("0"), 0) + b"\0" * 512 + raw_header(b"zt2", ord("0"), 0)
total += case("zero-then-header", zero_then, None)
# GNU sparse via GNU tar
os.makedirs(os.path.join(W, "sp"), exist_ok=True)
with open(os.path.join(W, "sp", "sparse.bin"), "wb") as f:
    f.seek(1 << 20); f.write(b"data"); f.seek(5 << 20); f.write(b"end")
for fmt in ("pax", "gnu", "posix"):
    out = subprocess.run(f"tar --sparse --format={fmt} -C {W}/sp -cf - sparse.bin", shell=True, capture_output=True).stdout
    total += case(f"sparse-{fmt}", out, None)

C2 = [
 ("link-chains", tar([L("a", "b/c"), D("b"), L("b/c", "../d/./e/"), D("d"), D("d/e"), F("a/f1", b"1"), L("loop1", "loop2"), L("loop2", "loop1")]), BASE),
 ("link-loop", tar([L("loop1", "loop2"), L("loop2", "loop1"), F("loop1/x")]), BASE),
 ("link-dotdot-beyond", tar([D("q"), L("q/up", "../../../../../../usr/lib"), F("q/up/newlib", b"n"), H("q/hl", "q/up/libc.so")]), BASE),
 ("link-trailing", tar([L("tl", "etc/"), F("tl/viaTrailing", b"t"), L("tl2", "./usr/lib/."), F("tl2/z", b"z")]), BASE),
 ("hardlink-to-symlink-dir", tar([H("h2d", "link2etc"), F("h2d/x", b"x")]), BASE),
 ("lower-nondir-parent", tar([F("etc/passwd2/x", b"x"), F("sl2/y", b"y")]), tar([D("etc"), F("etc/passwd2", b"p"), L("sl2", "etc")])),
 ("lower-symlinked-dir", tar([F("via/new", b"n")]), tar([D("real", mode=0o700, uid=11), L("via", "real")])),
 ("entry-through-lower-symlink", tar([F("link2etc/new", b"n")]), BASE),
 ("dir-over-symlink-to-dir", tar([D("link2etc", mode=0o711), F("link2etc/inner", b"i")]), BASE),
 ("opaque-root", tar([F(".wh..wh..opq"), F("keep", b"k")]), BASE),
 ("whiteout-root-file", tar([F(".wh.etc"), F("etc/new", b"n")]), BASE),
 ("double-entries", tar([F("dup", b"1"), F("dup", b"22", mode=0o600), D("dd"), D("dd", mode=0o700)]), None),
 ("hardlink-then-overwrite", tar([F("o1", b"orig"), H("o2", "o1"), F("o1", b"new")]), None),
 ("chown-after-setuid", tar([F("su", b"x", mode=0o6755, uid=5, gid=5)]), None),
 ("empty-name", tar([F("", b"")]), None),
 ("pax-uid-override", tar([F("pu", b"", pax={"uid": "123456", "gid": "654321", "uname": "x"})]), None),
]
for name, layer, base in C2:
    total += case(name, layer, base)
print("TOTAL DIFFS", total)
sys.exit(1 if total else 0)
