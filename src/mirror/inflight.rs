//! Blobs on their way into this node's mirror (docs/inflight.md). One entry per digest: a
//! file filled front to back by one task from a ranked list of sources (the leader's
//! mirror, then the next, ..., the registry where this node is next), resuming with a
//! `Range` request at the first missing byte whenever a source fails, stalls, or falls
//! behind its deadline. Every reader, containerd through this mirror and peers asking
//! it, follows the same file, so a blob crosses the registry link once however many
//! want it. The bytes are hashed as they arrive; the last byte is released only once
//! the whole blob matched its digest, so no reader ever completes a wrong blob.
use crate::digest::{Digest, Digester};
use crate::metrics::Metrics;
use crate::mirror::auth;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Marks a request from another node's mirror: it is answered from the store, this
/// node's in-flight entry or the registry, never passed on to a third node.
pub const PEER_HEADER: &str = "x-ipcs-peer";
const CHUNK: u64 = 1 << 20;
/// Attempts at the registry in a row that bring no new byte before the entry fails.
const REGISTRY_TRIES: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Another node's mirror (`http://host:port`).
    Peer(String),
    /// The registry named by containerd's `ns`, from this node.
    Registry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Running,
    Verified,
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct State {
    pub size: Option<u64>,
    pub written: u64,
    pub end: End,
}

pub struct Tuning {
    pub stall: Duration,
    pub min_rate: u64,
    pub keep: Duration,
}

pub struct Entry {
    pub digest: Digest,
    /// `host/name` of the request that started it (the share policy's subject).
    pub repository: String,
    file: Arc<std::fs::File>,
    state: watch::Sender<State>,
}

pub struct Inflight {
    dir: PathBuf,
    http: reqwest::Client,
    secret: Vec<u8>,
    plain_http: Vec<String>,
    pub tuning: Tuning,
    metrics: Metrics,
    entries: tokio::sync::Mutex<HashMap<Digest, Arc<Entry>>>,
    serial: AtomicU64,
}

impl Inflight {
    /// Entries live as files in `dir`, emptied here: an entry never outlives its process.
    pub fn new(
        dir: PathBuf,
        secret: &auth::Secret,
        plain_http: Vec<String>,
        tuning: Tuning,
        metrics: Metrics,
    ) -> std::io::Result<Inflight> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Inflight {
            dir,
            http,
            secret: secret.value().to_vec(),
            plain_http,
            tuning,
            metrics,
            entries: Default::default(),
            serial: AtomicU64::new(0),
        })
    }

    /// The entry for `digest`, started with `sources` if there is none. A request that
    /// finds one joins it whatever its own ranking would have been.
    pub async fn get_or_start(
        self: &Arc<Self>,
        digest: &Digest,
        ns: &str,
        name: &str,
        sources: Vec<Source>,
    ) -> std::io::Result<Arc<Entry>> {
        let mut map = self.entries.lock().await;
        if let Some(e) = map.get(digest) {
            return Ok(e.clone());
        }
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{}-{n}", digest.hex()));
        let p = path.clone();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(p)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (state, _) = watch::channel(State {
            size: None,
            written: 0,
            end: End::Running,
        });
        let entry = Arc::new(Entry {
            digest: digest.clone(),
            repository: format!("{ns}/{name}"),
            file: Arc::new(file),
            state,
        });
        map.insert(digest.clone(), entry.clone());
        drop(map);
        tracing::info!(%digest, sources = ?sources, "in-flight: started");
        let me = self.clone();
        let e = entry.clone();
        let (ns, name) = (ns.to_string(), name.to_string());
        tokio::spawn(async move { me.fill(e, path, ns, name, sources).await });
        Ok(entry)
    }

    async fn fill(
        self: Arc<Self>,
        e: Arc<Entry>,
        path: PathBuf,
        ns: String,
        name: String,
        sources: Vec<Source>,
    ) {
        let started = Instant::now();
        let outcome = self.fill_from(&e, &ns, &name, &sources).await;
        let forget = |map: &mut HashMap<Digest, Arc<Entry>>| {
            if map.get(&e.digest).is_some_and(|cur| Arc::ptr_eq(cur, &e)) {
                map.remove(&e.digest);
            }
        };
        match outcome {
            Ok(()) => {
                let size = e.state.borrow().size.unwrap_or(0);
                tracing::info!(digest = %e.digest, size, secs = started.elapsed().as_secs_f64(), "in-flight: complete and verified");
                e.state.send_modify(|s| s.end = End::Verified);
                tokio::time::sleep(self.tuning.keep).await;
                forget(&mut *self.entries.lock().await);
            }
            Err(why) => {
                // Forgotten before anyone hears of the failure: a retry starts afresh.
                forget(&mut *self.entries.lock().await);
                tracing::warn!(digest = %e.digest, %why, "in-flight: failed");
                e.state.send_modify(|s| s.end = End::Failed(why));
            }
        }
        // Readers still holding the entry keep reading through their descriptor.
        let _ = tokio::fs::remove_file(&path).await;
    }

    async fn fill_from(
        &self,
        e: &Entry,
        ns: &str,
        name: &str,
        sources: &[Source],
    ) -> Result<(), String> {
        let mut hasher = Digester::new(e.digest.algorithm());
        let mut why = Vec::new();
        // Peers ranked after the registry are not tried: they would be following this
        // node. The registry itself is asked again (resuming) while it makes progress:
        // a stalled connection (TCP backing off after losses on a congested link) is
        // better replaced by a new one than handed to a node that would ask the same
        // registry.
        let mut failures_in_a_row = 0;
        // Set once a followed peer was given up: the registry source that comes next is
        // a takeover.
        let mut after_peer = false;
        let mut sources = sources.iter().peekable();
        while let Some(src) = sources.peek() {
            let src = *src;
            let t0 = Instant::now();
            let from = e.state.borrow().written;
            if *src == Source::Registry && std::mem::take(&mut after_peer) {
                self.metrics.inflight_takeover(&e.digest.to_string(), from);
            }
            match self.copy_from(src, e, ns, name, &mut hasher).await {
                Ok(()) => {
                    let st = e.state.borrow().clone();
                    tracing::info!(digest = %e.digest, source = ?src, from, bytes = st.written - from, secs = t0.elapsed().as_secs_f64(), "in-flight: source finished");
                    break;
                }
                Err(w) => {
                    let at = e.state.borrow().written;
                    why.push(format!("{src:?}: {w}"));
                    self.metrics.inflight_abandoned(*src == Source::Registry);
                    failures_in_a_row = if at > from { 1 } else { failures_in_a_row + 1 };
                    if *src == Source::Registry && failures_in_a_row < REGISTRY_TRIES {
                        tracing::warn!(digest = %e.digest, source = ?src, from, at, why = %w, "in-flight: source abandoned; asking it again");
                        continue;
                    }
                    tracing::warn!(digest = %e.digest, source = ?src, from, at, why = %w, "in-flight: source abandoned; next");
                    if *src == Source::Registry {
                        break;
                    }
                    failures_in_a_row = 0;
                    after_peer = true;
                    sources.next();
                }
            }
        }
        let st = e.state.borrow().clone();
        if st.size != Some(st.written) {
            return Err(format!("no source delivered the blob: {}", why.join("; ")));
        }
        let got = hasher.digest();
        if got != e.digest {
            return Err(format!("bytes hash to {got}"));
        }
        Ok(())
    }

    fn url(&self, src: &Source, ns: &str, name: &str, d: &Digest) -> Result<String, String> {
        match src {
            Source::Peer(base) => Ok(format!("{base}/v2/{name}/blobs/{d}?ns={ns}")),
            Source::Registry => {
                let base = crate::mirror::upstream::base_url(ns, &self.plain_http)
                    .ok_or_else(|| format!("invalid registry host {ns:?}"))?;
                Ok(format!("{base}/v2/{name}/blobs/{d}"))
            }
        }
    }

    /// Appends what `src` has from the first missing byte; Ok once the blob is whole.
    async fn copy_from(
        &self,
        src: &Source,
        e: &Entry,
        ns: &str,
        name: &str,
        hasher: &mut Digester,
    ) -> Result<(), String> {
        let stall = self.tuning.stall;
        // A peer's body may pause while that peer renews its own registry connection
        // (one stall time): followers wait twice as long before leaving it. A peer
        // that is gone resets the connection and is left at once.
        let idle = match src {
            Source::Peer(_) => stall * 2,
            Source::Registry => stall,
        };
        let mut written = e.state.borrow().written;
        // Exported while this source fills the file: which node leads a blob (its source
        // is the registry) is read from the nodes' metrics, not their logs.
        let progress = self
            .metrics
            .inflight(&e.digest.to_string(), *src == Source::Registry);
        progress.set(written);
        let mut req = self.http.get(self.url(src, ns, name, &e.digest)?);
        if let Source::Peer(_) = src {
            req = req
                .header(auth::HEADER, self.secret.as_slice())
                .header(PEER_HEADER, "1");
        }
        if written > 0 {
            req = req.header("Range", format!("bytes={written}-"));
        }
        let started = Instant::now();
        let resp = tokio::time::timeout(stall, req.send())
            .await
            .map_err(|_| format!("no answer within {stall:?}"))?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let (mut skip, total) = match status {
            200 => (written, resp.content_length()),
            206 => {
                let cr = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range);
                match cr {
                    Some((start, total)) if start == written => (0, total),
                    _ => return Err("unexpected Content-Range".into()),
                }
            }
            s => return Err(format!("HTTP {s}")),
        };
        let total = total.ok_or("no size in the answer")?;
        let size = match e.state.borrow().size {
            Some(s) if s != total => return Err(format!("size {total}, expected {s}")),
            s => s,
        };
        if size.is_none() {
            e.state.send_modify(|s| s.size = Some(total));
        }
        let remaining = total - written;
        // The source's deadline: the stall time plus the rest at the slowest tolerated rate.
        let deadline = started
            + idle
            + Duration::from_secs_f64(remaining as f64 / self.tuning.min_rate as f64);
        let mut body = resp.bytes_stream();
        while written < total {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "slower than {} bytes/s (deadline passed at {written} of {total})",
                    self.tuning.min_rate
                ));
            }
            let chunk = match tokio::time::timeout(idle.min(left), body.next()).await {
                Err(_) => return Err(format!("stalled at {written} of {total}")),
                Ok(None) => return Err(format!("ended at {written} of {total}")),
                Ok(Some(Err(err))) => return Err(err.to_string()),
                Ok(Some(Ok(c))) => c,
            };
            let mut chunk: Bytes = chunk;
            if skip > 0 {
                let n = skip.min(chunk.len() as u64);
                chunk = chunk.slice(n as usize..);
                skip -= n;
            }
            if chunk.is_empty() {
                continue;
            }
            if written + chunk.len() as u64 > total {
                return Err(format!("more than {total} bytes"));
            }
            let file = e.file.clone();
            let at = written;
            let data = chunk.clone();
            tokio::task::spawn_blocking(move || file.write_all_at(&data, at))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("writing the in-flight file: {e}"))?;
            hasher.update(&chunk);
            written += chunk.len() as u64;
            e.state.send_modify(|s| s.written = written);
            progress.set(written);
        }
        Ok(())
    }
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.parse().ok()?, total.parse().ok()))
}

/// How far readers may read: everything written, except the last byte until the whole
/// blob has been verified.
fn readable(st: &State) -> u64 {
    match (&st.end, st.size) {
        (End::Verified, Some(s)) => s,
        (_, Some(s)) => st.written.min(s.saturating_sub(1)),
        _ => 0,
    }
}

impl Entry {
    /// The blob's size once a source has told it; Err if the entry failed first or
    /// nothing was learnt within `bound`.
    pub async fn size(&self, bound: Duration) -> Result<u64, String> {
        let mut rx = self.state.subscribe();
        let waited = tokio::time::timeout(bound, async {
            loop {
                let st = rx.borrow_and_update().clone();
                if let End::Failed(w) = st.end {
                    return Err(w);
                }
                if let Some(s) = st.size {
                    return Ok(s);
                }
                if rx.changed().await.is_err() {
                    return Err("entry dropped".to_string());
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| Err(format!("no source answered within {bound:?}")))
    }

    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// The blob from `offset` on, as it arrives. An error if the entry fails or makes
    /// no progress for `idle` (the filler moves to its next source well before that).
    pub fn read_from(
        self: Arc<Self>,
        offset: u64,
        idle: Duration,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let rx = self.state.subscribe();
        futures::stream::unfold(
            (self, rx, offset, false),
            move |(e, mut rx, pos, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let st = rx.borrow_and_update().clone();
                    if let End::Failed(w) = &st.end {
                        let err = std::io::Error::other(format!("in-flight blob failed: {w}"));
                        return Some((Err(err), (e, rx, pos, true)));
                    }
                    let size = st.size.unwrap_or(0);
                    let readable = readable(&st);
                    if pos < readable {
                        let n = (readable - pos).min(CHUNK) as usize;
                        let file = e.file.clone();
                        let read = tokio::task::spawn_blocking(move || {
                            let mut buf = vec![0u8; n];
                            file.read_exact_at(&mut buf, pos).map(|_| Bytes::from(buf))
                        })
                        .await
                        .unwrap_or_else(|j| Err(std::io::Error::other(j)));
                        return match read {
                            Ok(b) => Some((Ok(b), (e, rx, pos + n as u64, false))),
                            Err(err) => Some((Err(err), (e, rx, pos, true))),
                        };
                    }
                    if st.end == End::Verified && pos >= size {
                        return None;
                    }
                    match tokio::time::timeout(idle, rx.changed()).await {
                        Ok(Ok(())) => continue,
                        _ => {
                            let err = std::io::Error::other(format!(
                                "in-flight blob made no progress for {idle:?}"
                            ));
                            return Some((Err(err), (e, rx, pos, true)));
                        }
                    }
                }
            },
        )
    }
}

#[cfg(test)]
#[path = "inflight_tests.rs"]
mod tests;
