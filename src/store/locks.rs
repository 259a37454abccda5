//! Per-ref locking of ingests. A ref is held by one Write stream at a time; a second
//! stream waits briefly (a client may half-close and reopen the same ref at once) and
//! then gets `Locked`, which says how long the ref has been held. The live progress of a
//! held ingest is kept here too, so Status answers without touching the writer.
//! Write streams holding a ref are counted against `max_open_ingests`; Abort's short
//! hold is not, so garbage collection works even when writers fill every slot.
use crate::index::UnixNanos;
use crate::store::error::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Progress of an ingest as its writer last reported it.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub offset: u64,
    pub total: u64,
    pub updated_at: UnixNanos,
}

struct Held {
    since: Instant,
    progress: Arc<Mutex<Progress>>,
    writer: bool,
}

#[derive(Default)]
struct Table {
    held: HashMap<String, Held>,
    writers: usize,
}

pub struct RefLocks {
    held: Mutex<Table>,
    released: Notify,
    max_writers: usize,
}

impl Default for RefLocks {
    fn default() -> Self {
        RefLocks::new(usize::MAX)
    }
}

/// Holds a ref until dropped.
pub struct RefGuard {
    locks: Arc<RefLocks>,
    ingest_ref: String,
    progress: Arc<Mutex<Progress>>,
}

impl RefGuard {
    pub fn report(&self, p: Progress) {
        *self.progress.lock().expect("progress lock") = p;
    }
}

impl Drop for RefGuard {
    fn drop(&mut self) {
        {
            let mut t = self.locks.held.lock().expect("ref lock table");
            if let Some(h) = t.held.remove(&self.ingest_ref) {
                if h.writer {
                    t.writers -= 1;
                }
            }
        }
        self.locks.released.notify_waiters();
    }
}

impl RefLocks {
    pub fn new(max_writers: usize) -> RefLocks {
        RefLocks {
            held: Mutex::new(Table::default()),
            released: Notify::new(),
            max_writers,
        }
    }

    /// Holds `ingest_ref` for a Write stream: waits up to `wait` for another holder, and
    /// counts against `max_open_ingests` (refused at once when full: waiting would only
    /// pile up more streams).
    pub async fn acquire(
        self: &Arc<Self>,
        ingest_ref: &str,
        wait: Duration,
        initial: Progress,
    ) -> Result<RefGuard, StoreError> {
        self.acquire_as(ingest_ref, wait, initial, true).await
    }

    /// Holds `ingest_ref` briefly for Abort, outside the Write stream count.
    pub async fn acquire_uncounted(
        self: &Arc<Self>,
        ingest_ref: &str,
        wait: Duration,
        initial: Progress,
    ) -> Result<RefGuard, StoreError> {
        self.acquire_as(ingest_ref, wait, initial, false).await
    }

    async fn acquire_as(
        self: &Arc<Self>,
        ingest_ref: &str,
        wait: Duration,
        initial: Progress,
        writer: bool,
    ) -> Result<RefGuard, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let held_for = {
                let mut t = self.held.lock().expect("ref lock table");
                match t.held.get(ingest_ref) {
                    Some(h) => h.since.elapsed(),
                    None => {
                        if writer && t.writers >= self.max_writers {
                            return Err(StoreError::LimitExceeded(format!(
                                "too many open ingests: {} Write streams are open, the limit is \
                                 max_open_ingests = {} (ipcs.toml, IPCS_MAX_OPEN_INGESTS or \
                                 --max-open-ingests)",
                                t.writers, self.max_writers
                            )));
                        }
                        let progress = Arc::new(Mutex::new(initial));
                        t.held.insert(
                            ingest_ref.to_string(),
                            Held {
                                since: Instant::now(),
                                progress: progress.clone(),
                                writer,
                            },
                        );
                        if writer {
                            t.writers += 1;
                        }
                        return Ok(RefGuard {
                            locks: self.clone(),
                            ingest_ref: ingest_ref.to_string(),
                            progress,
                        });
                    }
                }
            };
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(StoreError::Locked {
                    ingest_ref: ingest_ref.to_string(),
                    held_for,
                });
            }
        }
    }

    /// Live progress of a held ref.
    pub fn progress(&self, ingest_ref: &str) -> Option<Progress> {
        let t = self.held.lock().expect("ref lock table");
        t.held
            .get(ingest_ref)
            .map(|h| *h.progress.lock().expect("progress lock"))
    }

    /// Write streams holding a ref now (what `max_open_ingests` bounds).
    pub fn writers(&self) -> usize {
        self.held.lock().expect("ref lock table").writers
    }

    #[cfg(test)]
    pub fn is_held(&self, ingest_ref: &str) -> bool {
        self.held
            .lock()
            .expect("ref lock table")
            .held
            .contains_key(ingest_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Progress {
        Progress {
            offset: 0,
            total: 0,
            updated_at: UnixNanos(0),
        }
    }

    #[tokio::test]
    async fn second_holder_gets_locked_after_waiting() {
        let locks = Arc::new(RefLocks::default());
        let _g = locks.acquire("r", Duration::ZERO, p()).await.unwrap();
        let started = Instant::now();
        let err = locks
            .acquire("r", Duration::from_millis(200), p())
            .await
            .err()
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(matches!(err, StoreError::Locked { .. }));
        assert!(err.to_string().contains("ref r locked for"));
    }

    #[tokio::test]
    async fn waiter_gets_the_ref_when_released() {
        let locks = Arc::new(RefLocks::default());
        let g = locks.acquire("r", Duration::ZERO, p()).await.unwrap();
        let l2 = locks.clone();
        let waiter =
            tokio::spawn(async move { l2.acquire("r", Duration::from_secs(5), p()).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(g);
        assert!(waiter.await.unwrap());
        assert!(!locks.is_held("r"));
    }

    #[tokio::test]
    async fn distinct_refs_do_not_contend() {
        let locks = Arc::new(RefLocks::default());
        let _a = locks.acquire("a", Duration::ZERO, p()).await.unwrap();
        let b = locks.acquire("b", Duration::ZERO, p()).await.unwrap();
        b.report(Progress {
            offset: 7,
            total: 9,
            updated_at: UnixNanos(3),
        });
        assert_eq!(locks.progress("b").unwrap().offset, 7);
    }

    #[tokio::test]
    async fn open_writers_are_bounded_but_abort_is_not() {
        let locks = Arc::new(RefLocks::new(2));
        let a = locks.acquire("a", Duration::ZERO, p()).await.unwrap();
        let _b = locks.acquire("b", Duration::ZERO, p()).await.unwrap();
        let err = locks.acquire("c", Duration::ZERO, p()).await.err().unwrap();
        assert!(matches!(err, StoreError::LimitExceeded(_)));
        assert!(err.to_string().contains("max_open_ingests = 2"), "{err}");
        // Abort of a third ref still gets through.
        drop(
            locks
                .acquire_uncounted("c", Duration::ZERO, p())
                .await
                .unwrap(),
        );
        drop(a);
        let _c = locks.acquire("c", Duration::ZERO, p()).await.unwrap();
        assert!(locks.acquire("d", Duration::ZERO, p()).await.is_err());
    }
}
