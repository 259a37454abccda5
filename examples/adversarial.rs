//! Adversarial client for ipcs's content socket: thousands of malformed, hostile or
//! pathological requests (path-like refs and digests, absurd offsets and totals, MiBs of
//! labels, garbage filters, interleaved and abandoned Write streams, oversized messages).
//! Each scenario names the gRPC codes containerd's contract allows for it; any other
//! outcome (Unknown, Internal, a stream that ends without a status, a request that does not
//! finish within its deadline) is a failure. Prints a table of outcomes by code and exits
//! non-zero on failures. Used by integration/adversarial.sh, which checks the rest (no
//! panic, no file outside the data dir, peak RSS).
//!
//!   adversarial --socket P [--count N] [--concurrency C] [--seed S] [--flood N]
use ipcs::server::proto::*;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

/// Longest any single request may take (lock waits are ~1 s).
const DEADLINE: Duration = Duration::from_secs(20);
const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[path = "support/shared.rs"]
mod shared;
use shared::{connect, msg, read, sha, Client, Rng};

fn odd_digest(r: &mut Rng) -> String {
    let hex64 = "a".repeat(64);
    let fixed = [
        String::new(),
        "sha256:".into(),
        "sha256:xyz".into(),
        format!("SHA256:{}", &EMPTY[7..]),
        format!("sha256:{}", EMPTY[7..].to_uppercase()),
        "md5:d41d8cd98f00b204e9800998ecf8427e".into(),
        format!("sha512:{hex64}"),
        format!("sha384:{hex64}"),
        format!("blake3:{hex64}"),
        "sha256:../../../../etc/passwd".into(),
        "../../etc/passwd".into(),
        "/etc/passwd".into(),
        format!("sha256:{}/..", &hex64[..61]),
        format!("sha256:{hex64}\0"),
        format!("sha256:{}", "a".repeat(65)),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha256:{}", "é".repeat(32)),
        format!("sha256:{}", "0".repeat(100_000)),
        ":".repeat(1000),
        format!("sha256:{hex64}"),
        format!("sha512:{}", "b".repeat(128)),
        EMPTY.into(),
    ];
    r.pick(&fixed).clone()
}

fn odd_ref(r: &mut Rng, worker: usize) -> String {
    let fixed = [
        "../../x".to_string(),
        "/etc/passwd".into(),
        "..".into(),
        ".".into(),
        "a\0b".into(),
        "\0".into(),
        "x".repeat(5000),
        "y".repeat(4096),
        "日本語/../../etc".into(),
        "\u{202e}evil".into(),
        "a/b/c/../../../../tmp/ipcs-escape".into(),
        "%2e%2e%2f%2e%2e%2fescape".into(),
        "C:\\windows\\system32".into(),
        "ref with\nnewline".into(),
        "default/1/layer-sha256:abc".into(),
        "~/.ssh/authorized_keys".into(),
        "//double//slash".into(),
    ];
    // Most refs are per worker so workers rarely contend by accident.
    format!("{}#{worker}", r.pick(&fixed))
}

fn odd_offset(r: &mut Rng, cur: i64) -> i64 {
    *r.pick(&[
        0,
        cur,
        cur + 1,
        cur - 1,
        -1,
        i64::MIN,
        i64::MAX,
        i64::MAX - 1,
        u64::MAX as i64,
        (u64::MAX - 1) as i64,
        1 << 40,
    ])
}

fn odd_filter(r: &mut Rng) -> Vec<String> {
    let fixed: Vec<String> = vec![
        "".into(),
        "labels.a==".into(),
        "labels.a<>1".into(),
        "labels.a~=(".into(),
        "labels.\"a".into(),
        "==".into(),
        ",,,,".into(),
        "digest~=/[/".into(),
        format!("labels.a~={}", "(".repeat(10_000)),
        format!("labels.a~={}a{}", "(".repeat(5000), ")".repeat(5000)),
        format!("labels.a~=/{}/", "(a|b)*".repeat(20_000)),
        "labels.a~=/a{1000}{1000}{1000}/".into(),
        format!("labels.{}", "a.".repeat(50_000)),
        format!("ref=={}", "\"".repeat(10_000)),
        "ref~=|.*|".into(),
        "labels.\"a.b\"==\"\\u0000\"".into(),
        "labels.a==\"\\xff\\uD800\"".into(),
        format!("digest=={}", ",".repeat(200_000)),
        "digest".into(),
    ];
    let n = 1 + r.below(3) as usize;
    (0..n).map(|_| r.pick(&fixed).clone()).collect()
}

fn big_labels(r: &mut Rng) -> HashMap<String, String> {
    match r.below(4) {
        0 => HashMap::from([("k".into(), "v".repeat(2 << 20))]),
        1 => (0..3000)
            .map(|i| (format!("label-{i}"), "x".repeat(1000)))
            .collect(),
        2 => HashMap::from([("k".repeat(4097), String::new())]),
        _ => HashMap::from([(String::new(), "empty key".into())]),
    }
}

/// One Write stream driven message by message.
struct Session {
    tx: Option<mpsc::Sender<WriteContentRequest>>,
    rx: tonic::Streaming<WriteContentResponse>,
}

impl Session {
    async fn open(
        c: &mut Client,
        first: WriteContentRequest,
    ) -> Result<(Session, WriteContentResponse), Status> {
        let (tx, rx) = mpsc::channel(2);
        tx.send(first).await.ok();
        let mut rx = c.write(ReceiverStream::new(rx)).await?.into_inner();
        let resp = rx
            .message()
            .await?
            .ok_or_else(|| Status::new(Code::Unknown, "EOF: stream ended without a status"))?;
        Ok((Session { tx: Some(tx), rx }, resp))
    }

    async fn send(&mut self, m: WriteContentRequest) -> Result<WriteContentResponse, Status> {
        if let Some(tx) = &self.tx {
            if tx.send(m).await.is_err() {
                return Err(Status::new(
                    Code::Unknown,
                    "EOF: server dropped the request stream",
                ));
            }
        }
        self.rx
            .message()
            .await?
            .ok_or_else(|| Status::new(Code::Unknown, "EOF: stream ended without a status"))
    }
}

/// Outcome tally: (scenario, code) -> count, plus failures with a sample message.
#[derive(Default)]
struct Tally {
    by_code: BTreeMap<String, u64>,
    by_scenario: BTreeMap<(String, String), u64>,
    failures: BTreeMap<String, (u64, String)>,
    requests: u64,
}

struct Ctx {
    tally: Mutex<Tally>,
    known: String,
    known_data: Vec<u8>,
}

impl Ctx {
    fn record(&self, scenario: &str, allowed: &[Code], res: Result<(), Status>) {
        let (code, message) = match &res {
            Ok(()) => (Code::Ok, String::new()),
            Err(s) => (s.code(), s.message().chars().take(200).collect()),
        };
        let mut t = self.tally.lock().unwrap();
        t.requests += 1;
        *t.by_code.entry(format!("{code:?}")).or_default() += 1;
        *t.by_scenario
            .entry((scenario.to_string(), format!("{code:?}")))
            .or_default() += 1;
        if !allowed.contains(&code) {
            let e = t
                .failures
                .entry(format!("{scenario}: {code:?}"))
                .or_insert((0, message));
            e.0 += 1;
        }
    }
}

async fn timed<T>(f: impl std::future::Future<Output = Result<T, Status>>) -> Result<T, Status> {
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(r) => r,
        Err(_) => Err(Status::new(
            Code::Unknown,
            "HANG: no answer within the deadline",
        )),
    }
}

use Code::{
    AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, OutOfRange, ResourceExhausted,
    Unavailable, Unknown,
};
const OK: Code = Code::Ok;

async fn scenario(ctx: &Ctx, c: &mut Client, r: &mut Rng, worker: usize, i: u64) {
    let kind = i % 14;
    match kind {
        0 => {
            let d = odd_digest(r);
            let res = timed(c.info(InfoRequest { digest: d })).await.map(|_| ());
            ctx.record("info odd digest", &[InvalidArgument, NotFound, OK], res);
        }
        1 => {
            let d = odd_digest(r);
            let res = timed(c.delete(DeleteContentRequest { digest: d }))
                .await
                .map(|_| ());
            ctx.record("delete odd digest", &[InvalidArgument, NotFound], res);
        }
        2 => {
            let digest = if r.below(2) == 0 {
                ctx.known.clone()
            } else {
                odd_digest(r)
            };
            let labels = if r.below(3) == 0 {
                big_labels(r)
            } else {
                HashMap::from([("ok".to_string(), "1".to_string())])
            };
            let paths = r
                .pick(&[
                    vec![],
                    vec!["labels".to_string()],
                    vec!["labels.ok".into()],
                    vec!["size".into()],
                    vec!["labels.".into(), "digest".into()],
                    vec!["../labels".into()],
                ])
                .clone();
            let req = UpdateRequest {
                info: Some(Info {
                    digest,
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            };
            let res = timed(c.update(req)).await.map(|_| ());
            ctx.record("update odd", &[InvalidArgument, NotFound, OK], res);
        }
        3 => {
            let size = ctx.known_data.len() as i64;
            let offset = *r.pick(&[
                0,
                1,
                size - 1,
                size,
                size + 1,
                -1,
                i64::MIN,
                i64::MAX,
                u64::MAX as i64,
            ]);
            let len = *r.pick(&[0, 1, 32768, -1, i64::MIN, i64::MAX, size]);
            let digest = ctx.known.clone();
            let want = if offset < 0 {
                Some(InvalidArgument)
            } else if offset > size {
                Some(OutOfRange)
            } else {
                None
            };
            let res = timed(async {
                let mut s = c
                    .read(ReadContentRequest {
                        digest,
                        offset,
                        size: len,
                    })
                    .await?
                    .into_inner();
                let mut got = Vec::new();
                while let Some(m) = s.message().await? {
                    if got.len() > ctx.known_data.len() {
                        break;
                    }
                    got.extend_from_slice(&m.data);
                }
                let start = offset as usize;
                let end = if len <= 0 {
                    size as usize
                } else {
                    (start as u64).saturating_add(len as u64).min(size as u64) as usize
                };
                if got != ctx.known_data[start..end] {
                    return Err(Status::new(
                        Unknown,
                        format!("WRONG BYTES for read @{offset}+{len}"),
                    ));
                }
                Ok(())
            })
            .await;
            let allowed: &[Code] = match want {
                Some(c) => &[c][..],
                None => &[OK][..],
            };
            ctx.record("read odd offset/size", allowed, res.clone());
            let d = odd_digest(r);
            let res = timed(async {
                let mut s = c
                    .read(ReadContentRequest {
                        digest: d,
                        offset,
                        size: len,
                    })
                    .await?
                    .into_inner();
                while s.message().await?.is_some() {}
                Ok(())
            })
            .await;
            ctx.record(
                "read odd digest",
                &[InvalidArgument, NotFound, OutOfRange, OK],
                res,
            );
        }
        4 => {
            let rf = odd_ref(r, worker);
            let res = timed(c.status(StatusRequest { r#ref: rf.clone() }))
                .await
                .map(|_| ());
            ctx.record("status odd ref", &[NotFound, InvalidArgument, OK], res);
            let res = timed(c.abort(AbortRequest { r#ref: rf })).await.map(|_| ());
            ctx.record("abort odd ref", &[NotFound, InvalidArgument, OK], res);
        }
        5 => {
            let filters = odd_filter(r);
            let res = timed(async {
                let mut s = c
                    .list(ListContentRequest {
                        filters: filters.clone(),
                    })
                    .await?
                    .into_inner();
                while s.message().await?.is_some() {}
                Ok(())
            })
            .await;
            ctx.record("list garbage filter", &[InvalidArgument, OK], res);
            let res = timed(c.list_statuses(ListStatusesRequest { filters }))
                .await
                .map(|_| ());
            ctx.record("list_statuses garbage filter", &[InvalidArgument, OK], res);
        }
        6..=8 => {
            // A Write stream on a hostile ref with hostile offsets, totals and digests.
            let rf = odd_ref(r, worker);
            let total = *r.pick(&[0, 5, 100, -1, i64::MAX, i64::MIN]);
            let res = timed(Session::open(c, msg(WriteAction::Stat, &rf, 0, total, ""))).await;
            let mut s = match res {
                Ok((s, _)) => {
                    ctx.record("write open odd ref", &[OK], Ok(()));
                    s
                }
                Err(e) => {
                    ctx.record("write open odd ref", &[InvalidArgument], Err(e));
                    return;
                }
            };
            let mut cur = 0i64;
            for _ in 0..1 + r.below(4) {
                let data = vec![b'x'; r.below(200) as usize];
                let offset = odd_offset(r, cur);
                let mut m = msg(WriteAction::Write, "", offset, 0, "");
                m.data = data.clone();
                let res = timed(s.send(m)).await;
                match res {
                    Ok(resp) => {
                        cur = resp.offset;
                        ctx.record("write odd offset", &[OK], Ok(()));
                    }
                    Err(e) => {
                        ctx.record("write odd offset", &[InvalidArgument, OutOfRange], Err(e));
                        return;
                    }
                }
            }
            let expected = if r.below(2) == 0 {
                odd_digest(r)
            } else {
                sha(b"not what was written")
            };
            let size = *r.pick(&[cur, cur + 1, 0, -1, i64::MAX]);
            let mut m = msg(WriteAction::Commit, "", cur, size, &expected);
            if r.below(4) == 0 {
                m.labels = big_labels(r);
            }
            if r.below(10) == 0 {
                m.action = 99;
            }
            let res = timed(s.send(m)).await.map(|_| ());
            ctx.record(
                "commit wrong digest/size",
                &[
                    InvalidArgument,
                    FailedPrecondition,
                    AlreadyExists,
                    OutOfRange,
                    OK,
                ],
                res,
            );
            drop(s);
            if r.below(2) == 0 {
                let res = timed(c.abort(AbortRequest { r#ref: rf })).await.map(|_| ());
                ctx.record("abort after write", &[OK, NotFound, Unavailable], res);
            }
        }
        9 => {
            // Two streams on one ref: one holds it, the other waits and gets UNAVAILABLE.
            let rf = format!("interleaved-{worker}");
            let a = timed(Session::open(c, msg(WriteAction::Stat, &rf, 0, 0, ""))).await;
            let mut c2 = c.clone();
            let b = timed(Session::open(
                &mut c2,
                msg(WriteAction::Stat, &rf, 0, 0, ""),
            ))
            .await;
            ctx.record(
                "interleaved first",
                &[OK],
                a.as_ref().map(|_| ()).map_err(|e| e.clone()),
            );
            ctx.record("interleaved second", &[Unavailable], b.map(|_| ()));
            if let Ok((mut s, _)) = a {
                let mut m = msg(WriteAction::Write, "", 0, 0, "");
                m.data = b"abc".to_vec();
                let res = timed(s.send(m)).await.map(|_| ());
                ctx.record("interleaved write", &[OK], res);
            }
        }
        10 => {
            // Abandoned mid-way: no half-close, no commit; the ref must come free again.
            let rf = format!("abandoned-{worker}");
            if let Ok((mut s, _)) = timed(Session::open(
                c,
                msg(WriteAction::Stat, &rf, 0, 1 << 20, ""),
            ))
            .await
            {
                let mut m = msg(WriteAction::Write, "", 0, 0, "");
                m.data = vec![1u8; 4096];
                let _ = timed(s.send(m)).await;
                drop(s);
            }
            let res = timed(Session::open(c, msg(WriteAction::Stat, &rf, 0, 0, "")))
                .await
                .map(|_| ());
            ctx.record("reopen abandoned ref", &[OK], res);
        }
        11 => {
            let huge = i % 700 == 11;
            let rf = format!("bigmsg-{worker}");
            let res = timed(async {
                let (mut s, _) = Session::open(c, msg(WriteAction::Stat, &rf, 0, 0, "")).await?;
                let mut m = msg(WriteAction::Write, "", 0, 0, "");
                // Over max_message_bytes (32 MiB) only now and then: it costs real memory.
                m.data = vec![0u8; if huge { (32 << 20) + 1 } else { 1 << 20 }];
                s.send(m).await.map(|_| ())
            })
            .await;
            if huge {
                ctx.record("message over limit", &[OutOfRange, ResourceExhausted], res);
            } else {
                ctx.record("1 MiB write", &[OK], res);
            }
        }
        12 => {
            // Lying totals: announce one size, write another, commit with the real digest.
            let rf = format!("liar-{worker}");
            let data = vec![b'z'; 1 + r.below(1000) as usize];
            let claimed = *r.pick(&[1, data.len() as i64 + 1, data.len() as i64 * 1000, i64::MAX]);
            let res = timed(async {
                let (mut s, _) =
                    Session::open(c, msg(WriteAction::Stat, &rf, 0, claimed, "")).await?;
                let mut m = msg(WriteAction::Write, "", 0, 0, "");
                m.data = data.clone();
                s.send(m).await?;
                s.send(msg(
                    WriteAction::Commit,
                    "",
                    data.len() as i64,
                    claimed,
                    &sha(&data),
                ))
                .await
                .map(|_| ())
            })
            .await;
            ctx.record(
                "commit with lying total",
                &[FailedPrecondition, AlreadyExists],
                res,
            );
        }
        _ => {
            // Expected digest of something that exists on the very first message.
            let rf = format!("exists-{worker}");
            let res = timed(Session::open(
                c,
                msg(WriteAction::Stat, &rf, 0, 0, &ctx.known),
            ))
            .await
            .map(|_| ());
            ctx.record("open with existing expected", &[AlreadyExists], res);
        }
    }
}

/// More Write streams held open at once than max_open_ingests allows (spread over 10
/// connections: HTTP/2 caps concurrent streams per connection at 200). The excess must
/// get RESOURCE_EXHAUSTED naming the key; once the streams are gone, Abort (GC) cleans up.
async fn flood(ctx: &Ctx, conns: &mut [Client], n: usize, seed: u64) {
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..n {
        let c = &mut conns[i % conns.len()];
        let rf = format!("flood-{seed}-{i}");
        match timed(Session::open(c, msg(WriteAction::Stat, &rf, 0, 0, ""))).await {
            Ok((s, _)) => {
                ctx.record("flood: open", &[OK], Ok(()));
                held.push((s, rf));
            }
            Err(e) => {
                if e.code() == ResourceExhausted {
                    refused += 1;
                }
                let res = if e.message().contains("max_open_ingests") {
                    Err(e)
                } else {
                    Err(Status::new(Unknown, format!("limit not named: {e:?}")))
                };
                ctx.record("flood: open", &[ResourceExhausted], res);
            }
        }
    }
    println!(
        "flood: {} Write streams held at once, {refused} refused with RESOURCE_EXHAUSTED",
        held.len()
    );
    let refs: Vec<String> = held.iter().map(|(_, r)| r.clone()).collect();
    drop(held);
    for (i, rf) in refs.into_iter().enumerate() {
        let c = &mut conns[i % conns.len()];
        let res = timed(c.abort(AbortRequest { r#ref: rf })).await.map(|_| ());
        ctx.record("flood: abort", &[OK], res);
    }
}

async fn put(c: &mut Client, rf: &str, data: &[u8]) -> Result<String, Status> {
    let d = sha(data);
    let (mut s, _) = Session::open(c, msg(WriteAction::Stat, rf, 0, data.len() as i64, "")).await?;
    let mut off = 0;
    for chunk in data.chunks(1 << 20) {
        let mut m = msg(WriteAction::Write, "", off, 0, "");
        m.data = chunk.to_vec();
        off = s.send(m).await?.offset;
    }
    let resp = s
        .send(msg(WriteAction::Commit, "", off, data.len() as i64, &d))
        .await?;
    if resp.digest != d {
        return Err(Status::new(
            Unknown,
            format!("commit answered digest {}", resp.digest),
        ));
    }
    Ok(d)
}

async fn run() -> Result<bool, String> {
    let mut args: HashMap<String, String> = HashMap::new();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let k = pair[0]
            .strip_prefix("--")
            .ok_or(format!("unexpected {}", pair[0]))?;
        let v = pair.get(1).ok_or(format!("--{k} needs a value"))?;
        args.insert(k.to_string(), v.clone());
    }
    let socket = PathBuf::from(args.get("socket").ok_or("--socket is required")?);
    let num = |k: &str, d: u64| {
        args.get(k)
            .map(|v| v.parse::<u64>().map_err(|e| format!("--{k}: {e}")))
            .unwrap_or(Ok(d))
    };
    let count = num("count", 12_000)?;
    let conc = num("concurrency", 16)?.max(1);
    let seed = num("seed", 1)?;

    let mut c = connect(&socket).await?;
    let mut known_data = vec![0u8; 300_000];
    let mut rng = Rng(seed);
    known_data.iter_mut().for_each(|b| *b = rng.next() as u8);
    let known = match put(&mut c, &format!("adversarial-known-{seed}"), &known_data).await {
        Ok(d) => d,
        Err(e) if e.code() == AlreadyExists => sha(&known_data),
        Err(e) => return Err(format!("seeding a blob: {e:?}")),
    };
    let ctx = Arc::new(Ctx {
        tally: Mutex::new(Tally::default()),
        known,
        known_data,
    });
    let flood_n = num("flood", 1200)? as usize;
    if flood_n > 0 {
        let mut conns = Vec::new();
        for _ in 0..10 {
            conns.push(connect(&socket).await?);
        }
        flood(&ctx, &mut conns, flood_n, seed).await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..conc {
        let ctx = ctx.clone();
        let mut c = connect(&socket).await?;
        tasks.push(tokio::spawn(async move {
            let mut r = Rng(seed ^ (w + 1).wrapping_mul(0x1234_5678_9abc));
            let mut i = w;
            while i < count {
                scenario(&ctx, &mut c, &mut r, w as usize, i).await;
                i += conc;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| format!("worker panicked: {e}"))?;
    }
    let secs = started.elapsed().as_secs_f64();

    // The store must still work afterwards.
    let mut c = connect(&socket).await?;
    let mut data = vec![0u8; 700_000];
    data.iter_mut().for_each(|b| *b = rng.next() as u8);
    let roundtrip = match put(&mut c, &format!("after-adversarial-{seed}"), &data).await {
        Ok(d) => read(&mut c, &d, 0, 0)
            .await
            .map(|got| got == data)
            .map_err(|e| format!("{e:?}")),
        Err(e) => Err(format!("{e:?}")),
    };

    let t = ctx.tally.lock().unwrap();
    println!(
        "adversarial: {} requests in {secs:.1}s ({} scenarios, concurrency {conc})",
        t.requests, count
    );
    println!("\n{:<32} {:>8}", "code", "count");
    for (code, n) in &t.by_code {
        println!("{code:<32} {n:>8}");
    }
    println!("\n{:<34} {:<20} {:>7}", "scenario", "code", "count");
    for ((s, code), n) in &t.by_scenario {
        println!("{s:<34} {code:<20} {n:>7}");
    }
    let mut ok = true;
    if !t.failures.is_empty() {
        ok = false;
        println!("\nUNEXPECTED OUTCOMES:");
        for (k, (n, m)) in &t.failures {
            println!("  {k} x{n}: {m}");
        }
    }
    match roundtrip {
        Ok(true) => println!("\nround trip after the run: ok"),
        Ok(false) => {
            ok = false;
            println!("\nround trip after the run: WRONG BYTES")
        }
        Err(e) => {
            ok = false;
            println!("\nround trip after the run: FAILED {e}")
        }
    }
    if t.requests < 10_000 {
        println!("only {} requests (< 10000)", t.requests);
        ok = false;
    }
    println!("ADVERSARIAL_REQUESTS={}", t.requests);
    Ok(ok)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("adversarial: {e}");
            ExitCode::from(2)
        }
    }
}
