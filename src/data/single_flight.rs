//! One piece of work per key at a time. Callers of the same key queue for one turn; a
//! caller learns whether someone held the turn before it (`waited`), so it can reuse that
//! work or decide not to repeat a failure. A key's slot lives while anybody holds or
//! waits for it: a newcomer after a failure joins the queue behind the waiter instead of
//! starting a second, concurrent run (the race that let two fetches share one temp file).
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

pub struct SingleFlight<K> {
    slots: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for SingleFlight<K> {
    fn default() -> Self {
        SingleFlight {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

/// The turn of one key, held until dropped.
pub struct Turn<'a, K: Hash + Eq + Clone> {
    flight: &'a SingleFlight<K>,
    key: K,
    slot: Arc<tokio::sync::Mutex<()>>,
    held: Option<OwnedMutexGuard<()>>,
    /// Whether another caller held this key's turn before this one got it.
    pub waited: bool,
}

impl<K: Hash + Eq + Clone> SingleFlight<K> {
    pub async fn turn(&self, key: K) -> Turn<'_, K> {
        let slot = self
            .slots
            .lock()
            .expect("single-flight slots")
            .entry(key.clone())
            .or_default()
            .clone();
        let (held, waited) = match slot.clone().try_lock_owned() {
            Ok(g) => (g, false),
            Err(_) => (slot.clone().lock_owned().await, true),
        };
        Turn {
            flight: self,
            key,
            slot,
            held: Some(held),
            waited,
        }
    }

    /// Keys with a holder or waiter.
    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.slots.lock().expect("single-flight slots").len()
    }
}

impl<K: Hash + Eq + Clone> Drop for Turn<'_, K> {
    fn drop(&mut self) {
        self.held = None;
        let mut slots = self.flight.slots.lock().expect("single-flight slots");
        // Clones are only taken under this lock, so the count is exact: the map's and ours.
        if Arc::strong_count(&self.slot) <= 2 {
            slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A fails while B waits; B takes the turn; C arrives meanwhile. B and C must never
    /// run at once (before the fix, A's exit forgot the key and C started a second run).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_and_a_newcomer_never_run_together() {
        let flight = Arc::new(SingleFlight::<u32>::default());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let a = flight.turn(1).await;
        assert!(!a.waited);
        let run = |f: Arc<SingleFlight<u32>>, r: Arc<AtomicUsize>, m: Arc<AtomicUsize>| async move {
            let t = f.turn(1).await;
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            t.waited
        };
        let b = tokio::spawn(run(flight.clone(), running.clone(), most.clone()));
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(a);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let c = tokio::spawn(run(flight.clone(), running.clone(), most.clone()));
        assert!(b.await.unwrap(), "B waited for A");
        assert!(c.await.unwrap(), "C waited for B");
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "two runs of one key at once"
        );
        assert_eq!(flight.live(), 0, "the map holds only live keys");
    }
}
