//! PAX extended header records (Go's `parsePAX`, `parsePAXRecord`, `parsePAXTime`,
//! `mergePAX`): `"%d %s=%s\n"` records, GNU sparse 0.0 offsets folded into one map record.
use super::{Header, Time};
use std::collections::BTreeMap;

pub const SCHILY_XATTR: &[u8] = b"SCHILY.xattr.";
pub const GNU_SPARSE_MAP: &[u8] = b"GNU.sparse.map";
const GNU_SPARSE_OFFSET: &[u8] = b"GNU.sparse.offset";
const GNU_SPARSE_NUMBYTES: &[u8] = b"GNU.sparse.numbytes";

/// PAX records, a later record with the same key replacing an earlier one.
pub type Records = BTreeMap<Vec<u8>, Vec<u8>>;

/// Go's `strconv.ParseInt(s, 10, 64)`.
pub fn parse_int(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse::<i64>().ok()
}

/// Parses the data of an `x` or `g` header; `None` for a malformed one (ErrHeader).
pub fn parse(buf: &[u8]) -> Option<Records> {
    let mut records = Records::new();
    let mut sparse_map: Vec<&[u8]> = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let (k, v, residual) = parse_record(rest)?;
        rest = residual;
        if k == GNU_SPARSE_OFFSET || k == GNU_SPARSE_NUMBYTES {
            let even = sparse_map.len().is_multiple_of(2);
            if (even && k != GNU_SPARSE_OFFSET)
                || (!even && k != GNU_SPARSE_NUMBYTES)
                || v.contains(&b',')
            {
                return None;
            }
            sparse_map.push(v);
        } else {
            records.insert(k.to_vec(), v.to_vec());
        }
    }
    if !sparse_map.is_empty() {
        records.insert(GNU_SPARSE_MAP.to_vec(), sparse_map.join(&b','));
    }
    Some(records)
}

fn parse_record(s: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let sp = s.iter().position(|&c| c == b' ')?;
    let (n_str, rest) = (&s[..sp], &s[sp + 1..]);
    let n = parse_int(n_str)?;
    if n < 5 || n > s.len() as i64 {
        return None;
    }
    let n = n - (n_str.len() as i64 + 1);
    if n <= 0 {
        return None;
    }
    let n = n as usize;
    let (rec, nl, rem) = (&rest[..n - 1], rest[n - 1], &rest[n..]);
    if nl != b'\n' {
        return None;
    }
    let eq = rec.iter().position(|&c| c == b'=')?;
    let (k, v) = (&rec[..eq], &rec[eq + 1..]);
    if !valid_record(k, v) {
        return None;
    }
    Some((k, v, rem))
}

fn valid_record(k: &[u8], v: &[u8]) -> bool {
    if k.is_empty() || k.contains(&b'=') {
        return false;
    }
    match k {
        b"path" | b"linkpath" | b"uname" | b"gname" => !v.contains(&0),
        _ => !k.contains(&0),
    }
}

/// `%d(.%d)?` seconds, possibly negative (Go's `parsePAXTime`).
pub fn parse_time(s: &[u8]) -> Option<Time> {
    let (ss, sn) = match s.iter().position(|&c| c == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &s[s.len()..]),
    };
    let secs = parse_int(ss)?;
    if sn.is_empty() {
        return Some(Time::unix(secs, 0));
    }
    let mut digits = [b'0'; 9];
    for (i, &c) in sn.iter().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        if i < digits.len() {
            digits[i] = c;
        }
    }
    let nsecs = parse_int(&digits)?;
    if ss.first() == Some(&b'-') {
        Some(Time::unix(secs, -nsecs))
    } else {
        Some(Time::unix(secs, nsecs))
    }
}

/// Go's `mergePAX`: the records override the header's fields (empty values keep the
/// header's), then become the header's PAX records. `false` on a malformed number.
pub fn merge(h: &mut Header, records: Option<Records>) -> bool {
    let Some(records) = records else {
        h.pax = None;
        return true;
    };
    for (k, v) in &records {
        if v.is_empty() {
            continue;
        }
        let ok = match k.as_slice() {
            b"path" => {
                h.name = v.clone();
                true
            }
            b"linkpath" => {
                h.linkname = v.clone();
                true
            }
            b"uid" => parse_int(v).map(|n| h.uid = n).is_some(),
            b"gid" => parse_int(v).map(|n| h.gid = n).is_some(),
            b"atime" => parse_time(v).map(|t| h.atime = t).is_some(),
            b"mtime" => parse_time(v).map(|t| h.mtime = t).is_some(),
            b"ctime" => parse_time(v).is_some(),
            b"size" => parse_int(v).map(|n| h.size = n).is_some(),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    h.pax = Some(records);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: &str, v: &str) -> String {
        let body = format!(" {k}={v}\n");
        let mut n = body.len() + 1;
        while format!("{n}{body}").len() != n {
            n += 1;
        }
        format!("{n}{body}")
    }

    #[test]
    fn records_and_sparse_offsets() {
        let data = rec("path", "a/b")
            + &rec("GNU.sparse.offset", "0")
            + &rec("GNU.sparse.numbytes", "5")
            + &rec("SCHILY.xattr.user.x", "v\u{0}w");
        let r = parse(data.as_bytes()).unwrap();
        assert_eq!(r[&b"path"[..]], b"a/b");
        assert_eq!(r[GNU_SPARSE_MAP], b"0,5");
        assert_eq!(r[&b"SCHILY.xattr.user.x"[..]], b"v\0w");
        assert!(parse(b"3 a=\n").is_none());
        assert!(parse(b"10 path=a\x00\n").is_none());
        assert!(parse(b"6 =ab\n").is_none());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time(b"1.5").unwrap(), Time::unix(1, 500_000_000));
        assert_eq!(parse_time(b"-1.5").unwrap(), Time::unix(-1, -500_000_000));
        assert_eq!(parse_time(b"12").unwrap(), Time::unix(12, 0));
        assert_eq!(
            parse_time(b"1.1234567899").unwrap(),
            Time::unix(1, 123_456_789)
        );
        assert!(parse_time(b".5").is_none());
        assert!(parse_time(b"1.5x").is_none());
    }
}
