//! What an ingest computes over its bytes as they arrive: the digest containerd asked for
//! and, when the backend's DAG shape is one ipcs can reproduce, the CID the backend will
//! give the blob, so that a commit can be recorded before the backend has imported it
//! (`later_import`). Both are rebuilt from the file when an ingest resumes.
use crate::backend::DagLayout;
use crate::digest::{Algorithm, Digester};
use crate::unixfs::FileCid;
use std::io::Read;

pub(crate) struct IngestHash {
    pub digest: Digester,
    cid: Option<FileCid>,
    layout: Option<DagLayout>,
}

impl IngestHash {
    pub fn new(algorithm: Algorithm, layout: Option<DagLayout>) -> IngestHash {
        IngestHash {
            digest: Digester::new(algorithm),
            cid: layout.map(|l| FileCid::new(l.chunk_size, l.max_links)),
            layout,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
        if let Some(c) = &mut self.cid {
            c.update(data);
        }
    }

    /// Back to nothing written (an ingest truncated to offset 0).
    pub fn reset(&mut self) {
        *self = IngestHash::new(self.digest.algorithm(), self.layout);
    }

    /// The CID of everything written, if this ingest computes one; the next call gives
    /// None.
    pub fn take_cid(&mut self) -> Option<crate::cid::Cid> {
        self.cid.take().map(FileCid::finish)
    }

    /// Feeds everything `r` yields; returns the number of bytes.
    pub fn read_from(&mut self, mut r: impl Read) -> std::io::Result<u64> {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = r.read(&mut buf)?;
            if k == 0 {
                return Ok(n);
            }
            self.update(&buf[..k]);
            n += k as u64;
        }
    }
}
