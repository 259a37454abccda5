"""Hand-built tar members for the differ tests.

Python's tarfile cannot mix formats in one archive, write PAX records holding binary values
(security.capability), GNU base-256 numbers of our choosing, or deliberately broken headers,
so every header here is assembled byte by byte. `Tar` collects members; `bytes()` gives the
archive. Sparse members come from GNU tar itself (see `gnu_tar_members`).
"""

import io
import os
import subprocess
import tarfile

BLOCK = 512

REG, LNK, SYM, CHR, BLK, DIR, FIFO = b"0", b"1", b"2", b"3", b"4", b"5", b"6"
REGA = b"\0"


def _octal(value, width):
    """NUL-terminated octal, as GNU tar and Go write it."""
    s = b"%0*o" % (width - 1, value)
    if len(s) > width - 1:
        raise ValueError(f"{value} does not fit in {width} octal bytes")
    return s + b"\0"


def _base256(value, width):
    """GNU base-256: high bit of the first byte set, big-endian two's complement."""
    if value < 0:
        value += 1 << (8 * width - 1)
        b = value.to_bytes(width, "big")
        return bytes([b[0] | 0xC0]) + b[1:]
    b = value.to_bytes(width, "big")
    return bytes([b[0] | 0x80]) + b[1:]


def _num(value, width, base256=False):
    if base256 or value < 0 or value >= 8 ** (width - 1):
        return _base256(value, width)
    return _octal(value, width)


def _field(b, width):
    if len(b) > width:
        raise ValueError(f"field {b!r} longer than {width}")
    return b + b"\0" * (width - len(b))


def header(name, *, typeflag=REG, mode=0o644, uid=0, gid=0, size=0, mtime=1704067200,
           linkname=b"", uname=b"", gname=b"", devmajor=0, devminor=0, prefix=b"",
           magic=b"ustar\x0000", base256=(), raw_size=None, checksum_delta=0):
    """One 512-byte ustar header. Names are bytes (already cut to fit). `base256` lists
    fields to force into GNU base-256; `raw_size` puts any 12 bytes in the size field."""
    h = bytearray()
    h += _field(name, 100)
    h += _num(mode, 8)
    h += _num(uid, 8, "uid" in base256)
    h += _num(gid, 8, "gid" in base256)
    h += raw_size if raw_size is not None else _num(size, 12, "size" in base256)
    h += _num(mtime, 12, "mtime" in base256)
    h += b" " * 8
    h += typeflag
    h += _field(linkname, 100)
    h += magic
    h += _field(uname, 32)
    h += _field(gname, 32)
    h += _num(devmajor, 8)
    h += _num(devminor, 8)
    h += _field(prefix, 155)
    h += b"\0" * 12
    assert len(h) == BLOCK, len(h)
    chk = sum(h) + checksum_delta
    h[148:156] = b"%06o\0 " % chk
    return bytes(h)


def pad(data):
    return data + b"\0" * (-len(data) % BLOCK)


def pax_records(records):
    """records: list of (key str, value bytes|str). Each record is 'LEN key=value\\n', LEN
    counting itself."""
    out = b""
    for k, v in records:
        if isinstance(v, str):
            v = v.encode()
        body = b" " + k.encode() + b"=" + v + b"\n"
        n = len(body) + 1
        while len(str(n).encode()) + len(body) != n:
            n += 1
        out += str(n).encode() + body
    return out


class Tar:
    def __init__(self):
        self.buf = io.BytesIO()
        self.names = []

    def raw(self, b):
        self.buf.write(b)

    def _emit(self, name, data, pax, gnu_long, gnu_longlink, linkname, **kw):
        nb = name.encode() if isinstance(name, str) else name
        lb = linkname.encode() if isinstance(linkname, str) else linkname
        rec = list(pax or [])
        hdr_name, prefix = nb, b""
        if gnu_long:
            self.raw(header(b"././@LongLink", typeflag=b"L", size=len(nb) + 1, mode=0))
            self.raw(pad(nb + b"\0"))
            hdr_name = nb[:100]
        elif len(nb) > 100:
            # ustar prefix split if possible, else PAX path
            cut = nb.rfind(b"/", 0, 156)
            if 0 < cut and len(nb) - cut - 1 <= 100 and cut <= 155 and not any(k == "path" for k, _ in rec):
                prefix, hdr_name = nb[:cut], nb[cut + 1:]
            else:
                rec.append(("path", nb))
                hdr_name = nb[:100]
        hdr_link = lb
        if gnu_longlink:
            self.raw(header(b"././@LongLink", typeflag=b"K", size=len(lb) + 1, mode=0))
            self.raw(pad(lb + b"\0"))
            hdr_link = lb[:100]
        elif len(lb) > 100:
            rec.append(("linkpath", lb))
            hdr_link = lb[:100]
        if rec:
            body = pax_records(rec)
            pn = b"PaxHeaders/" + hdr_name.rstrip(b"/").split(b"/")[-1][:80]
            self.raw(header(pn, typeflag=b"x", size=len(body), mode=0o644))
            self.raw(pad(body))
        self.raw(header(hdr_name, prefix=prefix, linkname=hdr_link, size=len(data), **kw))
        if data:
            self.raw(pad(data))
        self.names.append(nb)

    def add(self, name, typeflag=REG, data=b"", pax=None, gnu_long=False, gnu_longlink=False,
            linkname=b"", mtime=1704067200, pax_mtime=None, xattrs=None, **kw):
        rec = list(pax or [])
        if pax_mtime is not None:
            rec.append(("mtime", pax_mtime))
        for k, v in (xattrs or {}).items():
            rec.append(("SCHILY.xattr." + k, v))
        if typeflag in (SYM, LNK, DIR, CHR, BLK, FIFO):
            data_ = b""
        else:
            data_ = data
        self._emit(name, data_, rec, gnu_long, gnu_longlink, linkname, typeflag=typeflag,
                   mtime=mtime, **kw)

    def file(self, name, data=b"", mode=0o644, **kw):
        self.add(name, REG, data=data, mode=mode, **kw)

    def dir(self, name, mode=0o755, **kw):
        if not name.endswith("/"):
            name += "/"
        self.add(name, DIR, mode=mode, **kw)

    def symlink(self, name, target, **kw):
        kw.setdefault("mode", 0o777)
        self.add(name, SYM, linkname=target, **kw)

    def hardlink(self, name, target, **kw):
        self.add(name, LNK, linkname=target, **kw)

    def whiteout(self, path, **kw):
        d, b = os.path.split(path)
        self.file(os.path.join(d, ".wh." + b), mode=0o644, **kw)

    def opaque(self, d, **kw):
        self.file(d.rstrip("/") + "/.wh..wh..opq", mode=0o644, **kw)

    def bytes(self, end=True):
        b = self.buf.getvalue()
        if end:
            b += b"\0" * (2 * BLOCK)
        return b


def gnu_tar_members(stage, names, fmt_args, mtime_ns=None):
    """Runs GNU tar over `names` in `stage` and returns the archive without its end-of-archive
    blocks, so it can be spliced into a Tar (raw)."""
    cmd = ["tar", "-C", stage, "--sparse", "--numeric-owner", "--owner=0", "--group=0",
           "--no-recursion", "-b", "1", "-cf", "-", *fmt_args, *names]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE,
                         env={**os.environ, "LC_ALL": "C", "TZ": "UTC"}).stdout
    with tarfile.open(fileobj=io.BytesIO(out), mode="r:") as tf:
        for _ in tf:
            pass
        end = tf.offset
    return out[:end]
