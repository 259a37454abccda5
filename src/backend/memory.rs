//! An in-memory blob backend for the core's unit tests (never built into the binary).
//! A CID is `mem` + the sha256 hex of the bytes, so equal content has equal CIDs as in
//! IPFS. Tests can take the backend down, drop a DAG's bytes behind the store's back,
//! and count calls, to check what the core asks for and in which order.
use crate::backend::{BackendError, BlobBackend, BodyStream, BoxFut, ByteStream, PinEntry, Reach};
use crate::cid::Cid;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
pub struct MemoryBackend {
    dags: Mutex<HashMap<Cid, Bytes>>,
    pins: Mutex<HashMap<Cid, String>>,
    down: AtomicBool,
    pub cats: AtomicUsize,
    pub adds: AtomicUsize,
    /// Every call in order (`add`, `pin`, `unpin`, `cat`), for ordering checks.
    pub calls: Mutex<Vec<String>>,
}

pub const PIN_NAME: &str = "ipcs:0000000000000000";

impl MemoryBackend {
    pub fn cid_of(data: &[u8]) -> Cid {
        format!("mem{}", hex::encode(Sha256::digest(data)))
            .parse()
            .expect("hex is a plausible CID")
    }

    /// While down, every call fails as an unreachable node would.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn is_pinned(&self, cid: &Cid) -> bool {
        self.pins.lock().unwrap().contains_key(cid)
    }

    pub fn has_dag(&self, cid: &Cid) -> bool {
        self.dags.lock().unwrap().contains_key(cid)
    }

    /// Drops a DAG's bytes (and its pin), as a `repo gc` after an unpin would.
    pub fn lose(&self, cid: &Cid) {
        self.dags.lock().unwrap().remove(cid);
        self.pins.lock().unwrap().remove(cid);
    }

    /// Replaces the bytes behind `cid`, as a corrupt block store (or a lying peer) would.
    pub fn corrupt(&self, cid: &Cid, data: &[u8]) {
        self.dags
            .lock()
            .unwrap()
            .insert(cid.clone(), Bytes::copy_from_slice(data));
    }

    /// Removes a pin behind the store's back (a Delete killed after its unpin).
    pub fn pins_remove(&self, cid: &Cid) {
        self.pins.lock().unwrap().remove(cid);
    }

    /// Pins `cid` under another name, as another user of the same node would.
    pub fn pin_as(&self, cid: &Cid, name: &str) {
        self.pins
            .lock()
            .unwrap()
            .insert(cid.clone(), name.to_string());
    }

    /// Stores bytes without pinning them, as blocks fetched from a peer would be.
    pub fn put_unpinned(&self, data: &[u8]) -> Cid {
        let cid = Self::cid_of(data);
        self.dags
            .lock()
            .unwrap()
            .insert(cid.clone(), Bytes::copy_from_slice(data));
        cid
    }

    fn enter(&self, op: &'static str) -> Result<(), BackendError> {
        self.calls.lock().unwrap().push(op.to_string());
        if self.down.load(Ordering::SeqCst) {
            return Err(BackendError::Unreachable {
                addr: "memory".into(),
                op,
                reason: "backend is down".into(),
            });
        }
        Ok(())
    }

    fn missing(op: &'static str, cid: &Cid) -> BackendError {
        BackendError::Api {
            addr: "memory".into(),
            op,
            message: format!("{cid}: no such DAG"),
        }
    }

    fn import(&self, data: Bytes, pin: Option<&str>) -> Cid {
        self.adds.fetch_add(1, Ordering::SeqCst);
        let cid = Self::cid_of(&data);
        self.dags.lock().unwrap().insert(cid.clone(), data);
        if let Some(name) = pin {
            self.pin_as(&cid, name);
        }
        cid
    }
}

impl BlobBackend for MemoryBackend {
    fn address(&self) -> &str {
        "memory"
    }

    fn pin_name(&self) -> &str {
        PIN_NAME
    }

    fn transfer_timeout(&self, _bytes: u64) -> Duration {
        Duration::from_secs(5)
    }

    fn version(&self) -> BoxFut<'_, String> {
        Box::pin(async move {
            self.enter("version")?;
            Ok("memory".to_string())
        })
    }

    fn add_file<'a>(&'a self, path: &'a Path, size: u64) -> BoxFut<'a, Cid> {
        Box::pin(async move {
            self.enter("add")?;
            let data = std::fs::read(path).map_err(|source| BackendError::Local {
                path: path.display().to_string(),
                op: "add",
                source,
            })?;
            assert_eq!(data.len() as u64, size, "add_file size");
            Ok(self.import(Bytes::from(data), Some(PIN_NAME)))
        })
    }

    fn hash_file<'a>(&'a self, path: &'a Path, _size: u64) -> BoxFut<'a, Cid> {
        Box::pin(async move {
            self.enter("hash")?;
            let data = std::fs::read(path).map_err(|source| BackendError::Local {
                path: path.display().to_string(),
                op: "add",
                source,
            })?;
            Ok(Self::cid_of(&data))
        })
    }

    fn add_stream(&self, body: BodyStream) -> BoxFut<'static, Cid> {
        // The fake imports nothing while the body streams: the core falls back to
        // `add_file` at commit, the path a failed following import takes with Kubo.
        drop(body);
        Box::pin(async move {
            Err(BackendError::Api {
                addr: "memory".into(),
                op: "add",
                message: "streamed imports are not modelled".into(),
            })
        })
    }

    fn add_record(&self, data: Vec<u8>) -> BoxFut<'_, Cid> {
        Box::pin(async move {
            self.enter("add")?;
            Ok(self.import(Bytes::from(data), Some("")))
        })
    }

    fn cat<'a>(
        &'a self,
        cid: &'a Cid,
        offset: u64,
        length: u64,
        _reach: Reach,
    ) -> BoxFut<'a, ByteStream> {
        Box::pin(async move {
            self.enter("cat")?;
            self.cats.fetch_add(1, Ordering::SeqCst);
            let data = self
                .dags
                .lock()
                .unwrap()
                .get(cid)
                .cloned()
                .ok_or_else(|| Self::missing("cat", cid))?;
            let start = (offset as usize).min(data.len());
            let end = start.saturating_add(length as usize).min(data.len());
            let chunks: Vec<Result<Bytes, BackendError>> = data
                .slice(start..end)
                .chunks(4096)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Ok(futures::stream::iter(chunks).boxed())
        })
    }

    fn pin<'a>(&'a self, cid: &'a Cid, _size: u64, _reach: Reach) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.enter("pin")?;
            if !self.has_dag(cid) {
                return Err(Self::missing("pin add", cid));
            }
            self.pin_as(cid, PIN_NAME);
            Ok(())
        })
    }

    fn unpin<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.enter("unpin")?;
            self.pins.lock().unwrap().remove(cid);
            Ok(())
        })
    }

    fn pinned_as<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, Option<String>> {
        Box::pin(async move {
            self.enter("pinned_as")?;
            Ok(self.pins.lock().unwrap().get(cid).cloned())
        })
    }

    fn stat<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, u64> {
        Box::pin(async move {
            self.enter("stat")?;
            let dags = self.dags.lock().unwrap();
            let d = dags
                .get(cid)
                .ok_or_else(|| Self::missing("files stat", cid))?;
            Ok(d.len() as u64)
        })
    }

    fn fetch<'a>(&'a self, cid: &'a Cid, _size: u64) -> BoxFut<'a, u64> {
        Box::pin(async move {
            self.enter("fetch")?;
            match self.has_dag(cid) {
                true => Ok(1),
                false => Err(Self::missing("refs", cid)),
            }
        })
    }

    fn pins(&self) -> BoxFut<'_, Vec<PinEntry>> {
        Box::pin(async move {
            self.enter("pins")?;
            Ok(self
                .pins
                .lock()
                .unwrap()
                .iter()
                .map(|(cid, name)| PinEntry {
                    cid: cid.clone(),
                    name: name.clone(),
                })
                .collect())
        })
    }

    fn disk_usage(&self) -> BoxFut<'_, u64> {
        Box::pin(async move {
            self.enter("disk_usage")?;
            Ok(self
                .dags
                .lock()
                .unwrap()
                .values()
                .map(|b| b.len() as u64)
                .sum())
        })
    }

    fn by_reference(&self) -> Option<&dyn crate::backend::ByReference> {
        None
    }
}
