//! The layer source: the verified blob file from ipcs's own store (no RPC per read),
//! hashed again while it is read (its digest is checked at the end), decoded, and hashed
//! once more to give the diffID: the sha256 of the uncompressed stream, computed while
//! streaming, over every byte including what follows the end of the tar (containerd
//! reads that too).
use super::decompress::{self, Compression};
use super::error::DiffError;
use super::media::Decoding;
use crate::digest::{Algorithm, Digest, Digester};
use crate::store::VerifiedBlob;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::{Arc, Mutex};

/// Bytes read from the blob file at a time.
const INPUT_BUFFER: usize = 1 << 18;
/// Bytes read from the decoder at a time (the tar reader takes headers from this buffer).
const TAR_BUFFER: usize = 1 << 18;

struct Hashed<R> {
    inner: R,
    hasher: Digester,
    count: u64,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// The compressed side, shared between the decoder (which reads through it) and the
/// final check (which reads what the decoder left).
#[derive(Clone)]
struct Compressed(Arc<Mutex<Hashed<File>>>);

impl Read for Compressed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("compressed reader poisoned"))?
            .read(buf)
    }
}

/// The uncompressed tar stream of one layer.
pub struct LayerStream {
    compressed: Compressed,
    expected: Digest,
    blob_size: u64,
    pub compression: Compression,
}

/// What a fully read layer hashed to.
pub struct Finished {
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub compressed_size: u64,
}

/// The reader the tar reader consumes: decoded bytes, hashed for the diffID.
pub type TarInput = BufReader<DiffIdReader>;

pub struct DiffIdReader(Hashed<Box<dyn Read + Send>>);

impl Read for DiffIdReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

pub fn open(
    blob: VerifiedBlob,
    expected: &Digest,
    decoding: Decoding,
) -> Result<(LayerStream, TarInput), DiffError> {
    let compressed = Compressed(Arc::new(Mutex::new(Hashed {
        inner: blob.file,
        hasher: Digester::new(expected.algorithm()),
        count: 0,
    })));
    let input = BufReader::with_capacity(INPUT_BUFFER, compressed.clone());
    let (decoded, compression) = decompress::decoder(decoding, input).map_err(|e| {
        DiffError::Archive(format!(
            "failed to get stream processor for {expected}: {e}"
        ))
    })?;
    let tar_input = BufReader::with_capacity(
        TAR_BUFFER,
        DiffIdReader(Hashed {
            inner: decoded,
            hasher: Digester::new(Algorithm::Sha256),
            count: 0,
        }),
    );
    Ok((
        LayerStream {
            compressed,
            expected: expected.clone(),
            blob_size: blob.size,
            compression,
        },
        tar_input,
    ))
}

impl LayerStream {
    /// Reads what follows the tar (containerd does: it is part of the diffID), then the
    /// rest of the blob, and checks the blob against its digest.
    pub fn finish(self, mut rest: TarInput) -> Result<Finished, DiffError> {
        io::copy(&mut rest, &mut io::sink())
            .map_err(|e| DiffError::Archive(format!("reading the end of the layer: {e}")))?;
        let DiffIdReader(hashed) = rest.into_inner();
        let (diff_id, uncompressed_size) = (hashed.hasher.digest(), hashed.count);
        drop(hashed.inner);
        let mut c = self
            .compressed
            .0
            .lock()
            .map_err(|_| DiffError::Internal("compressed reader poisoned".into()))?;
        io::copy(&mut *c, &mut io::sink()).map_err(DiffError::io("reading layer", b""))?;
        let got = c.hasher.digest();
        if got != self.expected || c.count != self.blob_size {
            return Err(DiffError::DataLoss(format!(
                "layer {} read from the store as {} bytes with digest {got}",
                self.expected, c.count
            )));
        }
        Ok(Finished {
            diff_id,
            uncompressed_size,
            compressed_size: c.count,
        })
    }
}
