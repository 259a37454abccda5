//! An `ipfs add` that follows an ingest file while the Write stream is still appending to
//! it. Kubo chunks, hashes and stores the bytes as they arrive, so a commit only waits for
//! the tail of the import instead of a second full pass over the blob. The bytes are read
//! back from the file (the page cache, in practice), never queued in memory, so a slow Kubo
//! never slows the writer and memory stays at one chunk per ingest.
//!
//! The add pins the blob under the store's name itself (`add --pin=true --pin-name=…`).
//! Kubo pins only once the body has ended, and the body ends only at a commit whose size
//! and digest checks passed: a rewind, an abandoned stream or a failed check fails or
//! keeps open the body, so nothing partial is ever pinned. While the body is open the add
//! holds Kubo's pin lock, so an `ipfs repo gc` waits for open Write streams to commit or
//! end (and cannot collect the blocks of an import under way).
use crate::backend::{BackendError as KuboError, BlobBackend};
use crate::cid::Cid;
use bytes::Bytes;
use futures::StreamExt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bytes read from the file per body chunk.
const CHUNK: u64 = 1 << 20;

/// How far the writer has got, as seen by the follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// This many bytes are in the file; more may follow.
    Open(u64),
    /// The blob is complete at this size: send the rest and end the body.
    Final(u64),
    /// The ingest was truncated or abandoned: fail the body so Kubo pins nothing.
    Abort,
}

pub(crate) struct FollowingAdd {
    feed: watch::Sender<Feed>,
    task: JoinHandle<Result<Cid, KuboError>>,
    addr: String,
}

impl FollowingAdd {
    /// Starts importing `path`, of which `written` bytes exist so far.
    pub(crate) fn start(backend: &dyn BlobBackend, path: PathBuf, written: u64) -> FollowingAdd {
        let (feed, rx) = watch::channel(Feed::Open(written));
        let tail = Tail {
            path,
            file: None,
            pos: 0,
            feed: rx,
        };
        let body = futures::stream::unfold(Some(tail), |state| async move {
            let mut tail = state?;
            match tail.next_chunk().await {
                Some(Ok(bytes)) => Some((Ok(bytes), Some(tail))),
                Some(Err(e)) => Some((Err(e), None)),
                None => None,
            }
        });
        let task = tokio::spawn(backend.add_stream(body.boxed()));
        FollowingAdd {
            feed,
            task,
            addr: backend.address().to_string(),
        }
    }

    /// Tells the follower the file now holds `written` bytes.
    pub(crate) fn advance(&self, written: u64) {
        self.feed.send_replace(Feed::Open(written));
    }

    /// Ends the body at `size` bytes and waits at most `deadline` for Kubo's CID.
    pub(crate) async fn finish(mut self, size: u64, deadline: Duration) -> Result<Cid, KuboError> {
        self.feed.send_replace(Feed::Final(size));
        match tokio::time::timeout(deadline, &mut self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(KuboError::Api {
                addr: self.addr.clone(),
                op: "add",
                message: format!("import task ended: {join}"),
            }),
            Err(_) => Err(KuboError::Timeout {
                addr: self.addr.clone(),
                op: "add",
                after: deadline,
            }),
        }
    }
}

impl Drop for FollowingAdd {
    fn drop(&mut self) {
        self.feed.send_replace(Feed::Abort);
        self.task.abort();
    }
}

struct Tail {
    path: PathBuf,
    file: Option<Arc<File>>,
    pos: u64,
    feed: watch::Receiver<Feed>,
}

fn abandoned(why: &str) -> std::io::Error {
    std::io::Error::other(format!("ingest {why} before its import finished"))
}

impl Tail {
    /// The next piece of the body, waiting for the writer when caught up with it.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            let feed = *self.feed.borrow_and_update();
            let (limit, last) = match feed {
                Feed::Open(n) => (n, false),
                Feed::Final(n) => (n, true),
                Feed::Abort => return Some(Err(abandoned("was truncated or abandoned"))),
            };
            if self.pos < limit {
                return Some(self.read(limit.min(self.pos + CHUNK) - self.pos).await);
            }
            if last {
                return (self.pos != limit).then(|| Err(abandoned("shrank")));
            }
            if self.feed.changed().await.is_err() {
                return Some(Err(abandoned("was dropped")));
            }
        }
    }

    async fn read(&mut self, len: u64) -> Result<Bytes, std::io::Error> {
        let file = self.file.clone();
        let path = self.path.clone();
        let pos = self.pos;
        let (file, buf) = tokio::task::spawn_blocking(move || {
            let file = match file {
                Some(f) => f,
                None => Arc::new(File::open(&path)?),
            };
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, pos)?;
            Ok::<_, std::io::Error>((file, buf))
        })
        .await
        .map_err(std::io::Error::other)??;
        self.file = Some(file);
        self.pos += len;
        Ok(Bytes::from(buf))
    }
}
