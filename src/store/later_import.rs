//! Imports after the commit. When the backend keeps blobs by reference and its DAG shape
//! is one ipcs reproduces (`crate::unixfs`), a Write computes the blob's CID while the bytes
//! stream in, and its commit records the blob with that CID and answers at once; the
//! backend's import of the stored file (Kubo hashing every byte again) runs here, after
//! the answer, one blob at a time. containerd reads the blob from its stored file
//! meanwhile, so nothing it does waits for the import; what needs the DAG in the backend
//! waits for it (`wait`), and the blob is published to peers only once it is there.
//!
//! The imports yield to the pull they came from: an import waits while Write streams are
//! open or a layer is being applied (`hold`), since the backend hashing every byte again
//! on the same cores would slow exactly what containerd waits for, but never longer than
//! `MAX_YIELD` after its commit, so a node that never goes quiet still imports.
//!
//! The pending set is in the index (`pending_imports_v1`, written with the blob's record),
//! so a restart resumes it. An import that fails is retried after a pause that grows
//! with its failures, without holding back the others; the record stays and keeps being
//! served meanwhile. A Delete of a blob still pending takes
//! the digest's turn (so it never runs beside its import) and drops it without an unpin.
use crate::backend::{BackendError, DagLayout};
use crate::digest::Digest;
use crate::store::error::{blocking, StoreError};
use crate::store::{ContentStore, Info, Inner};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// Longest wait of a reader of the DAG for its import: the queue ahead of it may hold a
/// whole image.
pub const WAIT_FOR_IMPORT: Duration = Duration::from_secs(15 * 60);

/// Longest an import waits for the node to go quiet after its blob's commit.
const MAX_YIELD: Duration = Duration::from_secs(10);

/// Longest pause between two attempts at an import that keeps failing.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

pub(crate) struct LaterImports {
    /// The shape Writes compute CIDs for; None when commits import before answering
    /// (`import_after_commit = false`): the queue then only finishes what a restart found.
    pub layout: Option<DagLayout>,
    queue: mpsc::UnboundedSender<Queued>,
    pending: Mutex<HashSet<Digest>>,
    done: Notify,
    /// Layers being applied now: imports wait while any is (see `hold`).
    holds: AtomicUsize,
}

/// A digest to import and when it must start even if the node is busy.
pub(crate) struct Queued {
    digest: Digest,
    due: Instant,
}

/// Imports wait while this lives (at most `MAX_YIELD` after their commit).
pub struct ImportHold(Arc<LaterImports>);

impl Drop for ImportHold {
    fn drop(&mut self) {
        self.0.holds.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LaterImports {
    /// The imports' state and the receiving end its worker (`start`) drains.
    pub fn new(
        layout: Option<DagLayout>,
        pending: Vec<Digest>,
    ) -> (Arc<LaterImports>, mpsc::UnboundedReceiver<Queued>) {
        let (queue, rx) = mpsc::unbounded_channel();
        // Left by the last run: nothing to yield to.
        for d in &pending {
            let _ = queue.send(Queued {
                digest: d.clone(),
                due: Instant::now(),
            });
        }
        let later = LaterImports {
            layout,
            queue,
            pending: Mutex::new(pending.into_iter().collect()),
            done: Notify::new(),
            holds: AtomicUsize::new(0),
        };
        (Arc::new(later), rx)
    }

    /// `d` was just recorded as pending: import it.
    pub fn push(&self, d: Digest) {
        self.pending.lock().unwrap().insert(d.clone());
        let _ = self.queue.send(Queued {
            digest: d,
            due: Instant::now() + MAX_YIELD,
        });
    }

    pub fn is_pending(&self, d: &Digest) -> bool {
        self.pending.lock().unwrap().contains(d)
    }

    pub fn count(&self) -> usize {
        self.pending.lock().unwrap().len()
    }

    fn forget(&self, d: &Digest) {
        self.pending.lock().unwrap().remove(d);
        self.done.notify_waiters();
    }

    /// Waits until `d` is no longer pending (imported, or deleted), at most `deadline`.
    pub async fn wait(&self, d: &Digest, deadline: Duration) -> Result<(), StoreError> {
        let until = Instant::now() + deadline;
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if !self.is_pending(d) {
                return Ok(());
            }
            let left = until.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, done).await.is_err() {
                return Err(StoreError::Ipfs {
                    context: format!("waiting for {d}'s import into ipfs"),
                    source: BackendError::Timeout {
                        addr: "ipcs import queue".into(),
                        op: "import after commit",
                        after: deadline,
                    },
                });
            }
        }
    }
}

/// Runs the imports of `inner` until the store is dropped.
///
/// A failed import is queued again after its own pause, growing with its own failures,
/// while the worker goes on with the next blob: one blob whose import keeps failing (its
/// stored file removed by hand) never holds back the others. Only failures of different
/// blobs in a row (the backend down) make the worker itself pause, so a Kubo that is away
/// is not asked once per pending blob.
pub(crate) fn start(inner: &Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    tokio::spawn(async move {
        let mut failures: HashMap<Digest, u32> = HashMap::new();
        let mut streak = FailureStreak::default();
        // The sender lives in the store: once the store is gone, recv ends the loop.
        while let Some(Queued { digest: d, due }) = rx.recv().await {
            // Yield to a pull in progress, up to the blob's due time.
            loop {
                let Some(inner) = weak.upgrade() else { return };
                if Instant::now() >= due || !inner.busy() {
                    break;
                }
                drop(inner);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let Some(inner) = weak.upgrade() else { return };
            let Some(later) = inner.later.clone() else {
                return;
            };
            match inner.import_later(&d).await {
                Ok(()) => {
                    failures.remove(&d);
                    streak.success();
                }
                Err(e) => {
                    let n = failures.entry(d.clone()).or_default();
                    *n += 1;
                    let pause = retry_pause(*n);
                    tracing::warn!(digest = %d, error = %e, retry_in = ?pause, "import after commit failed; the blob is served from its stored file meanwhile");
                    let queue = later.queue.clone();
                    let again = d.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(pause).await;
                        let _ = queue.send(Queued {
                            digest: again,
                            due: Instant::now(),
                        });
                    });
                    let backoff = streak.failure(&d);
                    drop((inner, later));
                    if let Some(backoff) = backoff {
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
        }
    });
}

/// Failures of different blobs one after another: the backend, not one blob, is failing.
#[derive(Default)]
struct FailureStreak {
    last: Option<Digest>,
    distinct: u32,
}

impl FailureStreak {
    fn success(&mut self) {
        *self = FailureStreak::default();
    }

    /// Counts a failure of `d`; the worker's own pause once two different blobs in a row
    /// have failed, growing with the streak.
    fn failure(&mut self, d: &Digest) -> Option<Duration> {
        if self.last.as_ref() != Some(d) {
            self.distinct += 1;
            self.last = Some(d.clone());
        }
        (self.distinct >= 2).then(|| retry_pause(self.distinct - 1))
    }
}

fn retry_pause(failures: u32) -> Duration {
    Duration::from_millis(500)
        .saturating_mul(1 << failures.min(8))
        .min(MAX_RETRY_PAUSE)
}

impl Inner {
    /// Whether a pull is being served now: Write streams open, or layers being applied.
    fn busy(&self) -> bool {
        self.locks.writers() > 0
            || self
                .later
                .as_ref()
                .is_some_and(|l| l.holds.load(Ordering::SeqCst) > 0)
    }

    /// Imports one pending blob's stored file, records the backend's CID and the leans
    /// the import found, and tells the hooks the blob can now be shared.
    async fn import_later(self: &Arc<Self>, d: &Digest) -> Result<(), StoreError> {
        let Some(later) = self.later.clone() else {
            return Ok(());
        };
        let Some(by_ref) = self.backend.by_reference() else {
            return Err(StoreError::FailedPrecondition(
                "blobs wait for their import by reference, but the backend keeps copies (filestore = false)".into(),
            ));
        };
        let turn = self.stored_turns.turn(d.clone()).await;
        let me = self.clone();
        let key = d.to_string();
        let rec = blocking(move || match me.index.is_import_pending(&key)? {
            true => Ok(me.index.blob(&key)?),
            false => Ok(None),
        })
        .await?;
        let Some(rec) = rec else {
            drop(turn);
            later.forget(d);
            return Ok(());
        };
        let started = Instant::now();
        let ctx = format!("checking who pins {d} ({})", rec.cid);
        let (cid, leans_on) = if let Some(name) = self.others_pin(&rec.cid, ctx).await? {
            // Importing over their pin would rename it ours, and a Delete would then
            // remove it. Their pin already holds every block of this CID.
            tracing::info!(digest = %d, cid = %rec.cid, pin = name, "already pinned by someone else; left to their pin, not imported");
            (rec.cid.clone(), Vec::new())
        } else {
            let stored = self.paths.stored_blob(d);
            self.import_stored(by_ref, d, &stored, rec.size).await?
        };
        if cid != rec.cid {
            tracing::warn!(digest = %d, computed = %rec.cid, backend = %cid, "the backend gave another CID than the one computed at commit; recording the backend's");
        }
        let me = self.clone();
        let key = d.to_string();
        let imported = blocking(move || Ok(me.index.finish_import(&key, &cid, &leans_on)?)).await?;
        drop(turn);
        later.forget(d);
        tracing::debug!(digest = %d, took = ?started.elapsed(), "imported after commit");
        if let Some(rec) = imported {
            let core = ContentStore {
                inner: self.clone(),
            };
            self.hooks.clone().imported(core, rec.into()).await;
        }
        Ok(())
    }

    /// Deletes `d` if its import is still pending: under the digest's turn, so never
    /// beside its import; no unpin, there is no pin yet. False if it was not pending.
    pub(crate) async fn delete_pending(self: &Arc<Self>, d: &Digest) -> Result<bool, StoreError> {
        let Some(later) = self.later.clone() else {
            return Ok(false);
        };
        if !later.is_pending(d) {
            return Ok(false);
        }
        let turn = self.stored_turns.turn(d.clone()).await;
        let me = self.clone();
        let key = d.clone();
        let deleted = blocking(move || {
            if !me.index.is_import_pending(&key.to_string())? {
                return Ok(false);
            }
            me.index.remove_blob(&key.to_string())?;
            me.served.forget(&key);
            me.cache
                .remove(&key)
                .map_err(StoreError::io(format!("removing cached {key}")))?;
            Ok(true)
        })
        .await?;
        drop(turn);
        if deleted {
            later.forget(d);
            self.release_stored(d).await?;
            tracing::info!(digest = %d, "deleted before its import into ipfs");
        }
        Ok(deleted)
    }
}

impl ContentStore {
    /// Makes imports after commit wait while the returned guard lives (a layer being
    /// applied reads its blob from the local file and competes with them for the CPU);
    /// None when this store imports at commit.
    pub fn hold_imports(&self) -> Option<ImportHold> {
        let later = self.inner.later.clone()?;
        later.holds.fetch_add(1, Ordering::SeqCst);
        Some(ImportHold(later))
    }

    /// Blobs committed but not yet imported into the backend.
    pub fn pending_imports(&self) -> usize {
        self.inner.later.as_ref().map_or(0, |l| l.count())
    }

    /// Whether `d`'s import into the backend is still to come.
    pub fn import_pending(&self, d: &Digest) -> bool {
        self.inner.later.as_ref().is_some_and(|l| l.is_pending(d))
    }

    /// The local record of `d` once its DAG is in the backend (at once if it is, after at
    /// most `WAIT_FOR_IMPORT` if its import is pending): for whatever reads the DAG from
    /// the backend instead of the blob from this store. None when the store lacks it.
    pub async fn imported_info(&self, d: &Digest) -> Result<Option<Info>, StoreError> {
        if let Some(l) = &self.inner.later {
            l.wait(d, WAIT_FOR_IMPORT).await?;
        }
        self.local_info(d).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_pause_longer_each_time_up_to_a_bound() {
        assert_eq!(retry_pause(1), Duration::from_secs(1));
        assert_eq!(retry_pause(2), Duration::from_secs(2));
        assert_eq!(retry_pause(20), MAX_RETRY_PAUSE);
    }

    #[test]
    fn only_failures_of_different_blobs_in_a_row_pause_the_worker() {
        let d = |c: char| -> Digest {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap()
        };
        let mut streak = FailureStreak::default();
        // One blob failing again and again: it waits for its own retry, nobody else does.
        for _ in 0..5 {
            assert_eq!(streak.failure(&d('a')), None);
        }
        assert_eq!(streak.failure(&d('b')), Some(retry_pause(1)));
        assert_eq!(streak.failure(&d('c')), Some(retry_pause(2)));
        streak.success();
        assert_eq!(streak.failure(&d('c')), None);
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_import_does_and_times_out_otherwise() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let (later, _rx) = LaterImports::new(None, vec![d.clone()]);
        let err = later.wait(&d, Duration::from_millis(50)).await.unwrap_err();
        assert!(err.to_string().contains("import"), "{err}");
        let l = later.clone();
        let waiter = tokio::spawn(async move { l.wait(&d, Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        later.forget(&format!("sha256:{}", "a".repeat(64)).parse().unwrap());
        waiter.await.unwrap().unwrap();
    }
}
