//! One 512-byte tar header block, parsed as Go's archive/tar parses it (format.go,
//! strconv.go): the checksum decides whether it is a header at all, the magic which
//! format, numbers are octal or GNU base-256, strings end at the first NUL.
use super::{Header, Time};

pub const BLOCK: usize = 512;

/// Go's `Format` bits, as far as the reader needs them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Unknown,
    V7,
    UstarOrPax,
    Gnu,
    Star,
}

/// A parse of numeric fields that remembers whether any failed (Go's `parser`).
#[derive(Default)]
pub struct Parser {
    pub failed: bool,
}

/// The bytes up to the first NUL (Go's `parseString`).
pub fn parse_string(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// No byte ≥ 0x80 and no NUL (Go's `isASCII` on a string).
pub fn is_ascii(b: &[u8]) -> bool {
    b.iter().all(|&c| c != 0 && c < 0x80)
}

impl Parser {
    /// Base-256 if the first bit is set, else octal (Go's `parseNumeric`).
    pub fn numeric(&mut self, b: &[u8]) -> i64 {
        if let Some(&first) = b.first() {
            if first & 0x80 != 0 {
                let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
                let mut x: u64 = 0;
                for (i, &c) in b.iter().enumerate() {
                    let mut c = c ^ inv;
                    if i == 0 {
                        c &= 0x7f;
                    }
                    if x >> 56 > 0 {
                        self.failed = true;
                        return 0;
                    }
                    x = (x << 8) | c as u64;
                }
                if x >> 63 > 0 {
                    self.failed = true;
                    return 0;
                }
                return if inv == 0xff { !(x as i64) } else { x as i64 };
            }
        }
        self.octal(b)
    }

    /// Octal, padded with spaces or NULs on either side (Go's `parseOctal`).
    pub fn octal(&mut self, b: &[u8]) -> i64 {
        let trim = |c: &u8| *c == b' ' || *c == 0;
        let start = b.iter().position(|c| !trim(c)).unwrap_or(b.len());
        let end = b
            .iter()
            .rposition(|c| !trim(c))
            .map(|i| i + 1)
            .unwrap_or(start);
        let b = &b[start..end.max(start)];
        if b.is_empty() {
            return 0;
        }
        let s = parse_string(b);
        if s.is_empty() {
            self.failed = true;
            return 0;
        }
        let mut x: u64 = 0;
        for &c in s {
            if !(b'0'..=b'7').contains(&c) {
                self.failed = true;
                return 0;
            }
            match x
                .checked_mul(8)
                .and_then(|v| v.checked_add((c - b'0') as u64))
            {
                Some(v) => x = v,
                None => {
                    // strconv.ParseUint returns the maximum value on overflow.
                    self.failed = true;
                    return -1;
                }
            }
        }
        x as i64
    }
}

/// The sums of all bytes with the checksum field counted as spaces, unsigned and signed.
fn checksums(b: &[u8; BLOCK]) -> (i64, i64) {
    let mut unsigned = 0i64;
    let mut signed = 0i64;
    for (i, &c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += c as i64;
        signed += c as i8 as i64;
    }
    (unsigned, signed)
}

/// Go's `block.getFormat`: `Unknown` unless the checksum matches.
pub fn format(b: &[u8; BLOCK]) -> Format {
    let mut p = Parser::default();
    let value = p.octal(&b[148..156]);
    let (c1, c2) = checksums(b);
    if p.failed || (value != c1 && value != c2) {
        return Format::Unknown;
    }
    let magic = &b[257..263];
    let version = &b[263..265];
    let trailer = &b[508..512];
    if magic == b"ustar\x00" && trailer == b"tar\x00" {
        Format::Star
    } else if magic == b"ustar\x00" {
        Format::UstarOrPax
    } else if magic == b"ustar " && version == b" \x00" {
        Format::Gnu
    } else {
        Format::V7
    }
}

/// Go's `readHeader` after the block was read and found not to be zeros: the block's own
/// fields, before PAX records and GNU long names apply (`pax` is None). `None` if the
/// block is not a header or a numeric field is malformed (ErrHeader).
pub fn parse(b: &[u8; BLOCK], format: Format) -> Option<Header> {
    let mut p = Parser::default();
    let mut h = Header {
        typeflag: b[156],
        name: parse_string(&b[0..100]).to_vec(),
        linkname: parse_string(&b[157..257]).to_vec(),
        size: p.numeric(&b[124..136]),
        mode: p.numeric(&b[100..108]),
        uid: p.numeric(&b[108..116]),
        gid: p.numeric(&b[116..124]),
        mtime: Time::unix(p.numeric(&b[136..148]), 0),
        atime: Time::ZERO,
        devmajor: 0,
        devminor: 0,
        pax: None,
    };
    if format != Format::V7 {
        h.devmajor = p.numeric(&b[329..337]);
        h.devminor = p.numeric(&b[337..345]);
        let mut prefix: &[u8] = &[];
        match format {
            Format::UstarOrPax => prefix = parse_string(&b[345..500]),
            Format::Star => {
                prefix = parse_string(&b[345..476]);
                h.atime = Time::unix(p.numeric(&b[476..488]), 0);
                let _ctime = p.numeric(&b[488..500]);
            }
            Format::Gnu => {
                let mut p2 = Parser::default();
                if b[345] != 0 {
                    h.atime = Time::unix(p2.numeric(&b[345..357]), 0);
                }
                if b[357] != 0 {
                    let _ctime = p2.numeric(&b[357..369]);
                }
                // Files from pre-Go 1.8 writers put a USTAR prefix where GNU keeps times.
                if p2.failed {
                    h.atime = Time::ZERO;
                    let s = parse_string(&b[345..500]);
                    if is_ascii(s) {
                        prefix = s;
                    }
                }
            }
            Format::V7 | Format::Unknown => {}
        }
        if !prefix.is_empty() {
            let mut name = prefix.to_vec();
            name.push(b'/');
            name.extend_from_slice(&h.name);
            h.name = name;
        }
    }
    if p.failed {
        return None;
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_like_go() {
        let mut p = Parser::default();
        assert_eq!(p.numeric(b"0000644\x00"), 0o644);
        assert_eq!(p.numeric(b"  644 \x00"), 0o644);
        assert_eq!(p.numeric(b"\x00\x00\x00"), 0);
        assert!(!p.failed);
        assert_eq!(p.numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0x01, 0x00]), 256);
        assert_eq!(p.numeric(&[0xff; 8]), -1);
        assert!(!p.failed);
        p.numeric(b"0008");
        assert!(p.failed);
        let mut p = Parser::default();
        p.numeric(&[0x80, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(p.failed);
    }
}
