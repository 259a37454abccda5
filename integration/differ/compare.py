#!/usr/bin/env python3
"""Compares filesystem trees the way the differ acceptance test needs it.

    compare.py trees [--volatile-after NS] [--max-print N] LABEL A B [LABEL A B ...]
        Compares each pair of trees (A from the node with containerd's walking differ, B from
        the node under test). Prints every difference as `DIFF LABEL PATH FIELD A=.. B=..` (up
        to --max-print per pair) and a last line
        `compared P trees, E entries: D differences`; exit 1 if D > 0.
    compare.py selftest [--volatile-after NS] [--min-mutations N] A B
        Corrupts tree B (one attribute per mutation: content, mode bits, suid/sgid/sticky, uid,
        gid, mtime, xattr, trusted.* xattr, security.capability, device number, symlink
        target, hardlink identity, type) and checks that comparing A with B reports each
        mutation at its path and field. Exit 1 if any mutation goes unnoticed or fewer than N
        (default 10) kinds of mutation found a target in B.

Fields compared per entry (lstat, never following a link): type, mode & 07777, uid, gid,
mtime in ns, size and sha256 of regular files, symlink target, device major/minor, every
xattr (all namespaces: user, trusted, security) and hardlink identity: the set of paths in
the same tree sharing the entry's inode. An mtime inside [--volatile-after, now + 10 min] is
one the applier did not take from the layer (a whiteout device's mknod time, a directory
made by mkparent and then written into, the snapshot root); such an mtime compares as
"apply-time", so both sides must agree that it is one, not on its value.
"""

import hashlib
import os
import stat
import sys
import time

TYPES = {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
         stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


def file_sha(p):
    h = hashlib.sha256()
    with open(p, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def xattrs(p):
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in sorted(names):
        try:
            out[n] = os.getxattr(p, n, follow_symlinks=False).hex()
        except OSError as e:
            out[n] = f"<error {e.errno}>"
    return out


def scan(root, volatile_after):
    """-> {relpath(bytes): {field: value}}"""
    root = os.fsencode(root)
    upper = time.time_ns() + 600 * 10**9
    entries, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [b""] + sorted(dirnames) + sorted(filenames) if dirpath == root else sorted(dirnames) + sorted(filenames):
            p = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(p, root) if name else b"."
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                # overlayfs lists a whiteout of a non-merged dir in readdir but lookup hides it
                entries[rel] = {"type": "listed, lstat ENOENT"}
                continue
            t = TYPES.get(stat.S_IFMT(st.st_mode), "?")
            e = {"type": t, "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid,
                 "gid": st.st_gid}
            if volatile_after and volatile_after <= st.st_mtime_ns <= upper:
                e["mtime"] = "apply-time"
            else:
                e["mtime"] = st.st_mtime_ns
            if t == "reg":
                e["size"] = st.st_size
                e["sha256"] = file_sha(p)
            elif t == "symlink":
                e["target"] = os.readlink(p)
            elif t in ("char", "block"):
                e["dev"] = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            e["xattrs"] = xattrs(p)
            if t != "dir":
                inodes.setdefault(st.st_ino, []).append(rel)
                e["_ino"] = st.st_ino
            entries[rel] = e
    for e in entries.values():
        ino = e.pop("_ino", None)
        if ino is not None:
            e["links"] = tuple(sorted(inodes[ino]))
    return entries


def show(v):
    if isinstance(v, bytes):
        return repr(v)[2:-1]
    if isinstance(v, tuple):
        return "[" + ",".join(show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}={v[k][:40]}" for k in v) + "}"
    return str(v)


def diff(a, b):
    """-> list of (path, field, va, vb)"""
    out = []
    for p in sorted(set(a) | set(b)):
        if p not in b:
            out.append((p, "presence", "present", "absent"))
            continue
        if p not in a:
            out.append((p, "presence", "absent", "present"))
            continue
        ea, eb = a[p], b[p]
        for f in sorted(set(ea) | set(eb)):
            if f == "xattrs":
                xa, xb = ea.get(f, {}), eb.get(f, {})
                for k in sorted(set(xa) | set(xb)):
                    if xa.get(k) != xb.get(k):
                        out.append((p, "xattr:" + k, xa.get(k, "-"), xb.get(k, "-")))
            elif ea.get(f) != eb.get(f):
                out.append((p, f, ea.get(f, "-"), eb.get(f, "-")))
    return out


def cmd_trees(args, volatile_after, max_print):
    if len(args) % 3:
        sys.exit("trees: LABEL A B triples expected")
    trees = entries = ndiff = volatile = 0
    for i in range(0, len(args), 3):
        label, ta, tb = args[i:i + 3]
        a, b = scan(ta, volatile_after), scan(tb, volatile_after)
        d = diff(a, b)
        trees += 1
        entries += len(set(a) | set(b))
        ndiff += len(d)
        volatile += sum(1 for e in a.values() if e.get("mtime") == "apply-time")
        for p, f, va, vb in d[:max_print]:
            print(f"DIFF {label} {show(p)} {f} A={show(va)} B={show(vb)}")
        if len(d) > max_print:
            print(f"DIFF {label} ... {len(d) - max_print} more")
    print(f"({volatile} of the entries of the A trees have an apply-time mtime, compared as such)")
    print(f"compared {trees} trees, {entries} entries: {ndiff} differences")
    return 1 if ndiff else 0


# ------------------------------------------------------------------------------ selftest
def mutate(root, entries):
    """Applies one mutation per kind found in the tree; returns [(kind, relpath, field)]."""
    root = os.fsencode(root)
    done, used = [], set()

    def pick(pred):
        for rel, e in sorted(entries.items()):
            if rel != b"." and rel not in used and pred(e):
                used.add(rel)
                return rel, os.path.join(root, rel)
        return None, None

    def keep_times(p, st):
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    rel, p = pick(lambda e: e["type"] == "reg" and e["size"] > 0 and len(e["links"]) == 1)
    if rel:
        st = os.lstat(p)
        with open(p, "r+b") as f:
            c = f.read(1)
            f.seek(0)
            f.write(bytes([c[0] ^ 1]))
        keep_times(p, st)
        done.append(("content", rel, "sha256"))
    for bit, kind in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"), (stat.S_ISVTX, "sticky")):
        rel, p = pick(lambda e, bit=bit: e["type"] in ("reg", "dir") and int(e["mode"], 8) & bit
                      and e.get("links", (1,)) and len(e.get("links", (1,))) == 1
                      and not e["xattrs"])
        if rel:
            st = os.lstat(p)
            os.chmod(p, stat.S_IMODE(st.st_mode) & ~bit)
            keep_times(p, st)
            done.append((kind, rel, "mode"))
    rel, p = pick(lambda e: e["type"] == "reg" and len(e["links"]) == 1 and not e["xattrs"]
                  and not int(e["mode"], 8) & 0o6000)
    if rel:
        st = os.lstat(p)
        os.chmod(p, stat.S_IMODE(st.st_mode) ^ 0o004)
        keep_times(p, st)
        done.append(("mode", rel, "mode"))
    for kind in ("uid", "gid"):
        rel, p = pick(lambda e: e["type"] in ("reg", "dir") and len(e.get("links", (1,))) == 1
                      and not e["xattrs"] and not int(e["mode"], 8) & 0o6000)
        if rel:
            st = os.lstat(p)
            if kind == "uid":
                os.lchown(p, st.st_uid + 1, -1)
            else:
                os.lchown(p, -1, st.st_gid + 1)
            keep_times(p, st)
            done.append((kind, rel, kind))
    rel, p = pick(lambda e: e["type"] == "reg" and isinstance(e["mtime"], int) and len(e["links"]) == 1)
    if rel:
        st = os.lstat(p)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
        done.append(("mtime+1ns", rel, "mtime"))
    for prefix in ("security.capability", "trusted.", "user."):
        rel, p = pick(lambda e, prefix=prefix: any(k.startswith(prefix) for k in e["xattrs"]))
        if rel:
            st = os.lstat(p)
            k = next(k for k in entries[rel]["xattrs"] if k.startswith(prefix))
            os.removexattr(p, k, follow_symlinks=False)
            keep_times(p, st)
            done.append((f"xattr {k} removed", rel, "xattr:" + k))
    rel, p = pick(lambda e: e["type"] in ("char", "block"))
    if rel:
        st = os.lstat(p)
        os.unlink(p)
        os.mknod(p, st.st_mode, os.makedev(os.major(st.st_rdev), os.minor(st.st_rdev) ^ 1))
        os.lchown(p, st.st_uid, st.st_gid)
        os.chmod(p, stat.S_IMODE(st.st_mode))
        for k, v in entries[rel]["xattrs"].items():
            os.setxattr(p, k, bytes.fromhex(v))
        keep_times(p, st)
        done.append(("device number", rel, "dev"))
    rel, p = pick(lambda e: e["type"] == "symlink" and len(e["links"]) == 1)
    if rel:
        st = os.lstat(p)
        t = os.readlink(p)
        os.unlink(p)
        os.symlink(t + b"x", p)
        os.lchown(p, st.st_uid, st.st_gid)
        keep_times(p, st)
        done.append(("symlink target", rel, "target"))
    rel, p = pick(lambda e: e["type"] == "reg" and len(e["links"]) > 1)
    if rel:
        st = os.lstat(p)
        data = open(p, "rb").read()
        xs = entries[rel]["xattrs"]
        tmp = p + b".selftest"
        with open(tmp, "wb") as f:
            f.write(data)
        os.lchown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        for k, v in xs.items():
            os.setxattr(tmp, k, bytes.fromhex(v))
        keep_times(tmp, st)
        os.rename(tmp, p)
        parent = os.path.dirname(p)
        done.append(("hardlink broken", rel, "links"))
        # the rename touched the parent dir; put its times back so only `links` differs
        pst = entries.get(os.path.dirname(rel) or b".")
        if pst and isinstance(pst["mtime"], int):
            os.utime(parent, ns=(pst["mtime"], pst["mtime"]), follow_symlinks=False)
    rel, p = pick(lambda e: e["type"] == "fifo" and len(e["links"]) == 1 and not e["xattrs"])
    if rel:
        st = os.lstat(p)
        os.unlink(p)
        open(p, "wb").close()
        os.lchown(p, st.st_uid, st.st_gid)
        os.chmod(p, stat.S_IMODE(st.st_mode))
        keep_times(p, st)
        done.append(("fifo became a file", rel, "type"))
    return done


def cmd_selftest(args, volatile_after, min_mutations):
    ta, tb = args
    a = scan(ta, volatile_after)
    b0 = scan(tb, volatile_after)
    base = diff(a, b0)
    if base:
        print(f"selftest: the trees differ before any mutation ({len(base)} differences)")
        return 1
    done = mutate(tb, b0)
    b = scan(tb, volatile_after)
    d = diff(a, b)
    found = {(p, f) for p, f, _, _ in d}
    missed = 0
    for kind, rel, field in done:
        ok = (rel, field) in found
        missed += not ok
        print(f"{'detected' if ok else 'MISSED  '}: {kind} at {show(rel)} ({field})")
    print(f"selftest: {len(done) - missed}/{len(done)} mutations detected, {len(d)} differences reported")
    if len(done) < min_mutations:
        print(f"selftest: only {len(done)} mutations possible in this tree, {min_mutations} required")
        return 1
    return 1 if missed else 0


def main():
    argv = sys.argv[1:]
    if not argv:
        sys.exit(__doc__)
    cmd, argv = argv[0], argv[1:]
    volatile_after, max_print, min_mutations = 0, 50, 10
    while argv and argv[0].startswith("--"):
        if argv[0] == "--volatile-after":
            volatile_after = int(argv[1])
        elif argv[0] == "--min-mutations":
            min_mutations = int(argv[1])
        elif argv[0] == "--max-print":
            max_print = int(argv[1])
        else:
            sys.exit(f"unknown option {argv[0]}")
        argv = argv[2:]
    if cmd == "trees":
        sys.exit(cmd_trees(argv, volatile_after, max_print))
    if cmd == "selftest":
        sys.exit(cmd_selftest(argv, volatile_after, min_mutations))
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
