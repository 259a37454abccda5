//! Benchmark client for containerd.services.content.v1.Content over a unix socket.
//!
//! It speaks to ipcs's socket or to containerd's own socket (the same gRPC API; every
//! request then carries `containerd-namespace` and, with --lease, `containerd-lease`).
//! Used by integration/bench.sh; every command prints exactly one JSON object on stdout.
//!
//!   content_bench gen            --size N --seed S --out FILE
//!   content_bench digest         --size N --seed S
//!   content_bench ingest         --socket P --size N --seed S [--ref R]
//!   content_bench read           --socket P --digest D --size N --chunk B [--verify]
//!   content_bench populate       --socket P --count N --concurrency C --prefix X [--start I]
//!   content_bench info           --socket P --count N --samples K --prefix X [--seed S]
//!   content_bench commit-latency --socket P --samples K --prefix X [--start I]
//!
//! Common options: --namespace NS (default bench), --lease ID (containerd only). Sizes take
//! a plain byte count or a KiB/MiB/GiB suffix. ingest writes 1 MiB messages, one in flight,
//! as containerd's writer does; read issues one Read stream per --chunk bytes, in sequence.
//!
//! Data of `gen`/`ingest` is a deterministic PRNG stream (splitmix64, seeded): `ingest`
//! hashes it in a first pass, then streams it again through the Write stream, so nothing
//! is ever held in memory beyond one message. Tiny blobs of `populate`/`commit-latency`
//! are "ipcs-bench PREFIX INDEX" padded to 64 bytes, so `info` can recompute their digests.
use ipcs::server::client;
use ipcs::server::proto::content_client::ContentClient;
use ipcs::server::proto::{
    InfoRequest, ReadContentRequest, WriteAction, WriteContentRequest, WriteContentResponse,
};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

const MIB: usize = 1 << 20;

type Res<T> = Result<T, String>;

// ------------------------------------------------------------------------ arguments

struct Args {
    cmd: String,
    opts: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    fn parse() -> Res<Args> {
        let mut it = std::env::args().skip(1);
        let cmd = it
            .next()
            .ok_or("usage: content_bench COMMAND [--opt value]...")?;
        let mut opts = HashMap::new();
        let mut flags = Vec::new();
        let rest: Vec<String> = it.collect();
        let mut i = 0;
        while i < rest.len() {
            let a = rest[i]
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {}", rest[i]))?;
            if a == "verify" {
                flags.push(a.to_string());
                i += 1;
                continue;
            }
            let v = rest
                .get(i + 1)
                .ok_or_else(|| format!("--{a} needs a value"))?;
            opts.insert(a.to_string(), v.clone());
            i += 2;
        }
        Ok(Args { cmd, opts, flags })
    }

    fn str(&self, k: &str) -> Res<String> {
        self.opts
            .get(k)
            .cloned()
            .ok_or_else(|| format!("--{k} is required"))
    }

    fn str_or(&self, k: &str, d: &str) -> String {
        self.opts.get(k).cloned().unwrap_or_else(|| d.to_string())
    }

    fn num(&self, k: &str) -> Res<u64> {
        parse_size(&self.str(k)?).ok_or_else(|| format!("--{k}: not a number"))
    }

    fn num_or(&self, k: &str, d: u64) -> Res<u64> {
        match self.opts.get(k) {
            Some(v) => parse_size(v).ok_or_else(|| format!("--{k}: not a number")),
            None => Ok(d),
        }
    }

    fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|f| f == k)
    }
}

/// "1073741824", "1GiB", "256MiB", "32KiB".
fn parse_size(s: &str) -> Option<u64> {
    let (n, mult) = if let Some(n) = s.strip_suffix("GiB") {
        (n, 1u64 << 30)
    } else if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("KiB") {
        (n, 1 << 10)
    } else {
        (s, 1)
    };
    n.parse::<u64>().ok().map(|n| n * mult)
}

// ------------------------------------------------------------------------ data

/// splitmix64: deterministic, fast, and good enough to be incompressible for Kubo.
struct Prng(u64);

impl Prng {
    fn new(seed: u64) -> Prng {
        Prng(seed ^ 0x6a09_e667_f3bc_c908)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Calls `f` with consecutive chunks (each `chunk` bytes, the last shorter) of the stream.
fn for_each_chunk(
    size: u64,
    seed: u64,
    chunk: usize,
    mut f: impl FnMut(&[u8]) -> Res<()>,
) -> Res<()> {
    let mut rng = Prng::new(seed);
    let mut buf = vec![0u8; chunk];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        rng.fill(&mut buf[..n]);
        f(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn stream_digest(size: u64, seed: u64) -> String {
    let mut h = Sha256::new();
    // Chunk size must match ingest's, since the PRNG fills 8-byte words per call.
    let _ = for_each_chunk(size, seed, MIB, |b| {
        h.update(b);
        Ok(())
    });
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn tiny_blob(prefix: &str, i: u64) -> Vec<u8> {
    let mut v = format!("ipcs-bench {prefix} {i}\n").into_bytes();
    v.resize(64.max(v.len()), b'.');
    v
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

// ------------------------------------------------------------------------ client

#[derive(Clone)]
struct Headers {
    namespace: MetadataValue<tonic::metadata::Ascii>,
    lease: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for Headers {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let md = req.metadata_mut();
        md.insert("containerd-namespace", self.namespace.clone());
        if let Some(l) = &self.lease {
            md.insert("containerd-lease", l.clone());
        }
        Ok(req)
    }
}

type Client = ContentClient<InterceptedService<Channel, Headers>>;

async fn connect(a: &Args) -> Res<Client> {
    let socket = PathBuf::from(a.str("socket")?);
    let ch = client::connect(&socket)
        .await
        .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
    let headers = Headers {
        namespace: a
            .str_or("namespace", "bench")
            .parse()
            .map_err(|_| "bad --namespace")?,
        lease: match a.opts.get("lease") {
            Some(l) => Some(l.parse().map_err(|_| "bad --lease")?),
            None => None,
        },
    };
    Ok(ContentClient::with_interceptor(ch, headers)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// One Write stream, driven like containerd's remote writer: one message in flight.
struct WriteSession {
    tx: Option<mpsc::Sender<WriteContentRequest>>,
    rx: tonic::Streaming<WriteContentResponse>,
}

impl WriteSession {
    async fn open(
        c: &mut Client,
        first: WriteContentRequest,
    ) -> Res<(WriteSession, WriteContentResponse)> {
        let (tx, rx) = mpsc::channel(2);
        tx.send(first).await.map_err(|_| "channel closed")?;
        let mut rx = c
            .write(ReceiverStream::new(rx))
            .await
            .map_err(|s| format!("write: {s}"))?
            .into_inner();
        let resp = rx
            .message()
            .await
            .map_err(|s| format!("write stat: {s}"))?
            .ok_or("write stream ended without a response")?;
        Ok((WriteSession { tx: Some(tx), rx }, resp))
    }

    async fn send(&mut self, req: WriteContentRequest) -> Res<WriteContentResponse> {
        self.tx
            .as_ref()
            .ok_or("session closed")?
            .send(req)
            .await
            .map_err(|_| "server closed the write stream")?;
        self.rx
            .message()
            .await
            .map_err(|s| format!("write: {s}"))?
            .ok_or_else(|| "write stream ended without a response".to_string())
    }

    fn close(mut self) {
        self.tx.take();
    }
}

fn stat_req(r: &str, total: u64, expected: &str) -> WriteContentRequest {
    WriteContentRequest {
        action: WriteAction::Stat as i32,
        r#ref: r.into(),
        total: total as i64,
        expected: expected.into(),
        ..Default::default()
    }
}

fn write_req(offset: u64, data: Vec<u8>) -> WriteContentRequest {
    WriteContentRequest {
        action: WriteAction::Write as i32,
        offset: offset as i64,
        data,
        ..Default::default()
    }
}

fn commit_req(offset: u64, total: u64, expected: &str, data: Vec<u8>) -> WriteContentRequest {
    WriteContentRequest {
        action: WriteAction::Commit as i32,
        offset: offset as i64,
        total: total as i64,
        expected: expected.into(),
        data,
        ..Default::default()
    }
}

/// Writes a small in-memory blob in one stream (stat, write, commit) as containerd does.
async fn put_small(c: &mut Client, r: &str, data: &[u8]) -> Res<()> {
    let d = digest_of(data);
    let n = data.len() as u64;
    let (mut s, _) = WriteSession::open(c, stat_req(r, n, &d)).await?;
    s.send(write_req(0, data.to_vec())).await?;
    let resp = s.send(commit_req(n, n, &d, vec![])).await?;
    if resp.digest != d {
        return Err(format!("committed digest {} != {d}", resp.digest));
    }
    s.close();
    Ok(())
}

// ------------------------------------------------------------------------ commands

fn json(pairs: &[(&str, String)]) -> String {
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn secs(d: Duration) -> String {
    format!("{:.6}", d.as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn latency_summary(mut ms: Vec<f64>) -> Vec<(&'static str, String)> {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    vec![
        ("samples", ms.len().to_string()),
        ("p50_ms", format!("{:.4}", percentile(&ms, 50.0))),
        ("p90_ms", format!("{:.4}", percentile(&ms, 90.0))),
        ("p99_ms", format!("{:.4}", percentile(&ms, 99.0))),
        (
            "max_ms",
            format!("{:.4}", ms.last().copied().unwrap_or(f64::NAN)),
        ),
        ("mean_ms", format!("{mean:.4}")),
    ]
}

fn cmd_gen(a: &Args) -> Res<String> {
    let size = a.num("size")?;
    let seed = a.num_or("seed", 1)?;
    let out = a.str("out")?;
    let mut f = std::io::BufWriter::with_capacity(
        MIB,
        std::fs::File::create(&out).map_err(|e| format!("{out}: {e}"))?,
    );
    let mut h = Sha256::new();
    for_each_chunk(size, seed, MIB, |b| {
        h.update(b);
        f.write_all(b).map_err(|e| format!("{out}: {e}"))
    })?;
    f.flush().map_err(|e| format!("{out}: {e}"))?;
    Ok(json(&[
        ("bytes", size.to_string()),
        (
            "digest",
            q(&format!("sha256:{}", hex::encode(h.finalize()))),
        ),
    ]))
}

async fn cmd_ingest(a: &Args) -> Res<String> {
    let size = a.num("size")?;
    let seed = a.num_or("seed", 1)?;
    let r = a.str_or("ref", &format!("bench-ingest-{seed}-{size}"));
    let t_hash = Instant::now();
    let d = stream_digest(size, seed);
    let hash_time = t_hash.elapsed();
    let mut c = connect(a).await?;

    // Generate the next message while the previous one is in flight: the client's PRNG
    // then costs (almost) nothing on the measured path.
    let (gtx, mut grx) = mpsc::channel::<Vec<u8>>(2);
    let gen = tokio::task::spawn_blocking(move || {
        for_each_chunk(size, seed, MIB, |b| {
            gtx.blocking_send(b.to_vec())
                .map_err(|_| "consumer gone".to_string())
        })
    });

    let t0 = Instant::now();
    let (mut s, first) = WriteSession::open(&mut c, stat_req(&r, size, &d)).await?;
    if first.offset != 0 {
        return Err(format!(
            "ref {r} already has {} bytes (stale ingest?)",
            first.offset
        ));
    }
    let mut off = 0u64;
    while let Some(b) = grx.recv().await {
        let n = b.len() as u64;
        let resp = s.send(write_req(off, b)).await?;
        off += n;
        if resp.offset as u64 != off {
            return Err(format!("server offset {} != {off}", resp.offset));
        }
    }
    let t_commit = Instant::now();
    let resp = s.send(commit_req(off, size, &d, vec![])).await?;
    let commit_time = t_commit.elapsed();
    let total = t0.elapsed();
    s.close();
    gen.await.map_err(|e| e.to_string())??;
    if resp.digest != d {
        return Err(format!("committed digest {} != {d}", resp.digest));
    }
    let mbps = size as f64 / 1e6 / total.as_secs_f64();
    Ok(json(&[
        ("bytes", size.to_string()),
        ("digest", q(&d)),
        ("seconds", secs(total)),
        ("commit_seconds", secs(commit_time)),
        ("hash_pass_seconds", secs(hash_time)),
        ("mb_per_s", format!("{mbps:.2}")),
    ]))
}

async fn cmd_read(a: &Args) -> Res<String> {
    let d = a.str("digest")?;
    let size = a.num("size")?;
    let chunk = a.num("chunk")?;
    let verify = a.flag("verify");
    let mut c = connect(a).await?;
    let mut h = Sha256::new();
    let mut rpcs = 0u64;
    let mut lat = Vec::with_capacity((size / chunk + 1) as usize);
    let t0 = Instant::now();
    let mut off = 0u64;
    while off < size {
        let want = chunk.min(size - off);
        let t = Instant::now();
        let mut s = c
            .read(ReadContentRequest {
                digest: d.clone(),
                offset: off as i64,
                size: want as i64,
            })
            .await
            .map_err(|s| format!("read @{off}: {s}"))?
            .into_inner();
        let mut got = 0u64;
        while let Some(m) = s.message().await.map_err(|s| format!("read @{off}: {s}"))? {
            // ipcs reports absolute offsets; containerd's content server reports them
            // relative to the requested offset (its readResponseWriter starts at 0).
            if m.offset as u64 != off + got && m.offset as u64 != got {
                return Err(format!("chunk at {} expected {}", m.offset, off + got));
            }
            if verify {
                h.update(&m.data);
            }
            got += m.data.len() as u64;
        }
        if got != want {
            return Err(format!("read @{off}: got {got} bytes, want {want}"));
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        rpcs += 1;
        off += want;
    }
    let total = t0.elapsed();
    if verify {
        let got = format!("sha256:{}", hex::encode(h.finalize()));
        if got != d {
            return Err(format!("read back sha256 {got} != {d}"));
        }
    }
    let mbps = size as f64 / 1e6 / total.as_secs_f64();
    let mut out = vec![
        ("bytes", size.to_string()),
        ("chunk", chunk.to_string()),
        ("rpcs", rpcs.to_string()),
        ("seconds", secs(total)),
        ("mb_per_s", format!("{mbps:.2}")),
        ("verified", verify.to_string()),
    ];
    out.extend(latency_summary(lat));
    Ok(json(&out))
}

async fn cmd_populate(a: &Args) -> Res<String> {
    let count = a.num("count")?;
    let start = a.num_or("start", 0)?;
    let conc = a.num_or("concurrency", 8)?.max(1);
    let prefix = a.str("prefix")?;
    let c = connect(a).await?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(start));
    let end = start + count;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let mut c = c.clone();
        let next = next.clone();
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= end {
                    return Ok::<_, String>(lat);
                }
                let t = Instant::now();
                put_small(
                    &mut c,
                    &format!("bench-pop-{prefix}-{i}"),
                    &tiny_blob(&prefix, i),
                )
                .await?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| e.to_string())??);
    }
    let total = t0.elapsed();
    let mut out = vec![
        ("count", count.to_string()),
        ("concurrency", conc.to_string()),
        ("seconds", secs(total)),
        (
            "per_s",
            format!("{:.1}", count as f64 / total.as_secs_f64()),
        ),
    ];
    out.extend(latency_summary(lat));
    Ok(json(&out))
}

async fn cmd_info(a: &Args) -> Res<String> {
    let count = a.num("count")?;
    let samples = a.num("samples")?;
    let prefix = a.str("prefix")?;
    let seed = a.num_or("seed", 7)?;
    let mut c = connect(a).await?;
    let mut rng = Prng::new(seed);
    let mut lat = Vec::with_capacity(samples as usize);
    let mut w = [0u8; 8];
    let t0 = Instant::now();
    for _ in 0..samples {
        rng.fill(&mut w);
        let i = u64::from_le_bytes(w) % count;
        let d = digest_of(&tiny_blob(&prefix, i));
        let t = Instant::now();
        let info = c
            .info(InfoRequest { digest: d.clone() })
            .await
            .map_err(|s| format!("info {d}: {s}"))?
            .into_inner();
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        if info.info.map(|i| i.size) != Some(64) {
            return Err(format!("info {d}: unexpected size"));
        }
    }
    let mut out = vec![("seconds", secs(t0.elapsed()))];
    out.extend(latency_summary(lat));
    Ok(json(&out))
}

async fn cmd_commit_latency(a: &Args) -> Res<String> {
    let samples = a.num("samples")?;
    let start = a.num_or("start", 0)?;
    let prefix = a.str("prefix")?;
    let mut c = connect(a).await?;
    let mut lat = Vec::with_capacity(samples as usize);
    for i in start..start + samples {
        let data = tiny_blob(&prefix, i);
        let t = Instant::now();
        put_small(&mut c, &format!("bench-commit-{prefix}-{i}"), &data).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(json(&latency_summary(lat)))
}

async fn run() -> Res<String> {
    let a = Args::parse()?;
    match a.cmd.as_str() {
        "gen" => cmd_gen(&a),
        "digest" => Ok(json(&[(
            "digest",
            q(&stream_digest(a.num("size")?, a.num_or("seed", 1)?)),
        )])),
        "ingest" => cmd_ingest(&a).await,
        "read" => cmd_read(&a).await,
        "populate" => cmd_populate(&a).await,
        "info" => cmd_info(&a).await,
        "commit-latency" => cmd_commit_latency(&a).await,
        other => Err(format!("unknown command {other}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("content_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
