//! A streaming tar reader with the semantics of Go's archive/tar `Reader`, which
//! containerd's applier uses: the same headers accepted or refused (checksums, V7, USTAR,
//! PAX, GNU and STAR formats, base-256 numbers, GNU long names, PAX records, GNU sparse
//! files of every version), the same end of archive (two zero blocks, one zero block or a
//! clean EOF at a header boundary, even a short final padding), the same errors for
//! truncated data. It never allocates by a size read from the archive: special entries
//! (PAX records, long names, sparse maps) are capped at 1 MiB like Go's.
mod block;
pub mod pax;
mod sparse;

use sparse::Entry;
use std::io::{self, Read};

pub use block::BLOCK;

pub const TYPE_REG: u8 = b'0';
pub const TYPE_LINK: u8 = b'1';
pub const TYPE_SYMLINK: u8 = b'2';
pub const TYPE_CHAR: u8 = b'3';
pub const TYPE_BLOCK: u8 = b'4';
pub const TYPE_DIR: u8 = b'5';
pub const TYPE_FIFO: u8 = b'6';
pub const TYPE_XHEADER: u8 = b'x';
pub const TYPE_XGLOBAL: u8 = b'g';
pub const TYPE_GNU_SPARSE: u8 = b'S';
pub const TYPE_GNU_LONGNAME: u8 = b'L';
pub const TYPE_GNU_LONGLINK: u8 = b'K';

const MAX_SPECIAL: u64 = 1 << 20;
const UNIX_TO_INTERNAL: i64 = 62_135_596_800;

/// A point in time as Go's `time.Time` holds one (seconds since year 1, wrapping like
/// Go's on overflow, and nanoseconds), so that comparisons and bounds agree with Go's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time {
    internal_sec: i64,
    nsec: i64,
}

impl Time {
    /// Go's zero `time.Time` (year 1).
    pub const ZERO: Time = Time {
        internal_sec: 0,
        nsec: 0,
    };

    /// Go's `time.Unix(sec, nsec)`.
    pub fn unix(mut sec: i64, mut nsec: i64) -> Time {
        if !(0..1_000_000_000).contains(&nsec) {
            let n = nsec / 1_000_000_000;
            sec = sec.wrapping_add(n);
            nsec -= n * 1_000_000_000;
            if nsec < 0 {
                nsec += 1_000_000_000;
                sec = sec.wrapping_sub(1);
            }
        }
        Time {
            internal_sec: sec.wrapping_add(UNIX_TO_INTERNAL),
            nsec,
        }
    }

    /// containerd's `boundTime`: times before 1970 or beyond Go's UnixNano range become
    /// 1970-01-01. Returns nanoseconds since the Unix epoch.
    pub fn bounded_nanos(self) -> i64 {
        let min = Time::unix(0, 0);
        let max = Time::unix(0, i64::MAX);
        if self < min || self > max {
            return 0;
        }
        (self.internal_sec - UNIX_TO_INTERNAL) * 1_000_000_000 + self.nsec
    }
}

/// One entry as Go's `tar.Header` describes it, with the fields the applier uses.
#[derive(Clone, Debug)]
pub struct Header {
    pub typeflag: u8,
    pub name: Vec<u8>,
    pub linkname: Vec<u8>,
    pub size: i64,
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    pub mtime: Time,
    pub atime: Time,
    pub devmajor: i64,
    pub devminor: i64,
    /// The records of the PAX header that preceded this entry (`PAXRecords`).
    pub pax: Option<pax::Records>,
}

impl Header {
    /// The `SCHILY.xattr.*` records as (attribute name, value).
    pub fn xattrs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pax.iter().flat_map(|r| {
            r.iter().filter_map(|(k, v)| {
                k.strip_prefix(pax::SCHILY_XATTR)
                    .map(|name| (name, v.as_slice()))
            })
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("archive/tar: invalid tar header")]
    Header,
    #[error("archive/tar: header field too long")]
    FieldTooLong,
    #[error("unexpected EOF")]
    UnexpectedEof,
    #[error("archive/tar: sparse map too long")]
    SparseTooLong,
    #[error("archive/tar: sparse file references non-existent data")]
    MissData,
    #[error("archive/tar: sparse file contains unreferenced data")]
    UnrefData,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The next piece of an entry's content.
pub enum Chunk {
    /// `n` bytes of data were placed at the start of the buffer.
    Data(usize),
    /// A hole of `n` zero bytes (sparse files only).
    Hole(u64),
    /// The content is complete.
    End,
}

enum Current {
    Regular {
        /// Bytes of the data section not read yet.
        nb: i64,
    },
    Sparse {
        nb: i64,
        holes: Vec<Entry>,
        idx: usize,
        pos: i64,
    },
}

impl Current {
    fn physical_remaining(&self) -> i64 {
        match self {
            Current::Regular { nb } | Current::Sparse { nb, .. } => *nb,
        }
    }
}

fn header_only(typeflag: u8) -> bool {
    matches!(
        typeflag,
        TYPE_LINK | TYPE_SYMLINK | TYPE_CHAR | TYPE_BLOCK | TYPE_DIR | TYPE_FIFO
    )
}

fn pad_of(n: i64) -> u64 {
    (n.wrapping_neg() & (BLOCK as i64 - 1)) as u64
}

pub struct Reader<R> {
    r: R,
    pad: u64,
    curr: Current,
}

/// How a full read ended: filled, clean EOF before any byte, or EOF part way.
enum Fill {
    Full,
    Eof,
    Short,
}

impl<R: Read> Reader<R> {
    pub fn new(r: R) -> Reader<R> {
        Reader {
            r,
            pad: 0,
            curr: Current::Regular { nb: 0 },
        }
    }

    /// The underlying stream (for reading what follows the archive).
    pub fn into_inner(self) -> R {
        self.r
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<Fill, TarError> {
        let mut n = 0;
        while n < buf.len() {
            match self.r.read(&mut buf[n..]) {
                Ok(0) => return Ok(if n == 0 { Fill::Eof } else { Fill::Short }),
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Fill::Full)
    }

    fn discard(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut scratch = [0u8; 8192];
        while n > 0 {
            let want = n.min(scratch.len() as u64) as usize;
            match self.r.read(&mut scratch[..want]) {
                Ok(0) => return Err(TarError::UnexpectedEof),
                Ok(k) => n -= k as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads from the current entry's data section (Go's `regFileReader`).
    fn read_section(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let nb = match &mut self.curr {
            Current::Regular { nb } | Current::Sparse { nb, .. } => nb,
        };
        let want = (*nb).min(buf.len() as i64) as usize;
        if want == 0 {
            return Ok(0);
        }
        loop {
            match self.r.read(&mut buf[..want]) {
                Ok(0) => return Err(TarError::UnexpectedEof),
                Ok(k) => {
                    *nb -= k as i64;
                    return Ok(k);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A whole block of the data section, or UnexpectedEof (Go's `mustReadFull`).
    fn read_section_block(&mut self, blk: &mut [u8; BLOCK]) -> Result<(), TarError> {
        let mut n = 0;
        while n < BLOCK {
            match self.read_section(&mut blk[n..])? {
                0 => return Err(TarError::UnexpectedEof),
                k => n += k,
            }
        }
        Ok(())
    }

    /// The data of a PAX header or GNU long name, at most 1 MiB (Go's `readSpecialFile`).
    fn read_special(&mut self) -> Result<Vec<u8>, TarError> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = self.read_section(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
            if out.len() as u64 > MAX_SPECIAL {
                return Err(TarError::FieldTooLong);
            }
        }
    }

    fn set_regular(&mut self, h: &Header) -> Result<(), TarError> {
        let nb = if header_only(h.typeflag) { 0 } else { h.size };
        if nb < 0 {
            return Err(TarError::Header);
        }
        self.pad = pad_of(nb);
        self.curr = Current::Regular { nb };
        Ok(())
    }

    /// The next entry, or `None` at the end of the archive (Go's `Reader.Next`).
    pub fn next_header(&mut self) -> Result<Option<Header>, TarError> {
        let mut records: Option<pax::Records> = None;
        let mut long_name = Vec::new();
        let mut long_link = Vec::new();
        loop {
            let remaining = self.curr.physical_remaining();
            self.discard(remaining.max(0) as u64)?;
            self.curr = Current::Regular { nb: 0 };
            if self.pad > 0 {
                let mut padding = [0u8; BLOCK];
                let pad = self.pad as usize;
                match self.fill(&mut padding[..pad])? {
                    Fill::Full => {}
                    // Go's tryReadFull reports io.EOF, which ends the archive.
                    Fill::Eof | Fill::Short => return Ok(None),
                }
                self.pad = 0;
            }
            let mut blk = [0u8; BLOCK];
            match self.fill(&mut blk)? {
                Fill::Full => {}
                Fill::Eof => return Ok(None),
                Fill::Short => return Err(TarError::UnexpectedEof),
            }
            if blk.iter().all(|&c| c == 0) {
                match self.fill(&mut blk)? {
                    Fill::Full => {}
                    Fill::Eof => return Ok(None),
                    Fill::Short => return Err(TarError::UnexpectedEof),
                }
                if blk.iter().all(|&c| c == 0) {
                    return Ok(None);
                }
                return Err(TarError::Header);
            }
            let format = block::format(&blk);
            if format == block::Format::Unknown {
                return Err(TarError::Header);
            }
            let mut h = block::parse(&blk, format).ok_or(TarError::Header)?;
            self.set_regular(&h)?;
            match h.typeflag {
                TYPE_XHEADER | TYPE_XGLOBAL => {
                    let data = self.read_special()?;
                    let parsed = pax::parse(&data).ok_or(TarError::Header)?;
                    if h.typeflag == TYPE_XGLOBAL {
                        if !pax::merge(&mut h, Some(parsed)) {
                            return Err(TarError::Header);
                        }
                        return Ok(Some(Header {
                            typeflag: TYPE_XGLOBAL,
                            name: h.name,
                            linkname: Vec::new(),
                            size: 0,
                            mode: 0,
                            uid: 0,
                            gid: 0,
                            mtime: Time::ZERO,
                            atime: Time::ZERO,
                            devmajor: 0,
                            devminor: 0,
                            pax: h.pax,
                        }));
                    }
                    records = Some(parsed);
                }
                TYPE_GNU_LONGNAME | TYPE_GNU_LONGLINK => {
                    let data = self.read_special()?;
                    let s = block::parse_string(&data).to_vec();
                    if h.typeflag == TYPE_GNU_LONGNAME {
                        long_name = s;
                    } else {
                        long_link = s;
                    }
                }
                _ => {
                    if !pax::merge(&mut h, records.take()) {
                        return Err(TarError::Header);
                    }
                    if !long_name.is_empty() {
                        h.name = std::mem::take(&mut long_name);
                    }
                    if !long_link.is_empty() {
                        h.linkname = std::mem::take(&mut long_link);
                    }
                    if h.typeflag == 0 {
                        h.typeflag = if h.name.ends_with(b"/") {
                            TYPE_DIR
                        } else {
                            TYPE_REG
                        };
                    }
                    self.set_regular(&h)?;
                    self.handle_sparse(&mut h, &blk)?;
                    return Ok(Some(h));
                }
            }
        }
    }

    fn handle_sparse(&mut self, h: &mut Header, blk: &[u8; BLOCK]) -> Result<(), TarError> {
        let map = if h.typeflag == TYPE_GNU_SPARSE {
            if block::format(blk) != block::Format::Gnu {
                return Err(TarError::Header);
            }
            let (map, real_size) = sparse::old_gnu_map(blk, |ext| match self.fill(ext)? {
                Fill::Full => Ok(()),
                Fill::Eof | Fill::Short => Err(TarError::UnexpectedEof),
            })?;
            h.size = real_size;
            Some(map)
        } else {
            match sparse::pax_kind(h)? {
                sparse::PaxSparse::None => None,
                sparse::PaxSparse::V0x(map) => Some(map),
                sparse::PaxSparse::V1x0 => Some(sparse::map_1x0(|b| self.read_section_block(b))?),
            }
        };
        if let Some(map) = map {
            if header_only(h.typeflag) || !sparse::valid(&map, h.size) {
                return Err(TarError::Header);
            }
            let holes = sparse::invert(&map, h.size);
            let nb = self.curr.physical_remaining();
            self.curr = Current::Sparse {
                nb,
                holes,
                idx: 0,
                pos: 0,
            };
        }
        Ok(())
    }

    /// The next piece of the current entry's content: data (holes read as zeros in Go are
    /// reported as holes here), until `End`. Errors as Go's readers report them.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<Chunk, TarError> {
        let (hole_start, hole_end, last, pos) = match &self.curr {
            Current::Regular { .. } => {
                return Ok(match self.read_section(buf)? {
                    0 => Chunk::End,
                    n => Chunk::Data(n),
                });
            }
            Current::Sparse {
                nb,
                holes,
                idx,
                pos,
            } => {
                let end = holes[holes.len() - 1].end();
                if end - *pos <= 0 {
                    if *nb > 0 {
                        return Err(TarError::UnrefData);
                    }
                    return Ok(Chunk::End);
                }
                let h = holes[*idx];
                (h.offset, h.end(), *idx + 1 == holes.len(), *pos)
            }
        };
        if pos < hole_start {
            let want = ((hole_start - pos) as u64).min(buf.len() as u64) as usize;
            let n = match self.read_section(&mut buf[..want]) {
                Ok(0) => return Err(TarError::MissData),
                Ok(n) => n,
                Err(e) => return Err(e),
            };
            if let Current::Sparse { pos, .. } = &mut self.curr {
                *pos += n as i64;
            }
            return Ok(Chunk::Data(n));
        }
        let n = (hole_end - pos) as u64;
        if let Current::Sparse { pos, idx, .. } = &mut self.curr {
            *pos = hole_end;
            if !last {
                *idx += 1;
            }
        }
        Ok(Chunk::Hole(n))
    }
}

#[cfg(test)]
mod tests;
