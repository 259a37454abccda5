//! GNU sparse files (Go's reader.go and common.go): the maps of the old GNU format, of
//! PAX 0.0/0.1 (records) and of PAX 1.0 (at the start of the data), validated, and
//! turned into the list of holes the entry's reader walks.
use super::block::{Parser, BLOCK};
use super::pax::{parse_int, Records, GNU_SPARSE_MAP};
use super::{Header, TarError};

/// Most map bytes read for one file, and most entries (Go's limits).
const MAX_SPECIAL: usize = 1 << 20;
const MAX_ENTRIES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub offset: i64,
    pub length: i64,
}

impl Entry {
    pub fn end(&self) -> i64 {
        self.offset + self.length
    }
}

fn push(map: &mut Vec<Entry>, e: Entry) -> Result<(), TarError> {
    if map.len() >= MAX_ENTRIES {
        return Err(TarError::SparseTooLong);
    }
    map.push(e);
    Ok(())
}

/// The old GNU format's map: four entries in the header, more in extension blocks read
/// from `more` (Go's `readOldGNUSparseMap`). Returns the map and the real size.
pub fn old_gnu_map(
    blk: &[u8; BLOCK],
    mut more: impl FnMut(&mut [u8; BLOCK]) -> Result<(), TarError>,
) -> Result<(Vec<Entry>, i64), TarError> {
    let mut p = Parser::default();
    let real_size = p.numeric(&blk[483..495]);
    if p.failed {
        return Err(TarError::Header);
    }
    let mut map = Vec::new();
    let mut area: Vec<u8> = blk[386..386 + 24 * 4 + 1].to_vec();
    let mut total = area.len();
    while total < MAX_SPECIAL {
        let max = area.len() / 24;
        for i in 0..max {
            let e = &area[i * 24..i * 24 + 24];
            if e[0] == 0 {
                break;
            }
            let offset = p.numeric(&e[..12]);
            let length = p.numeric(&e[12..24]);
            if p.failed {
                return Err(TarError::Header);
            }
            push(&mut map, Entry { offset, length })?;
        }
        if area[24 * max] > 0 {
            let mut ext = [0u8; BLOCK];
            more(&mut ext)?;
            area = ext.to_vec();
            total += area.len();
            continue;
        }
        return Ok((map, real_size));
    }
    Err(TarError::SparseTooLong)
}

/// Which PAX sparse map a header carries, if any (Go's `readGNUSparsePAXHeaders`), with
/// the name and size records applied to `h`.
pub enum PaxSparse {
    None,
    V0x(Vec<Entry>),
    V1x0,
}

pub fn pax_kind(h: &mut Header) -> Result<PaxSparse, TarError> {
    let Some(rec) = h.pax.as_ref() else {
        return Ok(PaxSparse::None);
    };
    let get = |k: &[u8]| rec.get(k).map(|v| v.as_slice()).unwrap_or(b"");
    let (major, minor) = (get(b"GNU.sparse.major"), get(b"GNU.sparse.minor"));
    let is_1x0 = match (major, minor) {
        (b"0", b"0") | (b"0", b"1") => false,
        (b"1", b"0") => true,
        _ if !major.is_empty() || !minor.is_empty() => return Ok(PaxSparse::None),
        _ if !get(GNU_SPARSE_MAP).is_empty() => false,
        _ => return Ok(PaxSparse::None),
    };
    let name = get(b"GNU.sparse.name").to_vec();
    let mut size = get(b"GNU.sparse.size");
    if size.is_empty() {
        size = get(b"GNU.sparse.realsize");
    }
    let size = if size.is_empty() {
        None
    } else {
        Some(parse_int(size).ok_or(TarError::Header)?)
    };
    let map = if is_1x0 { None } else { Some(map_0x1(rec)?) };
    if !name.is_empty() {
        h.name = name;
    }
    if let Some(n) = size {
        h.size = n;
    }
    Ok(match map {
        Some(m) => PaxSparse::V0x(m),
        None => PaxSparse::V1x0,
    })
}

fn map_0x1(rec: &Records) -> Result<Vec<Entry>, TarError> {
    let num = rec
        .get(&b"GNU.sparse.numblocks"[..])
        .and_then(|v| parse_int(v))
        .ok_or(TarError::Header)?;
    if num < 0 || num.checked_mul(2).is_none() {
        return Err(TarError::Header);
    }
    let raw = rec.get(GNU_SPARSE_MAP).map(|v| v.as_slice()).unwrap_or(b"");
    let fields: Vec<&[u8]> = if raw.is_empty() {
        Vec::new()
    } else {
        raw.split(|&c| c == b',').collect()
    };
    if fields.len() as i64 != 2 * num {
        return Err(TarError::Header);
    }
    let mut map = Vec::with_capacity(num as usize);
    for pair in fields.chunks_exact(2) {
        let (Some(offset), Some(length)) = (parse_int(pair[0]), parse_int(pair[1])) else {
            return Err(TarError::Header);
        };
        push(&mut map, Entry { offset, length })?;
    }
    Ok(map)
}

/// The PAX 1.0 map: newline-terminated decimal numbers at the start of the data, read in
/// whole blocks through `read_block` (Go's `readGNUSparseMap1x0`).
pub fn map_1x0(
    mut read_block: impl FnMut(&mut [u8; BLOCK]) -> Result<(), TarError>,
) -> Result<Vec<Entry>, TarError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = 0usize;
    let mut newlines = 0i64;
    let mut total = 0usize;
    let mut feed = |n: i64, buf: &mut Vec<u8>, newlines: &mut i64| -> Result<(), TarError> {
        while *newlines < n {
            total += BLOCK;
            if total > MAX_SPECIAL {
                return Err(TarError::SparseTooLong);
            }
            let mut blk = [0u8; BLOCK];
            read_block(&mut blk)?;
            buf.extend_from_slice(&blk);
            *newlines += blk.iter().filter(|&&c| c == b'\n').count() as i64;
        }
        Ok(())
    };
    let token = |buf: &Vec<u8>, pos: &mut usize, newlines: &mut i64| -> Vec<u8> {
        *newlines -= 1;
        let rest = &buf[*pos..];
        let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
        let tok = rest[..end].to_vec();
        *pos += (end + 1).min(rest.len());
        tok
    };
    feed(1, &mut buf, &mut newlines)?;
    let num = parse_int(&token(&buf, &mut pos, &mut newlines)).ok_or(TarError::Header)?;
    if num < 0 || num.checked_mul(2).is_none() {
        return Err(TarError::Header);
    }
    feed(2 * num, &mut buf, &mut newlines)?;
    let mut map = Vec::new();
    for _ in 0..num {
        let offset = parse_int(&token(&buf, &mut pos, &mut newlines));
        let length = parse_int(&token(&buf, &mut pos, &mut newlines));
        let (Some(offset), Some(length)) = (offset, length) else {
            return Err(TarError::Header);
        };
        push(&mut map, Entry { offset, length })?;
    }
    Ok(map)
}

/// Go's `validateSparseEntries`: in order, not overlapping, inside `size`.
pub fn valid(map: &[Entry], size: i64) -> bool {
    if size < 0 {
        return false;
    }
    let mut pre = Entry {
        offset: 0,
        length: 0,
    };
    for cur in map {
        if cur.offset < 0 || cur.length < 0 || cur.offset > i64::MAX - cur.length {
            return false;
        }
        if cur.end() > size || pre.end() > cur.offset {
            return false;
        }
        pre = *cur;
    }
    true
}

/// Go's `invertSparseEntries`: the holes between the data fragments; the last entry always
/// ends at `size` (possibly empty).
pub fn invert(map: &[Entry], size: i64) -> Vec<Entry> {
    let mut out = Vec::with_capacity(map.len() + 1);
    let mut pre = Entry {
        offset: 0,
        length: 0,
    };
    for cur in map {
        if cur.length == 0 {
            continue;
        }
        pre.length = cur.offset - pre.offset;
        if pre.length > 0 {
            out.push(pre);
        }
        pre.offset = cur.end();
    }
    pre.length = size - pre.offset;
    out.push(pre);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invert_like_go() {
        let e = |offset, length| Entry { offset, length };
        assert_eq!(invert(&[e(0, 5), e(10, 5)], 20), vec![e(5, 5), e(15, 5)]);
        assert_eq!(invert(&[], 7), vec![e(0, 7)]);
        assert_eq!(invert(&[e(0, 7)], 7), vec![e(7, 0)]);
        assert!(valid(&[e(0, 5), e(5, 1)], 6));
        assert!(!valid(&[e(0, 5), e(4, 1)], 6));
        assert!(!valid(&[e(0, 7)], 6));
    }

    #[test]
    fn map_1x0_reads_whole_blocks() {
        let mut data = b"2\n0\n5\n10\n3\n".to_vec();
        data.resize(BLOCK, 0);
        let mut blocks = vec![data];
        let map = map_1x0(|b| {
            b.copy_from_slice(&blocks.remove(0));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            map,
            vec![
                Entry {
                    offset: 0,
                    length: 5
                },
                Entry {
                    offset: 10,
                    length: 3
                }
            ]
        );
    }
}
