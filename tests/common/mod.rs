//! Shared support for the integration tests: a real `ipcs serve` process against the
//! real Kubo node that `integration/with-kubo.sh` starts (its API in IPCS_TEST_KUBO_API).
#![allow(dead_code)]

pub mod kubo_node;

use ipcs::server::client;
use ipcs::server::proto::admin::admin_client::AdminClient;
use ipcs::server::proto::admin::{BlobsRequest, StatsRequest};
use ipcs::server::proto::content_client::ContentClient;
use ipcs::server::proto::{WriteAction, WriteContentRequest, WriteContentResponse};
use rand::{RngCore, SeedableRng};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

pub fn kubo_api() -> String {
    std::env::var("IPCS_TEST_KUBO_API").expect(
        "IPCS_TEST_KUBO_API is not set: run the tests through `make test` or \
         `integration/with-kubo.sh cargo test`, which start a real Kubo node",
    )
}

/// The `ipfs --api` multiaddr of a Kubo API address (`unix:///p` or `http://h:port`).
pub fn kubo_multiaddr(api: &str) -> String {
    if let Some(path) = api.strip_prefix("unix://") {
        return format!("/unix{path}");
    }
    let hostport = api.trim_start_matches("http://");
    let (host, port) = hostport.rsplit_once(':').unwrap();
    format!("/ip4/{host}/tcp/{port}")
}

pub fn ipfs_bin() -> PathBuf {
    match std::env::var_os("IPFS_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/ipcs-tools/bin/ipfs"),
    }
}

/// Runs the real `ipfs` CLI against the test's Kubo node; returns stdout bytes.
pub fn ipfs(args: &[&str], stdin: Option<&Path>) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new(ipfs_bin());
    cmd.arg("--api")
        .arg(kubo_multiaddr(&kubo_api()))
        .args(args)
        .env("IPFS_TELEMETRY", "off");
    if let Some(p) = stdin {
        cmd.stdin(std::fs::File::open(p).unwrap());
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// The CID `ipfs add --only-hash` gives `data`, with every option that shapes the DAG
/// spelled out.
pub fn kubo_cid(data: &[u8], chunk: u32, links: u32) -> String {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), data).unwrap();
    let out = ipfs(
        &[
            "add",
            "--only-hash",
            "-Q",
            "--cid-version=1",
            "--raw-leaves=true",
            &format!("--chunker=size-{chunk}"),
            "--hash=sha2-256",
            "--trickle=false",
            &format!("--max-file-links={links}"),
            "--inline=false",
            tmp.path().to_str().unwrap(),
        ],
        None,
    )
    .unwrap();
    String::from_utf8(out).unwrap().trim().to_string()
}

/// The CID `ipfs add` gives `data` with ipcs's import options, without storing it.
pub fn expected_cid(data: &[u8]) -> String {
    kubo_cid(data, 262_144, 174)
}

/// Whether `cid` is among the Kubo node's recursive pins.
pub fn is_pinned(cid: &str) -> bool {
    let pins = ipfs(&["pin", "ls", "--type", "recursive", "-q"], None).unwrap();
    String::from_utf8(pins)
        .unwrap()
        .lines()
        .any(|l| l.trim() == cid)
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// A running `ipcs serve` with its own data dir and socket; killed when dropped.
pub struct Ipcs {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    kubo_api: String,
    extra_env: Vec<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
}

impl Ipcs {
    pub async fn start() -> Ipcs {
        Self::start_with(kubo_api(), vec![]).await
    }

    pub async fn start_with(kubo_api: String, extra_env: Vec<(String, String)>) -> Ipcs {
        let tmp = tempfile::Builder::new()
            .prefix("ipcs-test-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let mut me = Ipcs {
            child: None,
            socket: dir.join("run/ipcs.sock"),
            data: dir.join("data"),
            log: dir.join("ipcs.log"),
            dir,
            kubo_api,
            extra_env,
            _tmp: Some(tmp),
        };
        me.spawn().await;
        me
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipcs"));
        cmd.arg("serve")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--kubo-api")
            .arg(&self.kubo_api)
            .env_remove("IPCS_CONFIG")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let _ = std::fs::remove_file(&self.socket);
        self.child = Some(cmd.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.socket.exists() && client::connect(&self.socket).await.is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ipcs exited with {status}: {}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ipcs did not listen within 30s: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown path runs, like a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub async fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(client::connect(&self.socket).await.unwrap())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(client::connect(&self.socket).await.unwrap())
    }

    /// digest → CID of every committed blob, from ipcs's admin API.
    /// Blobs committed whose import into Kubo is still to come (`ipcs status`).
    pub async fn pending_imports(&self) -> u64 {
        let s = self.admin().await.stats(StatsRequest {}).await.unwrap();
        s.into_inner().pending_imports
    }

    /// Waits (at most 60 s) until every committed blob is in Kubo: commits answer before
    /// Kubo's import by default, so a test that looks into Kubo waits for it first.
    pub async fn settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = self.pending_imports().await;
            if n == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{n} imports still pending after 60 s: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// digest → CID of every blob, once every import has finished.
    pub async fn cids(&self) -> HashMap<String, String> {
        self.settled().await;
        let mut s = self
            .admin()
            .await
            .blobs(BlobsRequest { filters: vec![] })
            .await
            .unwrap()
            .into_inner();
        let mut out = HashMap::new();
        while let Some(batch) = s.message().await.unwrap() {
            for b in batch.blobs {
                out.insert(b.digest, b.cid);
            }
        }
        out
    }
}

impl Drop for Ipcs {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- ipcs log ---\n{}", self.log_text());
        }
    }
}

/// One Write stream driven message by message, as containerd's proxy writer does.
pub struct WriteSession {
    tx: Option<mpsc::Sender<WriteContentRequest>>,
    rx: Streaming<WriteContentResponse>,
}

impl WriteSession {
    pub async fn open(
        c: &mut ContentClient<Channel>,
        first: WriteContentRequest,
    ) -> Result<(WriteSession, WriteContentResponse), Status> {
        let (tx, rx) = mpsc::channel(4);
        tx.send(first).await.unwrap();
        let mut rx = c.write(ReceiverStream::new(rx)).await?.into_inner();
        let resp = match rx.message().await? {
            Some(r) => r,
            None => return Err(Status::unknown("stream ended without response")),
        };
        Ok((WriteSession { tx: Some(tx), rx }, resp))
    }

    pub async fn send(&mut self, req: WriteContentRequest) -> Result<WriteContentResponse, Status> {
        self.tx
            .as_ref()
            .expect("session closed")
            .send(req)
            .await
            .map_err(|_| Status::unknown("server closed the stream"))?;
        match self.rx.message().await? {
            Some(r) => Ok(r),
            None => Err(Status::unknown("stream ended without response")),
        }
    }

    /// Half-closes like containerd's writer Close.
    pub fn close(mut self) {
        self.tx.take();
    }

    /// A Write stream left open with a few bytes written, as a pull still writing another
    /// layer: imports after the commit wait while it lives (they yield to the pull, at most
    /// 10 s after their commit). End it with `close_and_drain`.
    pub async fn holding_imports(c: &mut ContentClient<Channel>) -> WriteSession {
        let (mut busy, _) = WriteSession::open(c, stat("still-writing", 0, ""))
            .await
            .unwrap();
        busy.send(write(0, b"partial")).await.unwrap();
        busy
    }

    /// Half-closes and waits until the server ends the stream, so its ref is free again.
    pub async fn close_and_drain(mut self) {
        self.tx.take();
        while let Ok(Some(_)) = self.rx.message().await {}
    }
}

pub fn stat(r: &str, total: i64, expected: &str) -> WriteContentRequest {
    WriteContentRequest {
        action: WriteAction::Stat as i32,
        r#ref: r.into(),
        total,
        expected: expected.into(),
        ..Default::default()
    }
}

pub fn write(offset: i64, data: &[u8]) -> WriteContentRequest {
    WriteContentRequest {
        action: WriteAction::Write as i32,
        offset,
        data: data.to_vec(),
        ..Default::default()
    }
}

pub fn commit(offset: i64, total: i64, expected: &str) -> WriteContentRequest {
    WriteContentRequest {
        action: WriteAction::Commit as i32,
        offset,
        total,
        expected: expected.into(),
        ..Default::default()
    }
}

/// Writes `data` under `r` in 1 MiB messages and commits it with its digest.
pub async fn put_blob(
    c: &mut ContentClient<Channel>,
    r: &str,
    data: &[u8],
) -> Result<String, Status> {
    let d = sha256_digest(data);
    let (mut s, _) = WriteSession::open(c, stat(r, data.len() as i64, "")).await?;
    let mut off = 0usize;
    for chunk in data.chunks(1 << 20) {
        let resp = s.send(write(off as i64, chunk)).await?;
        off += chunk.len();
        assert_eq!(resp.offset as usize, off);
    }
    let resp = s.send(commit(off as i64, data.len() as i64, &d)).await?;
    assert_eq!(resp.digest, d);
    s.close();
    Ok(d)
}

/// Reads a blob range through the Read RPC and concatenates the chunks.
pub async fn read_range(
    c: &mut ContentClient<Channel>,
    d: &str,
    offset: i64,
    size: i64,
) -> Result<Vec<u8>, Status> {
    let mut s = c
        .read(ipcs::server::proto::ReadContentRequest {
            digest: d.into(),
            offset,
            size,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        assert_eq!(
            m.offset as usize,
            offset as usize + out.len(),
            "chunk offsets are contiguous"
        );
        out.extend_from_slice(&m.data);
    }
    Ok(out)
}

/// GET `path` from an ipcs metrics endpoint on a unix socket: (HTTP status, body).
pub async fn metrics_get(sock: &Path, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(sock).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_string())
}

/// The value of `series` (name{labels} as exported) in Prometheus text, 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
