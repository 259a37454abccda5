//! Turns the layer's bytes into its tar stream, detecting the compression by the magic
//! bytes as containerd's `compression.DecompressStream` does: gzip (`1f 8b 08`, every
//! member of a multi-member file), zstd (a frame or a skippable frame, every frame) or
//! none. gzip is decoded by flate2 on zlib-rs and zstd by libzstd (docs/differ.md says
//! why and how fast).
use super::media::Decoding;
use std::io::{self, BufRead, BufReader, Cursor, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// containerd's `DetectCompression` on the first (up to) 10 bytes.
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&GZIP_MAGIC) {
        return Compression::Gzip;
    }
    if head.starts_with(&ZSTD_MAGIC) {
        return Compression::Zstd;
    }
    if head.len() >= 8 {
        let m = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if m & 0xFFFF_FFF0 == 0x184D_2A50 {
            return Compression::Zstd;
        }
    }
    Compression::None
}

/// Largest zstd window accepted: 2^29 (512 MiB), as containerd's decoder (klauspost's
/// default maximum window).
const ZSTD_WINDOW_LOG_MAX: u32 = 29;

/// The decoded stream of `input` and the compression found.
pub fn decoder<R: BufRead + Send + 'static>(
    decoding: Decoding,
    mut input: R,
) -> io::Result<(Box<dyn Read + Send>, Compression)> {
    if decoding == Decoding::Plain {
        return Ok((Box::new(input), Compression::None));
    }
    // Peek(10): fewer bytes only at the end of the stream.
    let mut head = Vec::with_capacity(10);
    while head.len() < 10 {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(10 - head.len());
        head.extend_from_slice(&buf[..n]);
        input.consume(n);
    }
    let compression = detect(&head);
    let joined = Cursor::new(head).chain(input);
    let out: Box<dyn Read + Send> = match compression {
        Compression::None => Box::new(joined),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(joined)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
                1 << 17,
                joined,
            ))?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
    };
    Ok((out, compression))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn decode(decoding: Decoding, data: Vec<u8>) -> io::Result<(Vec<u8>, Compression)> {
        let (mut r, c) = decoder(decoding, Cursor::new(data))?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok((out, c))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn detects_by_magic() {
        let plain = b"hello world, not compressed".to_vec();
        assert_eq!(
            decode(Decoding::Detect, plain.clone()).unwrap(),
            (plain.clone(), Compression::None)
        );
        let mut two = gzip(b"first ");
        two.extend(gzip(b"second"));
        assert_eq!(
            decode(Decoding::Detect, two).unwrap(),
            (b"first second".to_vec(), Compression::Gzip)
        );
        let z = zstd::encode_all(&b"zstd data"[..], 3).unwrap();
        let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 0xaa, 0xbb];
        skippable.extend(&z);
        assert_eq!(
            decode(Decoding::Detect, skippable).unwrap(),
            (b"zstd data".to_vec(), Compression::Zstd)
        );
        // A plain media type is never decompressed.
        let g = gzip(b"x");
        assert_eq!(decode(Decoding::Plain, g.clone()).unwrap().0, g);
        assert_eq!(decode(Decoding::Detect, Vec::new()).unwrap().0, b"");
        assert_eq!(decode(Decoding::Detect, vec![0x1f]).unwrap().0, vec![0x1f]);
    }

    #[test]
    fn truncated_and_trailing_garbage_fail() {
        let g = gzip(&vec![7u8; 100_000]);
        assert!(decode(Decoding::Detect, g[..g.len() / 2].to_vec()).is_err());
        let mut trailing = g.clone();
        trailing.extend_from_slice(b"garbage!");
        assert!(decode(Decoding::Detect, trailing).is_err());
        let z = zstd::encode_all(&vec![7u8; 100_000][..], 3).unwrap();
        assert!(decode(Decoding::Detect, z[..z.len() - 3].to_vec()).is_err());
    }
}
