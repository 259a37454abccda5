#!/usr/bin/env python3
"""Builds the differ test images as OCI image layouts (no network, no container engine).

    gen_images.py OUTDIR

OUTDIR/<image>/ is an OCI layout holding tag v1; OUTDIR/images.tsv lists
    name  kind(crafted|hostile)  layers  media-types  note
OUTDIR/layers.tsv lists every distinct layer blob: image  index  feature  mediaType  digest
diffID. Cached: OUTDIR/.recipe holds the sha256 of this script and tarbuild.py; a layout is
rebuilt only when they change (or OUTDIR/.recipe is missing).

crafted images (`dt-*`): the same 14 feature layers (every feature containerd's walking
applier handles, see the FEATURE list below), stacked so whiteouts and opaque markers act on
lower layers, as all-gzip, all-zstd, all-uncompressed and a mixed image; the first layer
carries a per-image marker so no two images share a chain ID. `dt-hllower` holds a hardlink
to a file of a lower layer (containerd's overlay applier refuses it: the target is not in the
upperdir; native accepts it).
hostile images (`hx-*`): a plain base layer plus one hostile layer each (see HOSTILE).
Absolute escape targets point into /tmp/ipcs-differ-canary (the test watches it); relative
ones climb 1..10 levels so that some land beside the containerd root of the test node.
Everything is deterministic: fixed mtimes, PRNG data from sha256 counters, gzip mtime 0.
"""

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tarbuild import (BLK, CHR, DIR, FIFO, LNK, REG, REGA, SYM, Tar, gnu_tar_members,  # noqa: E402
                      header, pad, pax_records)

T0 = 1704067200                 # 2024-01-01, mtime of most entries
CANARY = "/tmp/ipcs-differ-canary"
MT = {
    "tar": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
# security.capability v2: cap_net_bind_service (bit 10) permitted + effective
CAP_NET_BIND = (0x02000001).to_bytes(4, "little") + (1 << 10).to_bytes(4, "little") + b"\0" * 12


def prng(seed, n):
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


# ------------------------------------------------------------------------ feature layers
def l_base(variant):
    t = Tar()
    t.dir("./", mode=0o700, mtime=T0 + 1)   # the root entry: containerd ignores it
    t.dir("etc", mtime=T0)
    t.file("etc/ipcs-difftest-variant", f"{variant}\n".encode())
    t.file("rootfile", b"to be whited out from the root\n")
    for d in ("opq", "opq2"):
        t.dir(d)
        t.file(f"{d}/a", b"lower a\n")
        t.file(f"{d}/b", b"lower b\n")
        t.dir(f"{d}/sub")
        t.file(f"{d}/sub/c", b"lower c\n")
    t.dir("wh")
    for n in ("f1", "f2", "keep"):
        t.file(f"wh/{n}", f"lower {n}\n".encode())
    t.dir("wh/d1", mode=0o750, uid=7, gid=8, mtime=T0 - 100)
    t.file("wh/d1/x", b"x\n")
    t.file("wh/d1/y", b"y\n")
    t.dir("wh/dgone")
    t.file("wh/dgone/z", b"z\n")
    t.dir("replace")
    t.file("replace/f2d", b"file becoming a dir\n")
    t.dir("replace/d2f")
    t.file("replace/d2f/inner", b"inner\n")
    t.symlink("replace/l2f", "f2d")
    t.file("replace/f2l", b"file becoming a symlink\n")
    t.dir("replace/dre")
    t.file("replace/dre/old", b"old child of a dir replaced by a new dir\n")
    # attributes overlay's mkparent copies from the lowerdir when a later layer writes below
    t.dir("xdir", mode=0o750, uid=1234, gid=5678, mtime=T0 - 5000,
          xattrs={"user.dirattr": b"from the lower layer"})
    t.file("xdir/child", b"child\n")
    t.dir("deep")
    t.dir("deep/a", mode=0o711)
    t.dir("deep/a/b", mode=0o700, uid=3, gid=3)
    t.dir("files")
    t.file("files/small", b"hello\n")
    return t


def l_files():
    t = Tar()
    t.dir("files", mtime=T0 + 10)
    t.file("files/empty", b"")
    t.file("files/block512", prng("b512", 512))
    t.file("files/block513", prng("b513", 513))
    t.file("files/rand1m", prng("rand1m", 1 << 20))
    t.file("files/zeros", b"\0" * (200 << 10))
    for m in (0o000, 0o444, 0o600, 0o755, 0o4755, 0o2755, 0o6755, 0o1644, 0o7777, 0o2711):
        t.file(f"files/m{m:04o}", f"mode {m:o}\n".encode(), mode=m)
    t.dir("files/sticky-dir", mode=0o1777)
    t.dir("files/sgid-dir", mode=0o2775, gid=100)
    t.file("files/own-1000", b"1000\n", uid=1000, gid=1000, uname=b"someone", gname=b"somegroup")
    t.file("files/own-nobody", b"nobody\n", uid=65534, gid=65534)
    t.file("files/own-pax", b"big ids in PAX\n", pax=[("uid", "3000000"), ("gid", "4000000000")])
    t.file("files/own-b256", b"big ids in base-256\n", uid=2500000, gid=2600000, base256=("uid", "gid"))
    t.file("files/names-ignored", b"uname root but uid 42\n", uid=42, gid=43, uname=b"root", gname=b"root")
    t.add("files/rega", REGA, data=b"old-style regular file (typeflag NUL)\n")
    t.file("files/suid-owned", b"setuid and owned\n", mode=0o4750, uid=1000, gid=50)
    return t


def l_times():
    t = Tar()
    t.dir("times", pax_mtime="1600000000.987654321")
    t.file("times/ns", b"ns\n", pax_mtime="1700000000.123456789")
    t.file("times/half", b"half\n", pax_mtime="1700000000.5")
    t.file("times/epoch", b"epoch\n", mtime=0)
    t.file("times/negative", b"before 1970\n", pax_mtime="-86400.25")
    t.file("times/future", b"2100\n", pax_mtime="4102444800.000000001")
    t.file("times/atime", b"atime\n", pax=[("atime", "1800000000.5")], pax_mtime="1700000001.000000007")
    t.symlink("times/link", "ns", pax_mtime="1650000000.111111111")
    t.add("times/fifo", FIFO, mode=0o640, pax_mtime="1650000000.222222222")
    t.dir("times/dir-ns", pax_mtime="1500000000.000000123")
    t.file("times/dir-ns/child", b"written after its dir: the dir mtime is set at the end\n")
    return t


def l_xattrs():
    t = Tar()
    t.dir("xattr", xattrs={"user.dir": b"1"})
    t.file("xattr/cap", b"#!/bin/sh\n", mode=0o755, xattrs={"security.capability": CAP_NET_BIND})
    t.file("xattr/cap-suid", b"cap and setuid\n", mode=0o4755,
           xattrs={"security.capability": CAP_NET_BIND, "user.x": b"y"})
    t.file("xattr/trusted", b"trusted.* is refused by containerd (ENOTSUP, ignored)\n",
           xattrs={"trusted.ipcs": b"no", "user.ok": b"yes"})
    t.file("xattr/multi", b"multi\n", xattrs={"user.a": b"A", "user.empty": b"",
                                               "user.bin": bytes(range(256)),
                                               "user.long": prng("xl", 1000)})
    t.symlink("xattr/symlink", "multi", xattrs={"user.onlink": b"EPERM, ignored"})
    t.add("xattr/fifo", FIFO, xattrs={"user.onfifo": b"EPERM, ignored"})
    t.dir("xattr/d", xattrs={"user.d": b"dir"}, mode=0o700)
    return t


def l_links():
    t = Tar()
    t.dir("links")
    t.symlink("links/rel", "../files/small")
    t.symlink("links/abs", "/etc/passwd")
    t.symlink("links/dangling", "nonexistent/target")
    t.symlink("links/dir", "../files")
    t.symlink("links/self", "self")
    t.symlink("links/owned", "rel", uid=1000, gid=1001)
    t.symlink("links/long-pax", "t/" + "p" * 150)
    t.symlink("links/long-gnu", "g/" + "q" * 200, gnu_longlink=True)
    t.file("links/hard-a", b"hardlink group\n", mode=0o640)
    t.hardlink("links/hard-b", "links/hard-a")
    # a hardlink's own header is applied to the shared inode (chown/chmod/chtimes after link)
    t.hardlink("links/hard-c", "links/hard-a", mode=0o600, uid=1000, gid=1000, mtime=T0 + 777)
    t.hardlink("links/hard-sym", "links/rel")
    t.file("links/" + "h" * 120, b"long-named hardlink target\n")
    t.hardlink("links/hard-to-long", "links/" + "h" * 120, gnu_longlink=True)
    t.add("links/fifo", FIFO)
    t.hardlink("links/hard-fifo", "links/fifo")
    return t


def l_devices():
    t = Tar()
    t.dir("dev")
    t.add("dev/null", CHR, mode=0o666, devmajor=1, devminor=3)
    t.add("dev/sda", BLK, mode=0o660, gid=6, devmajor=8, devminor=0)
    t.add("dev/big", CHR, mode=0o600, devmajor=4095, devminor=1048575)
    t.add("dev/char00", CHR, mode=0o644, devmajor=0, devminor=0, uid=5, gid=5)
    t.add("dev/fifo", FIFO, mode=0o644)
    t.add("dev/fifo-sticky", FIFO, mode=0o1622, uid=1000)
    return t


def l_names():
    t = Tar()
    t.dir("long")
    t.file("long/" + "p" * 200 + "/pax-file", b"PAX path\n")          # parent made by mkparent
    t.file("long/" + "g" * 180, b"GNU long name\n", gnu_long=True)
    t.file("long/" + "u" * 60 + "/" + "v" * 80, b"ustar prefix\n")     # prefix/name split
    t.dir("long/" + "d" * 120)
    t.file("long/" + "d" * 120 + "/in-long-dir", b"x\n", gnu_long=True)
    t.file("long/ünïcödé-名前", "utf-8 name\n".encode())
    t.file("long/with space & $chars", b"spaces\n")
    t.file("long/" + "e" * 99, b"99-byte name fits ustar\n")
    t.file("long/" + "f" * 100, b"name of exactly 100 bytes in total\n")
    return t


def l_sparse(stage):
    """Sparse files in the three formats Go's tar reader knows: old GNU (type S), PAX 0.1 and
    PAX 1.0. Built by GNU tar, spliced into one layer."""
    t = Tar()
    t.dir("sparse")
    os.makedirs(stage, exist_ok=True)
    for i, (fname, args) in enumerate((("pax-0.0", ["--format=posix", "--sparse-version=0.0"]),
                                        ("pax-0.1", ["--format=posix", "--sparse-version=0.1"]),
                                        ("pax-1.0", ["--format=posix", "--sparse-version=1.0"]))):
        p = os.path.join(stage, "sparse", fname)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.truncate(8 << 20)
            for off in (0, 3 << 20, (8 << 20) - 4096):
                f.seek(off + i)
                f.write(prng(f"sparse{i}{off}", 4000))
        os.chmod(p, 0o640)
        os.utime(p, ns=(T0 * 10**9, T0 * 10**9 + 123456789 * (i + 1)))
        pax_opt = ["--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"]
        t.raw(gnu_tar_members(stage, [f"sparse/{fname}"], args + pax_opt))
    # a file that is all hole
    p = os.path.join(stage, "sparse", "all-hole")
    with open(p, "wb") as f:
        f.truncate(1 << 20)
    os.utime(p, ns=(T0 * 10**9, T0 * 10**9))
    t.raw(gnu_tar_members(stage, ["sparse/all-hole"], ["--format=posix", "--sparse-version=1.0",
                                                        "--pax-option=delete=atime,delete=ctime"]))
    return t


def l_sparse_oldgnu(stage):
    """Old GNU sparse (type 'S'): Go's reader keeps the type, containerd refuses it."""
    t = Tar()
    p = os.path.join(stage, "old-gnu")
    os.makedirs(stage, exist_ok=True)
    with open(p, "wb") as f:
        f.truncate(4 << 20)
        f.seek(1 << 20)
        f.write(prng("oldgnu", 5000))
    os.utime(p, ns=(T0 * 10**9, T0 * 10**9))
    t.raw(gnu_tar_members(stage, ["old-gnu"], ["--format=gnu"]))
    return t


def l_whiteouts():
    t = Tar()
    t.dir("wh", mtime=T0 + 20)
    t.whiteout("wh/f1")
    t.whiteout("wh/dgone")
    t.whiteout("wh/d1/x")                       # parent not in this layer: made from the lowerdir
    t.whiteout("wh/nonexistent", uid=1000, gid=1000)
    t.whiteout("rootfile")
    t.dir("opq", mtime=T0 + 30)
    t.opaque("opq")                             # marker first, then new entries
    t.file("opq/new", b"new in opaque dir\n")
    t.dir("opq/sub")
    t.file("opq/sub/n", b"n\n")
    t.file("opq2/new2", b"new before the marker\n")   # marker after the entries (out of order)
    t.opaque("opq2")
    t.opaque("deep/a/b/newopq")                 # opaque marker of a dir created by mkparent
    return t


def l_replace():
    t = Tar()
    t.dir("replace/f2d", mode=0o711)
    t.file("replace/f2d/inside", b"inside the new dir\n")
    t.file("replace/d2f", b"dir became a file\n", mode=0o600)
    t.file("replace/l2f", b"symlink became a file\n")
    t.symlink("replace/f2l", "d2f")
    t.whiteout("replace/dre")                   # dir replaced by a new dir: whiteout, then dir
    t.dir("replace/dre")
    t.file("replace/dre/new", b"new\n")
    return t


def l_mkparent():
    t = Tar()
    t.file("xdir/sub/new", b"below a lower dir with attributes\n")
    t.file("deep/a/b/c/d/e", b"deep\n")
    t.file("fresh/a/b", b"no parent anywhere\n")
    return t


def l_overwrite():
    t = Tar()
    t.raw(header(b"pax_global_header", typeflag=b"g", size=len(pax_records([("comment", "x")]))))
    t.raw(pad(pax_records([("comment", "x")])))
    t.dir("files", mode=0o700, mtime=T0 + 40)   # dir merge: metadata only
    t.file("files/small", b"overwritten with new content and mode\n", mode=0o700, uid=2, gid=2)
    t.file("files/m4755", b"setuid dropped\n", mode=0o755)
    t.symlink("links/rel", "../files/block512")   # replace a symlink by another
    t.file("etc/ipcs-difftest-variant", b"overwritten\n", mtime=T0 + 50)
    return t


def l_empty():
    return Tar()


def l_manyfiles():
    t = Tar()
    t.dir("many")
    for i in range(300):
        t.file(f"many/f{i:03d}", prng(f"many{i}", i * 7))
    return t


FEATURES = [
    ("base", None), ("files", l_files), ("times", l_times), ("xattrs", l_xattrs),
    ("links", l_links), ("devices", l_devices), ("names", l_names), ("sparse", None),
    ("whiteouts", l_whiteouts), ("replace", l_replace), ("mkparent", l_mkparent),
    ("empty", l_empty), ("overwrite", l_overwrite), ("many", l_manyfiles),
]


# ------------------------------------------------------------------------ hostile layers
def hostile_layers():
    """name -> (tar bytes | callable(stage)->bytes, compression, note)."""
    H = {}

    def tar(f):
        t = Tar()
        f(t)
        return t.bytes()

    def climb(t, stem):
        for n in range(1, 11):
            t.file("../" * n + f"ipcs-differ-canary/{stem}-{n}", f"escaped {n}\n".encode())

    H["dotdot"] = (tar(lambda t: climb(t, "dotdot")), "gzip", "../ names, 1..10 levels")
    H["dotdot-mid"] = (tar(lambda t: [t.dir("a"), t.file("a/../../../../../../../tmp/ipcs-differ-canary/mid", b"x\n")]),
                       "tar", "a/../../.. in the middle of a name")
    H["absolute"] = (tar(lambda t: [t.file(CANARY + "/absolute", b"abs\n"),
                                    t.dir(CANARY + "/absdir"),
                                    t.add(CANARY + "/abs-fifo", FIFO),
                                    t.file("/tmp/../tmp/ipcs-differ-canary/tmp-dotdot", b"x\n"),
                                    t.file("/../../ipcs-differ-canary/root-dotdot", b"x\n")]),
                     "zstd", "absolute names, /tmp/../ and /../../")

    def symesc(t):
        t.symlink("esc", CANARY)
        t.file("esc/through-abs", b"written through an absolute symlink\n")
        t.symlink("esc2", "../../../../../../../../../../tmp/ipcs-differ-canary")
        t.file("esc2/through-rel", b"written through a relative symlink\n")
        t.symlink("esc3", "/")
        t.file("esc3/tmp/ipcs-differ-canary/through-root", b"x\n")
        t.symlink("escdir", "..")
        t.dir("escdir/escdir-made")
    H["symlink-escape"] = (tar(symesc), "gzip", "symlink out of the root, then write through it")

    def symparent(t):
        t.symlink("p", "../../../../../../../../..")
        t.file("p/tmp/ipcs-differ-canary/parent", b"x\n")
        t.symlink("q", CANARY)
        t.dir("q/sub")
        t.file("q/sub/f", b"x\n")
        t.symlink("q/sub/link", "/etc/passwd")
    H["symlink-parent"] = (tar(symparent), "tar", "a symlinked parent directory")

    def chain(t):
        t.symlink("a", "b/c")
        t.symlink("b", CANARY)
        t.file("a/chained", b"x\n")
    H["symlink-chain"] = (tar(chain), "zstd", "a symlink to a path through another symlink")

    H["hardlink-abs"] = (tar(lambda t: t.hardlink("hl", "/etc/passwd")), "gzip",
                         "hardlink to /etc/passwd (outside)")
    H["hardlink-dotdot"] = (tar(lambda t: t.hardlink("hl", "../../../../../../../../etc/hostname")),
                            "tar", "hardlink to ../../../etc/hostname")

    def hlsym(t):
        t.symlink("etcl", "/etc")
        t.hardlink("hl", "etcl/passwd")
    H["hardlink-via-symlink"] = (tar(hlsym), "zstd", "hardlink through a symlink to /etc")

    def hlcontained(t):
        t.dir("etc")
        t.file("etc/passwd", b"the layer's own passwd\n")
        t.symlink("etcl", "/etc")
        t.hardlink("hl", "etcl/passwd")
        t.hardlink("hl2", "/etc/passwd")
    H["hardlink-contained"] = (tar(hlcontained), "gzip", "hardlinks that resolve inside the root")

    def devs(t):
        t.add("disk", BLK, mode=0o600, devmajor=8, devminor=0)
        t.add("mem", CHR, mode=0o600, devmajor=1, devminor=1)
        t.add("null", CHR, mode=0o666, devmajor=1, devminor=3)
        t.file("null", b"must replace the device, not write into /dev/null\n")
        t.add("fifo", FIFO)
        t.file("fifo", b"must replace the fifo, not block writing into it\n")
        t.add(CANARY + "/dev-abs", CHR, devmajor=1, devminor=3)
        t.add("../../../../../../ipcs-differ-canary/dev-rel", BLK, devmajor=7, devminor=0)
    H["devices"] = (tar(devs), "gzip", "device files, and regular files over a device and a fifo")

    def dev_range(t):
        t.add("huge-major", CHR, devmajor=0o7777777, devminor=0o7777777)
    H["device-range"] = (tar(dev_range), "tar", "device numbers beyond Mkdev's range")

    def wh_escape(t):
        t.file(".wh..", b"")
    H["whiteout-dot"] = (tar(wh_escape), "tar", "whiteout of '.' (invalid whiteout name)")

    def wh_abs(t):
        t.file(CANARY + "/.wh.keepme", b"")
        t.file("../../../../../../../tmp/ipcs-differ-canary/.wh.keepme2", b"")
    H["whiteout-escape"] = (tar(wh_abs), "zstd", "whiteouts of paths outside the root")

    # absurd sizes
    def size_huge(t):
        t.raw(header(b"huge", size=0o77777777777))
        t.raw(b"only a little data" + b"\0" * 494)
    H["size-octal-max"] = (tar(size_huge), "gzip", "8 GiB size field, 512 bytes of data")

    def size_b256(t):
        t.raw(header(b"b256", size=1 << 62, base256=("size",)))
        t.raw(b"\0" * 512)
    H["size-base256"] = (tar(size_b256), "tar", "2^62 size in base-256")

    def size_neg(t):
        t.raw(header(b"neg", size=-1024))
    H["size-negative"] = (tar(size_neg), "tar", "negative base-256 size")

    def size_pax(t):
        body = pax_records([("size", "99999999999999999999999")])
        t.raw(header(b"PaxHeaders/x", typeflag=b"x", size=len(body)))
        t.raw(pad(body))
        t.raw(header(b"x", size=0))
    H["size-pax-overflow"] = (tar(size_pax), "zstd", "PAX size beyond int64")

    def pax_huge(t):
        t.raw(header(b"PaxHeaders/y", typeflag=b"x", size=64 << 20))
        t.raw(b"9999999999 path=" + b"y" * 1000)
    H["pax-header-huge"] = (tar(pax_huge), "gzip", "64 MiB PAX header (truncated)")

    def longlink_huge(t):
        t.raw(header(b"././@LongLink", typeflag=b"L", size=1 << 40))
        t.raw(b"z" * 512)
    H["gnu-longname-huge"] = (tar(longlink_huge), "tar", "1 TiB GNU long name")

    def bad_checksum(t):
        t.file("ok", b"fine\n")
        t.raw(header(b"bad", size=0, checksum_delta=1))
    H["bad-checksum"] = (tar(bad_checksum), "gzip", "header checksum off by one")

    H["unknown-type"] = (tar(lambda t: t.add("weird", b"Z", data=b"")), "tar", "unknown typeflag Z")

    # bombs, bounded: 64 MiB of zeros in ~64 KiB of gzip/zstd
    def bomb(t):
        t.file("bomb", b"\0" * (64 << 20))
    H["bomb-gzip"] = (tar(bomb), "gzip", "64 MiB of zeros in one file (gzip)")
    H["bomb-zstd"] = (tar(bomb), "zstd", "64 MiB of zeros in one file (zstd)")

    def bomb_sparse(t):
        # old-GNU sparse header declaring a 256 MiB real size with one 512-byte chunk
        h = bytearray(header(b"sparse-bomb", typeflag=b"S", size=512, magic=b"ustar  \0"))
        h[386:398] = b"%011o\0" % ((256 << 20) - 512)   # sp[0].offset
        h[398:410] = b"%011o\0" % 512                  # sp[0].numbytes
        h[483:495] = b"%011o\0" % (256 << 20)          # realsize
        h[148:156] = b" " * 8
        h[148:156] = b"%06o\0 " % sum(h)
        t.raw(bytes(h))
        t.raw(b"\xaa" * 512)
    H["bomb-sparse"] = (tar(bomb_sparse), "zstd", "sparse header: 256 MiB real size from 512 bytes")

    def many(t):
        t.dir("m")
        for i in range(5000):
            t.file(f"m/{i}", b"")
    H["many-entries"] = (tar(many), "gzip", "5000 empty files")

    # truncated streams (the stored blob is what it is: its digest is of the cut bytes)
    big = Tar()
    big.file("data", prng("trunc", 300 << 10))
    big.file("after", b"after\n")
    full = big.bytes()
    H["trunc-tar-data"] = (full[: 512 + 1000], "tar", "tar cut inside a file's data")
    H["trunc-tar-header"] = (full[: 512 + (300 << 10) + 100], "tar", "tar cut inside a header")
    H["trunc-tar-noeof"] = (full[: -1024], "tar", "tar without end-of-archive blocks")
    H["trunc-gzip"] = (("cut", full, "gzip", 0.5), "gzip", "gzip stream cut in half")
    H["trunc-zstd"] = (("cut", full, "zstd", 0.5), "zstd", "zstd stream cut in half")
    H["gzip-bad-crc"] = (("badcrc", full, "gzip", 0), "gzip", "gzip trailer CRC wrong")
    H["gzip-trailing-garbage"] = (("garbage", full, "gzip", 0), "gzip", "gzip member + garbage")
    H["zstd-trailing-garbage"] = (("garbage", full, "zstd", 0), "zstd", "zstd frame + garbage")
    H["not-compressed"] = (("asis", full, "gzip", 0), "gzip", "plain tar labelled tar+gzip")
    H["wrong-diffid"] = (("wrongdiff", tar(lambda t: t.file("f", b"f\n")), "gzip", 0), "gzip",
                         "config's diffID does not match the layer")
    return H


# ------------------------------------------------------------------------ compression, OCI
def compress(data, how):
    if how == "tar":
        return data
    if how == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-3", "--no-check"], input=data, check=True,
                              stdout=subprocess.PIPE).stdout
    raise ValueError(how)


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Layout:
    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, b, media):
        d = sha(b)
        p = os.path.join(self.path, "blobs", "sha256", d[7:])
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(b)
        return {"mediaType": media, "digest": d, "size": len(b)}

    def image(self, layers, tag="v1", cmd=None):
        """layers: list of (blob bytes, mediaType, diffID)."""
        descs = [self.blob(b, m) for b, m, _ in layers]
        cfg = {"created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
               "config": {"Env": ["PATH=/usr/bin:/bin"], **({"Cmd": cmd} if cmd else {})},
               "rootfs": {"type": "layers", "diff_ids": [d for _, _, d in layers]},
               "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ipcs differ test"}
                           for _ in layers]}
        cdesc = self.blob(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode(),
                          "application/vnd.oci.image.config.v1+json")
        man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": cdesc, "layers": descs}
        mdesc = self.blob(json.dumps(man, sort_keys=True, separators=(",", ":")).encode(),
                          "application/vnd.oci.image.manifest.v1+json")
        mdesc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [mdesc]}, f)
        return descs


def special(spec):
    kind, full, how, frac = spec
    if kind == "cut":
        c = compress(full, how)
        return c[: int(len(c) * frac)], sha(full)
    if kind == "badcrc":
        c = bytearray(compress(full, how))
        c[-8] ^= 0xFF
        return bytes(c), sha(full)
    if kind == "garbage":
        return compress(full, how) + b"this is not a compressed stream" * 10, sha(full)
    if kind == "asis":
        return full, sha(full)
    if kind == "wrongdiff":
        return compress(full, how), sha(full + b"x")
    raise ValueError(kind)


def base_plain(tag):
    t = Tar()
    t.dir("etc")
    t.file("etc/hostile-base", f"{tag}\n".encode())
    t.dir("tmp", mode=0o1777)
    return t.bytes()


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    out = os.path.abspath(sys.argv[1])
    here = os.path.dirname(os.path.abspath(__file__))
    recipe = hashlib.sha256()
    for f in ("gen_images.py", "tarbuild.py"):
        recipe.update(open(os.path.join(here, f), "rb").read())
    recipe = recipe.hexdigest()
    rfile = os.path.join(out, ".recipe")
    if os.path.exists(rfile) and open(rfile).read().strip() == recipe and \
            os.path.exists(os.path.join(out, "images.tsv")):
        print(f"differ test images cached in {out}", file=sys.stderr)
        return
    tmp = out + ".building"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    os.environ["TZ"] = "UTC"
    stage = tempfile.mkdtemp(prefix="ipcs-difftest-stage-")
    try:
        feats = {}
        for name, fn in FEATURES:
            if name == "base":
                continue
            feats[name] = (l_sparse(os.path.join(stage, "sparse")) if name == "sparse" else fn()).bytes()
        images, layer_rows = [], []
        variants = {"dt-gzip": ["gzip"], "dt-zstd": ["zstd"], "dt-tar": ["tar"],
                    "dt-mixed": ["gzip", "zstd", "tar"]}
        for img, comps in variants.items():
            layers = []
            for i, (name, _) in enumerate(FEATURES):
                data = l_base(img).bytes() if name == "base" else feats[name]
                how = comps[i % len(comps)]
                layers.append((compress(data, how), MT[how], sha(data), name))
            descs = Layout(os.path.join(tmp, img)).image([l[:3] for l in layers])
            for i, (l, d) in enumerate(zip(layers, descs)):
                layer_rows.append((img, i, l[3], l[1], d["digest"], l[2]))
            images.append((img, "crafted", len(layers), ",".join(sorted(set(comps))),
                           "every feature layer, stacked"))
        # hardlink to a file of a lower layer: native applies it, overlay's upperdir lacks it
        b = Tar()
        b.dir("hl")
        b.file("hl/lower-target", b"target in the lower layer\n", mode=0o640, uid=9)
        u = Tar()
        u.hardlink("hl/link-to-lower", "hl/lower-target")
        u.file("hl/after", b"after\n")
        ls = [(compress(b.bytes(), "gzip"), MT["gzip"], sha(b.bytes()), "hl-base"),
              (compress(u.bytes(), "zstd"), MT["zstd"], sha(u.bytes()), "hl-link")]
        descs = Layout(os.path.join(tmp, "dt-hllower")).image([l[:3] for l in ls])
        for i, (l, d) in enumerate(zip(ls, descs)):
            layer_rows.append(("dt-hllower", i, l[3], l[1], d["digest"], l[2]))
        images.append(("dt-hllower", "crafted", 2, "gzip,zstd",
                       "hardlink to a lower layer's file (overlay: refused by walking)"))
        og = l_sparse_oldgnu(os.path.join(stage, "oldgnu")).bytes()
        ls = [(compress(b.bytes(), "gzip"), MT["gzip"], sha(b.bytes()), "hl-base"),
              (compress(og, "gzip"), MT["gzip"], sha(og), "sparse-old-gnu")]
        descs = Layout(os.path.join(tmp, "dt-oldgnu")).image([l[:3] for l in ls])
        for i, (l, d) in enumerate(zip(ls, descs)):
            layer_rows.append(("dt-oldgnu", i, l[3], l[1], d["digest"], l[2]))
        images.append(("dt-oldgnu", "crafted", 2, "gzip",
                       "old GNU sparse file, type S (refused by walking)"))

        for name, (spec, how, note) in hostile_layers().items():
            img = "hx-" + name
            base = base_plain(img)
            if isinstance(spec, tuple):
                blob, diff = special(spec)
            else:
                blob, diff = compress(spec, how), sha(spec)
            ls = [(compress(base, "gzip"), MT["gzip"], sha(base), "base"),
                  (blob, MT[how], diff, name)]
            descs = Layout(os.path.join(tmp, img)).image([l[:3] for l in ls])
            for i, (l, d) in enumerate(zip(ls, descs)):
                layer_rows.append((img, i, l[3], l[1], d["digest"], l[2]))
            images.append((img, "hostile", 2, how, note))
        with open(os.path.join(tmp, "images.tsv"), "w") as f:
            for r in images:
                f.write("\t".join(str(x) for x in r) + "\n")
        with open(os.path.join(tmp, "layers.tsv"), "w") as f:
            for r in layer_rows:
                f.write("\t".join(str(x) for x in r) + "\n")
        with open(os.path.join(tmp, ".recipe"), "w") as f:
            f.write(recipe + "\n")
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    n = len({r[4] for r in layer_rows})
    print(f"built {len(images)} images, {n} distinct layer blobs in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
