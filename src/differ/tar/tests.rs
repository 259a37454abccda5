//! The reader against Go's archive/tar behaviour on the edges: ends of archive, header
//! formats, legacy type flags, global headers, old GNU sparse maps.
use super::*;
use crate::differ::testtar::{Entry, Format, Tar};

fn headers(data: &[u8]) -> Result<Vec<Header>, TarError> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while let Some(h) = r.next_header()? {
        out.push(h);
    }
    Ok(out)
}

#[test]
fn ends_of_archive() {
    let mut t = Tar::new();
    t.file("a", 0o644, b"12345");
    let body = t.out.clone();
    // Clean EOF at a header boundary, one zero block, two zero blocks.
    assert_eq!(headers(&body).unwrap().len(), 1);
    let mut one = body.clone();
    one.extend_from_slice(&[0; 512]);
    assert_eq!(headers(&one).unwrap().len(), 1);
    let mut two = one.clone();
    two.extend_from_slice(&[0; 512]);
    assert_eq!(headers(&two).unwrap().len(), 1);
    // EOF in the last entry's padding: Go's reader ends the archive there.
    assert_eq!(headers(&body[..512 + 5 + 3]).unwrap().len(), 1);
    // EOF inside the data: an error once the data is skipped.
    assert!(matches!(
        headers(&body[..512 + 3]),
        Err(TarError::UnexpectedEof)
    ));
    // A partial header.
    let mut partial = body.clone();
    partial.extend_from_slice(&[1; 100]);
    assert!(matches!(headers(&partial), Err(TarError::UnexpectedEof)));
    // A zero block followed by a header.
    let mut zero_then = body.clone();
    zero_then.extend_from_slice(&[0; 512]);
    zero_then.extend_from_slice(&body);
    assert!(matches!(headers(&zero_then), Err(TarError::Header)));
}

#[test]
fn checksums_signed_or_unsigned_else_invalid() {
    let mut t = Tar::new();
    t.file("a", 0o644, b"");
    let mut bad = t.out.clone();
    bad[0] = b'b';
    assert!(matches!(headers(&bad), Err(TarError::Header)));
}

#[test]
fn legacy_regular_type_with_trailing_slash_is_a_directory() {
    let mut t = Tar::new();
    t.entry(
        Entry {
            typeflag: 0,
            name: b"legacy/",
            ..Default::default()
        },
        b"",
    );
    t.entry(
        Entry {
            typeflag: 0,
            name: b"file",
            size: 2,
            ..Default::default()
        },
        b"ab",
    );
    let h = headers(&t.finish()).unwrap();
    assert_eq!(h[0].typeflag, TYPE_DIR);
    assert_eq!(h[1].typeflag, TYPE_REG);
}

#[test]
fn ustar_prefix_and_gnu_times() {
    let mut b = Tar::block(
        &Entry {
            name: b"name",
            ..Default::default()
        },
        Format::Ustar,
    );
    b[345..351].copy_from_slice(b"prefix");
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&c| c as u32).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\x00 ").as_bytes());
    let h = headers(&b).unwrap();
    assert_eq!(h[0].name, b"prefix/name");
}

#[test]
fn global_headers_are_returned_with_their_path() {
    let rec = crate::differ::testtar::pax_record("path", b"global-name");
    let h = headers(
        &Tar::new()
            .pax_raw(b'g', &rec)
            .file("f", 0o644, b"")
            .finish(),
    )
    .unwrap();
    assert_eq!(h[0].typeflag, TYPE_XGLOBAL);
    assert_eq!(h[0].name, b"global-name");
    assert_eq!(h[1].name, b"f");
}

#[test]
fn old_gnu_sparse_map_with_extension_block() {
    // Five fragments: four in the header, one in an extension block.
    let mut b = Tar::block(
        &Entry {
            typeflag: b'S',
            name: b"s",
            size: 5,
            ..Default::default()
        },
        Format::Gnu,
    );
    for i in 0..4 {
        let off = 386 + i * 24;
        b[off..off + 12].copy_from_slice(format!("{:011o}\x00", i * 100).as_bytes());
        b[off + 12..off + 24].copy_from_slice(format!("{:011o}\x00", 1).as_bytes());
    }
    b[482] = 1; // extended
    b[483..495].copy_from_slice(format!("{:011o}\x00", 1000).as_bytes());
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&c| c as u32).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\x00 ").as_bytes());
    let mut ext = [0u8; 512];
    ext[..12].copy_from_slice(format!("{:011o}\x00", 999).as_bytes());
    ext[12..24].copy_from_slice(format!("{:011o}\x00", 1).as_bytes());
    let mut data = b.to_vec();
    data.extend_from_slice(&ext);
    let mut content = b"abcde".to_vec();
    content.resize(512, 0);
    data.extend_from_slice(&content);
    data.extend_from_slice(&[0; 1024]);
    let mut r = Reader::new(&data[..]);
    let h = r.next_header().unwrap().unwrap();
    assert_eq!(h.typeflag, TYPE_GNU_SPARSE);
    assert_eq!(h.size, 1000);
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    loop {
        match r.read_data(&mut buf).unwrap() {
            Chunk::Data(n) => out.extend_from_slice(&buf[..n]),
            Chunk::Hole(n) => out.extend(std::iter::repeat_n(0u8, n as usize)),
            Chunk::End => break,
        }
    }
    assert_eq!(out.len(), 1000);
    assert_eq!(
        (out[0], out[100], out[200], out[300], out[999]),
        (b'a', b'b', b'c', b'd', b'e')
    );
    assert!(r.next_header().unwrap().is_none());
}

#[test]
fn sparse_data_must_match_the_map() {
    let mut t = Tar::new();
    t.pax(&[
        ("GNU.sparse.major", b"0"),
        ("GNU.sparse.minor", b"1"),
        ("GNU.sparse.realsize", b"100"),
        ("GNU.sparse.numblocks", b"1"),
        ("GNU.sparse.map", b"0,10"),
    ]);
    t.file("s", 0o644, b"only5");
    let data = t.finish();
    let mut r = Reader::new(&data[..]);
    r.next_header().unwrap().unwrap();
    let mut buf = [0u8; 64];
    let err = loop {
        match r.read_data(&mut buf) {
            Ok(Chunk::End) => panic!("accepted"),
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(matches!(err, TarError::MissData), "{err}");
    // A map beyond the size is an invalid header.
    let mut t = Tar::new();
    t.pax(&[
        ("GNU.sparse.major", b"0"),
        ("GNU.sparse.minor", b"1"),
        ("GNU.sparse.realsize", b"5"),
        ("GNU.sparse.numblocks", b"1"),
        ("GNU.sparse.map", b"3,10"),
    ]);
    t.file("s", 0o644, b"0123456789");
    assert!(matches!(headers(&t.finish()), Err(TarError::Header)));
}

#[test]
fn times_bound_like_containerd() {
    assert_eq!(Time::unix(-5, 0).bounded_nanos(), 0);
    assert_eq!(Time::unix(5, 7).bounded_nanos(), 5_000_000_007);
    assert_eq!(Time::unix(i64::MAX, 0).bounded_nanos(), 0);
    assert_eq!(Time::unix(9_223_372_037, 0).bounded_nanos(), 0);
    assert!(Time::ZERO < Time::unix(0, 0));
    assert_eq!(Time::ZERO.max(Time::unix(3, 0)), Time::unix(3, 0));
}
