//! The concurrent operations of the chaos run and what the client knows of their outcome.
//! An operation cut short by a SIGKILL of ipcs leaves an *uncertain* fact (a commit or
//! delete that may or may not have happened, an ingest of unknown length) which the round's
//! verification resolves against the restarted server; an error while ipcs was up is a
//! failure.
use crate::data;
use ipcs::server::proto::content_client::ContentClient;
use ipcs::server::proto::{
    AbortRequest, DeleteContentRequest, ReadContentRequest, StatusRequest, WriteAction,
    WriteContentRequest, WriteContentResponse,
};
use rand::{Rng, SeedableRng};
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status};

const MSG: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct Blob {
    pub seed: u64,
    pub size: u64,
    pub digest: String,
}

#[derive(Debug, Clone)]
pub struct Partial {
    pub r: String,
    pub blob: Blob,
    /// Bytes sent so far (acknowledged or in flight): ipcs may hold at most this many.
    pub sent: u64,
    /// ipcs acknowledged the stream, so its ingest record exists unless aborted.
    pub certain: bool,
}

#[derive(Default)]
pub struct Pools {
    pub committed: Vec<Blob>,
    pub partials: Vec<Partial>,
    pub maybe_committed: Vec<Partial>,
    pub maybe_deleted: Vec<Blob>,
    pub maybe_aborted: Vec<Partial>,
    pub deleted: Vec<String>,
    /// Digests committed since the last verification (all of them are read back).
    pub fresh: Vec<String>,
}

#[derive(Default)]
pub struct Counters {
    pub tried: AtomicU64,
    pub committed: AtomicU64,
    pub deleted: AtomicU64,
    pub aborted: AtomicU64,
    pub abandoned: AtomicU64,
    pub resumed: AtomicU64,
    pub reads: AtomicU64,
    pub interrupted: AtomicU64,
}

/// What workers share with the driver.
pub struct Shared {
    pub socket: PathBuf,
    pub pools: Mutex<Pools>,
    pub counts: Counters,
    pub errors: Mutex<Vec<String>>,
    /// Bumped by the driver just before each SIGKILL: an operation that started in an
    /// earlier epoch and failed was cut by the kill.
    pub epoch: AtomicU64,
    pub down: AtomicBool,
    /// Incremented when a restarted ipcs listens.
    pub up: watch::Sender<u64>,
    pub stop: AtomicBool,
    pub next_seed: AtomicU64,
    pub run_id: u64,
}

impl Shared {
    pub fn fail(&self, msg: String) {
        eprintln!("chaos: FAILURE: {msg}");
        self.errors.lock().unwrap().push(msg);
    }

    /// Records a blob ipcs confirmed (or was found to have) committed.
    pub fn committed(&self, b: Blob) {
        self.counts.committed.fetch_add(1, Ordering::Relaxed);
        let mut pools = self.pools();
        pools.fresh.push(b.digest.clone());
        pools.committed.push(b);
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, Pools> {
        self.pools.lock().unwrap()
    }
}

pub async fn connect(socket: &std::path::Path) -> Option<ContentClient<Channel>> {
    let ch = ipcs::server::client::connect(socket).await.ok()?;
    Some(
        ContentClient::new(ch)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20),
    )
}

fn random_size(rng: &mut impl Rng) -> u64 {
    let p: f64 = rng.random();
    if p < 0.55 {
        rng.random_range(1..256 << 10)
    } else if p < 0.9 {
        rng.random_range(256 << 10..2 << 20)
    } else {
        rng.random_range(2 << 20..8 << 20)
    }
}

/// One Write stream, message by message, as containerd's proxy writer drives it.
struct Session {
    tx: mpsc::Sender<WriteContentRequest>,
    rx: tonic::Streaming<WriteContentResponse>,
}

impl Session {
    async fn open(
        c: &mut ContentClient<Channel>,
        r: &str,
        total: u64,
    ) -> Result<(Session, WriteContentResponse), Status> {
        let (tx, rx) = mpsc::channel(2);
        let first = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: r.into(),
            total: total as i64,
            ..Default::default()
        };
        tx.send(first)
            .await
            .map_err(|_| Status::unknown("closed"))?;
        let mut rx = c.write(ReceiverStream::new(rx)).await?.into_inner();
        let resp = rx
            .message()
            .await?
            .ok_or_else(|| Status::unknown("stream ended"))?;
        Ok((Session { tx, rx }, resp))
    }

    async fn send(&mut self, req: WriteContentRequest) -> Result<WriteContentResponse, Status> {
        self.tx
            .send(req)
            .await
            .map_err(|_| Status::unknown("server closed the stream"))?;
        self.rx
            .message()
            .await?
            .ok_or_else(|| Status::unknown("stream ended"))
    }
}

pub struct Worker {
    pub shared: Arc<Shared>,
    client: Option<ContentClient<Channel>>,
    rng: rand::rngs::StdRng,
    epoch0: u64,
}

/// An operation's failure: the kill cut it, or a real error (already recorded).
enum Cut {
    Killed,
    Failed,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, seed: u64) -> Worker {
        Worker {
            shared,
            client: None,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            epoch0: 0,
        }
    }

    /// Waits for a listening ipcs (after a kill, for the restart) and connects to it.
    pub async fn ready(&mut self) -> bool {
        let mut up = self.shared.up.subscribe();
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return false;
            }
            if !self.shared.down.load(Ordering::SeqCst) {
                if self.client.is_none() {
                    self.client = connect(&self.shared.socket).await;
                }
                if self.client.is_some() {
                    return true;
                }
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), up.changed()).await;
        }
    }

    /// Connects now, whatever the stop flag says (the verification's own worker).
    pub async fn connect_now(&mut self) -> bool {
        self.client = connect(&self.shared.socket).await;
        self.client.is_some()
    }

    /// The connected client; without one the operation cannot even start, which the
    /// caller must not mistake for a kill.
    fn client_for(&mut self, p: &Partial) -> Option<ContentClient<Channel>> {
        if self.client.is_none() {
            self.shared
                .fail(format!("{}: no connection to ipcs for this operation", p.r));
        }
        // Clones share the connection: one channel per worker.
        self.client.clone()
    }

    fn classify(&mut self, what: &str, s: &Status) -> Cut {
        if self.shared.epoch.load(Ordering::SeqCst) != self.epoch0
            || self.shared.down.load(Ordering::SeqCst)
        {
            self.client = None;
            self.shared
                .counts
                .interrupted
                .fetch_add(1, Ordering::Relaxed);
            Cut::Killed
        } else {
            self.shared
                .fail(format!("{what}: {:?} {}", s.code(), s.message()));
            Cut::Failed
        }
    }

    pub async fn run(mut self) {
        while self.ready().await {
            self.epoch0 = self.shared.epoch.load(Ordering::SeqCst);
            self.shared.counts.tried.fetch_add(1, Ordering::SeqCst);
            let p: f64 = self.rng.random();
            let (have_partial, have_blobs) = {
                let pools = self.shared.pools();
                (!pools.partials.is_empty(), pools.committed.len() > 4)
            };
            if p < 0.07 && have_partial {
                self.resume().await;
            } else if p < 0.12 && have_partial {
                self.abort().await;
            } else if p < 0.25 && have_blobs {
                self.delete().await;
            } else if p < 0.38 && have_blobs {
                self.read().await;
            } else {
                let abandon = self.rng.random_bool(0.12);
                self.ingest(abandon).await;
            }
        }
    }

    fn take_blob(&mut self) -> Option<Blob> {
        let mut pools = self.shared.pools();
        if pools.committed.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..pools.committed.len());
        Some(pools.committed.swap_remove(i))
    }

    fn take_partial(&mut self) -> Option<Partial> {
        let mut pools = self.shared.pools();
        if pools.partials.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..pools.partials.len());
        Some(pools.partials.swap_remove(i))
    }

    fn committed(&self, b: Blob) {
        self.shared.committed(b);
    }

    async fn ingest(&mut self, abandon: bool) {
        let seed = self.shared.next_seed.fetch_add(1, Ordering::SeqCst);
        let size = random_size(&mut self.rng);
        let blob = Blob {
            seed,
            size,
            digest: data::digest(seed, size),
        };
        let r = format!("chaos-{}-{seed}", self.shared.run_id);
        let stop_at = if abandon {
            self.rng.random_range(0..=size)
        } else {
            u64::MAX
        };
        let p = Partial {
            r,
            blob,
            sent: 0,
            certain: false,
        };
        self.write_from(p, 0, stop_at).await;
    }

    /// Streams `p.blob` from `offset` (the ingest's current length) and commits it, or stops
    /// after `stop_at` bytes and leaves the ingest for a later resume or abort.
    async fn write_from(&mut self, mut p: Partial, offset: u64, stop_at: u64) {
        let Some(mut c) = self.client_for(&p) else {
            return;
        };
        let (mut s, resp) = match Session::open(&mut c, &p.r, p.blob.size).await {
            Ok(x) => x,
            Err(e) => {
                if let Cut::Killed = self.classify("opening write", &e) {
                    self.shared.pools().partials.push(p);
                }
                return;
            }
        };
        p.certain = true;
        if resp.offset as u64 != offset {
            self.shared.fail(format!(
                "{}: write stream reports offset {} where Status said {offset}",
                p.r, resp.offset
            ));
            return;
        }
        let mut off = offset;
        while off < p.blob.size {
            if off >= stop_at {
                self.shared.counts.abandoned.fetch_add(1, Ordering::Relaxed);
                self.shared.pools().partials.push(p);
                return;
            }
            let end = (off + MSG).min(p.blob.size);
            p.sent = p.sent.max(end);
            let req = WriteContentRequest {
                action: WriteAction::Write as i32,
                offset: off as i64,
                data: data::range(p.blob.seed, off, end),
                ..Default::default()
            };
            match s.send(req).await {
                Ok(r) if r.offset as u64 == end => off = end,
                Ok(r) => {
                    self.shared
                        .fail(format!("{}: wrote to {end}, ipcs says {}", p.r, r.offset));
                    return;
                }
                Err(e) => {
                    if let Cut::Killed = self.classify("writing", &e) {
                        self.shared.pools().partials.push(p);
                    }
                    return;
                }
            }
        }
        let req = WriteContentRequest {
            action: WriteAction::Commit as i32,
            offset: off as i64,
            total: p.blob.size as i64,
            expected: p.blob.digest.clone(),
            ..Default::default()
        };
        match s.send(req).await {
            Ok(_) => self.committed(p.blob),
            Err(e) => {
                if let Cut::Killed = self.classify("committing", &e) {
                    self.shared.pools().maybe_committed.push(p);
                }
            }
        }
    }

    /// Continues an ingest at the offset ipcs reports for it, which must not exceed what
    /// was sent; the commit's digest check proves the kept prefix is the bytes sent.
    async fn resume(&mut self) {
        let Some(p) = self.take_partial() else { return };
        self.resume_partial(p).await;
    }

    pub async fn resume_partial(&mut self, p: Partial) {
        let Some(mut c) = self.client_for(&p) else {
            return;
        };
        let st = c.status(StatusRequest { r#ref: p.r.clone() }).await;
        match st {
            Ok(st) => {
                let st = st.into_inner().status.unwrap_or_default();
                let offset = st.offset as u64;
                if offset > p.sent {
                    self.shared.fail(format!(
                        "{}: Status offset {offset} beyond the {} bytes sent",
                        p.r, p.sent
                    ));
                    return;
                }
                self.shared.counts.resumed.fetch_add(1, Ordering::Relaxed);
                self.write_from(p, offset, u64::MAX).await;
            }
            Err(e) if e.code() == Code::NotFound && !p.certain => {}
            Err(e) if e.code() == Code::NotFound => {
                self.shared
                    .fail(format!("{}: acknowledged ingest vanished", p.r));
            }
            Err(e) => {
                if let Cut::Killed = self.classify("status", &e) {
                    self.shared.pools().partials.push(p);
                }
            }
        }
    }

    async fn abort(&mut self) {
        let Some(p) = self.take_partial() else { return };
        self.abort_partial(p).await;
    }

    pub async fn abort_partial(&mut self, p: Partial) {
        let Some(mut c) = self.client_for(&p) else {
            return;
        };
        match c.abort(AbortRequest { r#ref: p.r.clone() }).await {
            Ok(_) => {
                self.shared.counts.aborted.fetch_add(1, Ordering::Relaxed);
                match c.status(StatusRequest { r#ref: p.r.clone() }).await {
                    Err(e) if e.code() == Code::NotFound => {}
                    Ok(_) => self.shared.fail(format!("{}: Status after Abort", p.r)),
                    Err(e) => {
                        let _ = self.classify("status after abort", &e);
                    }
                }
            }
            Err(e) if e.code() == Code::NotFound && !p.certain => {}
            Err(e) => {
                if let Cut::Killed = self.classify("abort", &e) {
                    self.shared.pools().maybe_aborted.push(p);
                }
            }
        }
    }

    async fn delete(&mut self) {
        let Some(b) = self.take_blob() else { return };
        let Some(c) = self.client.as_mut() else {
            self.shared.pools().committed.push(b);
            return;
        };
        match c
            .delete(DeleteContentRequest {
                digest: b.digest.clone(),
            })
            .await
        {
            Ok(_) => {
                self.shared.counts.deleted.fetch_add(1, Ordering::Relaxed);
                self.shared.pools().deleted.push(b.digest);
            }
            Err(e) => match self.classify("delete", &e) {
                Cut::Killed => self.shared.pools().maybe_deleted.push(b),
                Cut::Failed => self.shared.pools().committed.push(b),
            },
        }
    }

    async fn read(&mut self) {
        let Some(b) = self.take_blob() else { return };
        let Some(c) = self.client.as_mut() else {
            self.shared.pools().committed.push(b);
            return;
        };
        match read_digest(c, &b.digest).await {
            Ok(got) if got == b.digest => {
                self.shared.counts.reads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(got) => self.shared.fail(format!(
                "{}: Read returned bytes hashing to {got}",
                b.digest
            )),
            Err(e) => {
                let _ = self.classify("read", &e);
            }
        }
        self.shared.pools().committed.push(b);
    }
}

/// Reads a whole blob through the Read RPC, hashing it as it streams.
pub async fn read_digest(c: &mut ContentClient<Channel>, d: &str) -> Result<String, Status> {
    let mut s = c
        .read(ReadContentRequest {
            digest: d.into(),
            offset: 0,
            size: 0,
        })
        .await?
        .into_inner();
    let mut h = Sha256::new();
    while let Some(m) = s.message().await? {
        h.update(&m.data);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}
