//! Load test client for ipcs's content socket: W writers on distinct refs, C writers
//! contending on one ref (containerd semantics: one holder at a time, the others get
//! UNAVAILABLE "ref … locked" after lock_wait and retry), and R readers, for --secs.
//! Checks: every request finishes within --deadline-secs; completed operations grow every
//! second (--stall-secs; no deadlock); every commit that returned OK is afterwards Info- and
//! Read-able with the right sha256 and its CID is pinned (recursively) in Kubo. Prints ops/s
//! per kind, errors by code and p50/p99 latency; exits non-zero on any failure.
//!
//!   load --socket P --kubo-api URL [--secs 60] [--writers 64] [--contenders 8]
//!        [--readers 32] [--max-blob-kib 64] [--deadline-secs 30] [--stall-secs 1] [--seed 1]
use ipcs::server::client;
use ipcs::server::proto::admin::admin_client::AdminClient;
use ipcs::server::proto::admin::BlobsRequest;
use ipcs::server::proto::*;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

#[path = "support/shared.rs"]
mod shared;
use shared::{connect, msg, read, sha, Client, Rng};

struct Session {
    _tx: mpsc::Sender<WriteContentRequest>,
    rx: tonic::Streaming<WriteContentResponse>,
}

impl Session {
    async fn open(
        c: &mut Client,
        first: WriteContentRequest,
    ) -> Result<(Session, mpsc::Sender<WriteContentRequest>), Status> {
        let (tx, rx) = mpsc::channel(2);
        tx.send(first).await.ok();
        let mut rx = c.write(ReceiverStream::new(rx)).await?.into_inner();
        rx.message()
            .await?
            .ok_or_else(|| Status::unknown("EOF without status"))?;
        Ok((
            Session {
                _tx: tx.clone(),
                rx,
            },
            tx,
        ))
    }
    async fn send(
        &mut self,
        tx: &mpsc::Sender<WriteContentRequest>,
        m: WriteContentRequest,
    ) -> Result<WriteContentResponse, Status> {
        tx.send(m)
            .await
            .map_err(|_| Status::unknown("server dropped the stream"))?;
        self.rx
            .message()
            .await?
            .ok_or_else(|| Status::unknown("EOF without status"))
    }
}

/// Writes `data` under `rf` in ≤ 1 MiB messages (truncating whatever a previous holder
/// left) and commits it with its digest.
async fn put(c: &mut Client, rf: &str, data: &[u8]) -> Result<String, Status> {
    let d = sha(data);
    let (mut s, tx) =
        Session::open(c, msg(WriteAction::Stat, rf, 0, data.len() as i64, "")).await?;
    let mut off = 0i64;
    for chunk in data.chunks(1 << 20) {
        let mut m = msg(WriteAction::Write, "", off, 0, "");
        m.data = chunk.to_vec();
        off = s.send(&tx, m).await?.offset;
    }
    let resp = s
        .send(
            &tx,
            msg(WriteAction::Commit, "", off, data.len() as i64, &d),
        )
        .await?;
    if resp.digest != d {
        return Err(Status::unknown(format!(
            "commit answered digest {} for {d}",
            resp.digest
        )));
    }
    Ok(d)
}

#[derive(Default)]
struct Stats {
    lat_us: BTreeMap<&'static str, Vec<u64>>,
    errors: BTreeMap<(&'static str, String), (u64, String)>,
}

struct Shared {
    stats: Mutex<Stats>,
    committed: Mutex<Vec<(String, usize)>>,
    done_ops: AtomicU64,
    stop: AtomicBool,
    deadline: Duration,
    contender_commits: Mutex<HashMap<usize, u64>>,
}

impl Shared {
    /// Runs one operation under the deadline and records its latency or its error code.
    async fn op<T>(
        &self,
        kind: &'static str,
        f: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let t0 = Instant::now();
        let res = match tokio::time::timeout(self.deadline, f).await {
            Ok(r) => r,
            Err(_) => Err(Status::new(
                Code::Unknown,
                "HANG: no answer within the deadline",
            )),
        };
        let us = t0.elapsed().as_micros() as u64;
        let mut st = self.stats.lock().unwrap();
        match &res {
            Ok(_) => st.lat_us.entry(kind).or_default().push(us),
            Err(e) => {
                let ent = st
                    .errors
                    .entry((kind, format!("{:?}", e.code())))
                    .or_insert((0, e.message().chars().take(160).collect()));
                ent.0 += 1;
            }
        }
        self.done_ops.fetch_add(1, Ordering::Relaxed);
        res
    }
}

async fn writer(sh: Arc<Shared>, mut c: Client, id: usize, seed: u64, max_kib: u64) {
    let mut r = Rng(seed ^ ((id as u64 + 1) * 0x51_7cc1_b727_220a));
    let mut n = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        let mut data = format!("writer {id} blob {n} seed {seed}\n").into_bytes();
        let len = r.below(max_kib << 10) as usize;
        data.extend(r.bytes(len));
        n += 1;
        let rf = format!("load/writer-{id}/{n}");
        if let Ok(d) = sh.op("write+commit", put(&mut c, &rf, &data)).await {
            sh.committed.lock().unwrap().push((d, data.len()));
        }
    }
}

async fn contender(sh: Arc<Shared>, mut c: Client, id: usize, seed: u64) {
    let mut r = Rng(seed ^ ((id as u64 + 100) * 0x2545_f491_4f6c_dd1d));
    let mut n = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        let mut data = format!("contender {id} blob {n} seed {seed}\n").into_bytes();
        let len = r.below(32 << 10) as usize;
        data.extend(r.bytes(len));
        n += 1;
        match sh
            .op(
                "contended write",
                put(&mut c, "load/the-contended-ref", &data),
            )
            .await
        {
            Ok(d) => {
                sh.committed.lock().unwrap().push((d, data.len()));
                *sh.contender_commits.lock().unwrap().entry(id).or_default() += 1;
            }
            // "locked": containerd retries after a short pause.
            Err(e) if e.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(r.below(50))).await
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn reader(sh: Arc<Shared>, mut c: Client, id: usize, seed: u64) {
    let mut r = Rng(seed ^ ((id as u64 + 1000) * 0x9e37_79b9));
    while !sh.stop.load(Ordering::Relaxed) {
        let pick = {
            let all = sh.committed.lock().unwrap();
            if all.is_empty() {
                None
            } else {
                Some(all[r.below(all.len() as u64) as usize].clone())
            }
        };
        let Some((d, size)) = pick else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let info = sh
            .op("info", c.info(InfoRequest { digest: d.clone() }))
            .await;
        if let Ok(i) = info {
            if i.into_inner().info.map(|i| i.size) != Some(size as i64) {
                let mut st = sh.stats.lock().unwrap();
                st.errors
                    .entry(("info", "WRONG SIZE".into()))
                    .or_insert((0, d.clone()))
                    .0 += 1;
            }
        }
        if r.below(2) == 0 {
            // containerd's unpack pattern: one 32 KiB Read at a time.
            let off = r.below(size as u64 + 1) as i64;
            let _ = sh.op("read 32KiB", read(&mut c, &d, off, 32768)).await;
        } else if let Ok(data) = sh.op("read whole", read(&mut c, &d, 0, 0)).await {
            if sha(&data) != d {
                let mut st = sh.stats.lock().unwrap();
                st.errors
                    .entry(("read whole", "WRONG BYTES".into()))
                    .or_insert((0, d.clone()))
                    .0 += 1;
            }
        }
    }
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

async fn run() -> Result<bool, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut args = HashMap::new();
    for pair in argv.chunks(2) {
        let k = pair[0]
            .strip_prefix("--")
            .ok_or(format!("unexpected {}", pair[0]))?;
        args.insert(
            k.to_string(),
            pair.get(1).ok_or(format!("--{k} needs a value"))?.clone(),
        );
    }
    let num = |k: &str, d: u64| -> Result<u64, String> {
        args.get(k)
            .map(|v| v.parse::<u64>().map_err(|e| format!("--{k}: {e}")))
            .unwrap_or(Ok(d))
    };
    let socket = PathBuf::from(args.get("socket").ok_or("--socket is required")?);
    let kubo_api = args
        .get("kubo-api")
        .ok_or("--kubo-api is required")?
        .clone();
    let secs = num("secs", 60)?;
    let (writers, contenders, readers) = (
        num("writers", 64)?,
        num("contenders", 8)?,
        num("readers", 32)?,
    );
    let max_kib = num("max-blob-kib", 64)?;
    let seed = num("seed", 1)?;
    let sh = Arc::new(Shared {
        stats: Mutex::new(Stats::default()),
        committed: Mutex::new(Vec::new()),
        done_ops: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        deadline: Duration::from_secs(num("deadline-secs", 30)?),
        contender_commits: Mutex::new(HashMap::new()),
    });
    // Like containerd: one connection (HTTP/2 multiplexed) per client role group.
    let (cw, cc, cr) = (
        connect(&socket).await?,
        connect(&socket).await?,
        connect(&socket).await?,
    );
    let mut tasks = Vec::new();
    for i in 0..writers as usize {
        tasks.push(tokio::spawn(writer(
            sh.clone(),
            cw.clone(),
            i,
            seed,
            max_kib,
        )));
    }
    for i in 0..contenders as usize {
        tasks.push(tokio::spawn(contender(sh.clone(), cc.clone(), i, seed)));
    }
    for i in 0..readers as usize {
        tasks.push(tokio::spawn(reader(sh.clone(), cr.clone(), i, seed)));
    }
    // Progress is required in every --stall-secs window (default: every second).
    let stall = Duration::from_secs(num("stall-secs", 1)?);
    let started = Instant::now();
    let mut ok = true;
    let mut last = 0u64;
    let mut stalled_since = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let done = sh.done_ops.load(Ordering::Relaxed);
        let commits = sh.committed.lock().unwrap().len();
        println!(
            "t={:>3}s ops={done:>7} (+{:>5}/s) commits={commits}",
            started.elapsed().as_secs(),
            done - last
        );
        if done > last {
            stalled_since = Instant::now();
        } else if stalled_since.elapsed() >= stall {
            println!("DEADLOCK? no operation completed for {stall:?}");
            ok = false;
            break;
        }
        last = done;
    }
    sh.stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let drain = tokio::time::timeout(
        sh.deadline + Duration::from_secs(10),
        futures::future::join_all(tasks),
    )
    .await;
    if drain.is_err() {
        println!("FAIL: workers did not finish within the deadline after stop");
        ok = false;
    }

    // No lost commit: every OK commit is Info/Read-able with the right bytes and pinned.
    let committed = sh.committed.lock().unwrap().clone();
    let mut c = connect(&socket).await?;
    // Commits answer before Kubo's import: the pins are looked at once it has finished.
    ipcs::server::admin_client::Admin::connect(&socket)
        .await?
        .settle(Duration::from_secs(120))
        .await?;
    let mut admin = AdminClient::new(client::connect(&socket).await.map_err(|e| e.to_string())?);
    let mut cids = HashMap::new();
    let mut s = admin
        .blobs(BlobsRequest { filters: vec![] })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    while let Some(b) = s.message().await.map_err(|e| e.to_string())? {
        for b in b.blobs {
            cids.insert(b.digest, b.cid);
        }
    }
    let kubo = ipcs::endpoint::Endpoint::parse(&kubo_api)?;
    let pins: serde_json::Value = kubo
        .configure(reqwest::Client::builder())
        .build()
        .map_err(|e| e.to_string())?
        .post(format!("{}/api/v0/pin/ls?type=recursive", kubo.url))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let pinned = pins["Keys"].as_object().cloned().unwrap_or_default();
    let (mut lost, mut wrong, mut unpinned) = (0u64, 0u64, 0u64);
    let verify_started = Instant::now();
    for (d, size) in &committed {
        match c.info(InfoRequest { digest: d.clone() }).await {
            Ok(i) if i.get_ref().info.as_ref().map(|i| i.size) == Some(*size as i64) => {}
            _ => lost += 1,
        }
        match read(&mut c, d, 0, 0).await {
            Ok(data) if sha(&data) == *d => {}
            _ => wrong += 1,
        }
        if !cids.get(d).is_some_and(|cid| pinned.contains_key(cid)) {
            unpinned += 1;
        }
    }
    println!(
        "\nverified {} OK commits in {:.1}s: lost {lost}, wrong bytes {wrong}, not pinned in kubo {unpinned}",
        committed.len(),
        verify_started.elapsed().as_secs_f64()
    );
    if lost + wrong + unpinned > 0 {
        ok = false;
    }

    let mut st = sh.stats.lock().unwrap();
    println!("\nload: {writers} writers, {contenders} contenders on one ref, {readers} readers, {elapsed:.1}s");
    println!(
        "{:<18} {:>8} {:>9} {:>10} {:>10}",
        "kind", "ok", "ops/s", "p50 ms", "p99 ms"
    );
    for (kind, v) in st.lat_us.iter_mut() {
        let n = v.len();
        println!(
            "{kind:<18} {n:>8} {:>9.1} {:>10.2} {:>10.2}",
            n as f64 / elapsed,
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
    println!(
        "\n{:<18} {:<20} {:>8}  sample",
        "kind", "error code", "count"
    );
    for ((kind, code), (n, m)) in &st.errors {
        println!("{kind:<18} {code:<20} {n:>8}  {m}");
        // The only expected error: UNAVAILABLE "locked" on the contended ref.
        let expected = *kind == "contended write" && code == "Unavailable" && m.contains("locked");
        if !expected {
            ok = false;
        }
    }
    let cc = sh.contender_commits.lock().unwrap();
    let per: Vec<u64> = (0..contenders as usize)
        .map(|i| *cc.get(&i).unwrap_or(&0))
        .collect();
    println!("\ncommits per contender on the shared ref: {per:?}");
    println!(
        "LOAD_COMMITS={} LOAD_OPS={}",
        committed.len(),
        sh.done_ops.load(Ordering::Relaxed)
    );
    Ok(ok)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => {
            println!("LOAD: PASS");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("LOAD: FAIL");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::from(2)
        }
    }
}
