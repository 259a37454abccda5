//! The layer source: the verified blob file from ipcs's own store (no RPC per read),
//! hashed again while it is read (its digest is checked at the end), decoded, and hashed
//! once more to give the diffID: the sha256 of the uncompressed stream, computed while
//! streaming, over every byte including what follows the end of the tar (containerd
//! reads that too).
//!
//! Reading, both hashes and decoding run on a thread of their own that hands the decoded
//! bytes over in chunks (at most `CHUNKS_IN_FLIGHT` × `CHUNK` bytes in flight), so that
//! decoding overlaps with the file system work of the applier.
use super::decompress::{self, Compression};
use super::error::DiffError;
use super::media::Decoding;
use crate::digest::{Algorithm, Digest, Digester};
use crate::store::VerifiedBlob;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Bytes read from the blob file at a time.
const INPUT_BUFFER: usize = 1 << 18;
/// Decoded bytes per chunk handed to the applier.
const CHUNK: usize = 1 << 18;
const CHUNKS_IN_FLIGHT: usize = 8;

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

/// What a fully read layer hashed to.
pub struct Finished {
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub compressed_size: u64,
}

/// The decoding side of one layer, running on its own thread.
pub struct LayerStream {
    producer: JoinHandle<Result<Finished, DiffError>>,
    pub compression: Compression,
}

/// The decoded tar stream as the applier reads it.
pub type TarInput = BufReader<ChunkReader>;

/// Reads the chunks the decoding thread sends.
pub struct ChunkReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    /// Emptied chunks go back for reuse.
    recycle: mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let old = std::mem::replace(&mut self.current, chunk);
                    let _ = self.recycle.send(old);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The producer finished: everything was sent.
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Starts decoding `blob` (expected to hash to `expected`) on a new thread.
pub fn open(
    blob: VerifiedBlob,
    expected: &Digest,
    decoding: Decoding,
) -> Result<(LayerStream, TarInput), DiffError> {
    let compressed = Hashed {
        inner: blob.file,
        hasher: Digester::new(expected.algorithm()),
        count: 0,
    };
    let expected = expected.clone();
    let blob_size = blob.size;
    let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
    let (kind_tx, kind_rx) = mpsc::sync_channel::<Result<Compression, DiffError>>(1);
    let producer = std::thread::Builder::new()
        .name("ipcs-decode".into())
        .spawn(move || {
            produce(
                compressed, expected, blob_size, decoding, tx, recycle_rx, kind_tx,
            )
        })
        .map_err(|e| DiffError::Internal(format!("starting the decoder thread: {e}")))?;
    let compression = match kind_rx.recv() {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(match producer.join() {
                Ok(Err(e)) => e,
                _ => DiffError::Internal("decoder thread ended early".into()),
            })
        }
    };
    let reader = ChunkReader {
        rx,
        recycle: recycle_tx,
        current: Vec::new(),
        pos: 0,
        done: false,
    };
    Ok((
        LayerStream {
            producer,
            compression,
        },
        BufReader::with_capacity(CHUNK, reader),
    ))
}

/// The decoding thread: decode and hash, send chunks, then check the blob's digest.
fn produce(
    compressed: Hashed<File>,
    expected: Digest,
    blob_size: u64,
    decoding: Decoding,
    tx: mpsc::SyncSender<io::Result<Vec<u8>>>,
    recycle: mpsc::Receiver<Vec<u8>>,
    kind: mpsc::SyncSender<Result<Compression, DiffError>>,
) -> Result<Finished, DiffError> {
    // The compressed side must be readable again after decoding (for what the decoder
    // left), so the decoder reads through a shared handle.
    let shared = std::sync::Arc::new(std::sync::Mutex::new(compressed));
    let input = BufReader::with_capacity(INPUT_BUFFER, SharedReader(shared.clone()));
    let (decoded, compression) = match decompress::decoder(decoding, input) {
        Ok(d) => d,
        Err(e) => {
            let err = DiffError::Archive(format!(
                "failed to get stream processor for {expected}: {e}"
            ));
            let _ = kind.send(Err(DiffError::Archive(err.to_string())));
            return Err(err);
        }
    };
    let _ = kind.send(Ok(compression));
    let mut decoded = Hashed {
        inner: decoded,
        hasher: Digester::new(Algorithm::Sha256),
        count: 0,
    };
    loop {
        let mut chunk = recycle.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        let mut failed = None;
        while filled < CHUNK {
            match decoded.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        chunk.truncate(filled);
        if filled > 0 && tx.send(Ok(chunk)).is_err() {
            // The applier stopped (an error or cancellation): nothing more to do.
            return Err(DiffError::Cancelled);
        }
        if let Some(e) = failed {
            let msg = e.to_string();
            let _ = tx.send(Err(e));
            return Err(DiffError::Archive(format!("reading layer: {msg}")));
        }
        if filled < CHUNK {
            break;
        }
    }
    let (diff_id, uncompressed_size) = (decoded.hasher.digest(), decoded.count);
    drop(decoded);
    let mut c = shared
        .lock()
        .map_err(|_| DiffError::Internal("compressed reader poisoned".into()))?;
    io::copy(&mut *c, &mut io::sink()).map_err(DiffError::io("reading layer", b""))?;
    let got = c.hasher.digest();
    if got != expected || c.count != blob_size {
        let err = DiffError::DataLoss(format!(
            "layer {expected} read from the store as {} bytes with digest {got}",
            c.count
        ));
        let _ = tx.send(Err(io::Error::other(err.to_string())));
        return Err(err);
    }
    Ok(Finished {
        diff_id,
        uncompressed_size,
        compressed_size: c.count,
    })
}

struct SharedReader(std::sync::Arc<std::sync::Mutex<Hashed<File>>>);

impl Read for SharedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("compressed reader poisoned"))?
            .read(buf)
    }
}

impl LayerStream {
    /// Reads what follows the tar (containerd does: it is part of the diffID), then
    /// collects the decoding thread's verdict: the diffID, or why the layer is bad.
    pub fn finish(self, mut rest: TarInput) -> Result<Finished, DiffError> {
        let drained = io::copy(&mut rest, &mut io::sink());
        drop(rest);
        let verdict = self
            .producer
            .join()
            .map_err(|_| DiffError::Internal("decoder thread panicked".into()))?;
        let finished = verdict?;
        drained.map_err(|e| DiffError::Archive(format!("reading the end of the layer: {e}")))?;
        Ok(finished)
    }
}
