//! In-flight entries against real HTTP sources on loopback that cut, stall or lie.
use super::*;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy)]
enum Mode {
    Full,
    /// Closes the connection after this many body bytes.
    CutAt(usize),
    /// Sends the headers, then nothing.
    Stall,
    /// Sends this many body bytes, then nothing.
    StallAt(usize),
    /// Serves other bytes of the same length.
    Wrong,
}

/// What a source saw: one (range start, had the peer header) per request.
type Seen = Arc<Mutex<Vec<(u64, bool)>>>;

async fn source(blob: Arc<Vec<u8>>, mode: Mode) -> (String, Seen) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen: Seen = Default::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            let (blob, s) = (blob.clone(), s.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                let off: u64 = head
                    .lines()
                    .find_map(|l| l.strip_prefix("range: bytes="))
                    .and_then(|r| r.trim().trim_end_matches('-').parse().ok())
                    .unwrap_or(0);
                s.lock()
                    .unwrap()
                    .push((off, head.contains("x-ipcs-peer: 1")));
                let len = blob.len() as u64;
                let status = if off > 0 {
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {off}-{}/{len}\r\n",
                        len - 1
                    )
                } else {
                    "HTTP/1.1 200 OK\r\n".to_string()
                };
                let hdr = format!(
                    "{status}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    len - off
                );
                c.write_all(hdr.as_bytes()).await.unwrap();
                let body: Vec<u8> = match mode {
                    Mode::Wrong => blob[off as usize..].iter().map(|b| b ^ 1).collect(),
                    _ => blob[off as usize..].to_vec(),
                };
                match mode {
                    Mode::Full | Mode::Wrong => {
                        let _ = c.write_all(&body).await;
                    }
                    Mode::CutAt(n) => {
                        let _ = c.write_all(&body[..n]).await;
                        let _ = c.flush().await;
                    }
                    Mode::Stall => tokio::time::sleep(Duration::from_secs(3600)).await,
                    Mode::StallAt(n) => {
                        let _ = c.write_all(&body[..n.min(body.len())]).await;
                        let _ = c.flush().await;
                        tokio::time::sleep(Duration::from_secs(3600)).await
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn blob() -> (Arc<Vec<u8>>, Digest) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut h = Digester::new(crate::digest::Algorithm::Sha256);
    h.update(&data);
    (Arc::new(data), h.digest())
}

fn inflight(dir: &std::path::Path, stall: Duration) -> Arc<Inflight> {
    inflight_counted(dir, stall, Metrics::new())
}

fn inflight_counted(dir: &std::path::Path, stall: Duration, m: Metrics) -> Arc<Inflight> {
    let secret = auth::load_or_create(dir).unwrap();
    let tuning = Tuning {
        stall,
        min_rate: 1 << 20,
        keep: Duration::ZERO,
    };
    Arc::new(Inflight::new(dir.join("inflight"), &secret, vec![], tuning, m).unwrap())
}

async fn read_all(e: Arc<Entry>) -> (Vec<u8>, Option<std::io::Error>) {
    let mut got = Vec::new();
    let mut s = std::pin::pin!(e.read_from(0, Duration::from_secs(20)));
    while let Some(c) = s.next().await {
        match c {
            Ok(b) => got.extend_from_slice(&b),
            Err(err) => return (got, Some(err)),
        }
    }
    (got, None)
}

/// The leader dies after 100 000 bytes: the next source is asked from exactly there
/// (a Range request, not the whole blob again) and the reader gets the whole blob.
#[tokio::test]
async fn a_cut_source_is_resumed_at_the_next_from_the_first_missing_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (data, d) = blob();
    let (leader, leader_seen) = source(data.clone(), Mode::CutAt(100_000)).await;
    let (registry, registry_seen) = source(data.clone(), Mode::Full).await;
    let m = Metrics::new();
    let inf = inflight_counted(dir.path(), Duration::from_secs(5), m.clone());
    let sources = vec![Source::Peer(format!("http://{leader}")), Source::Registry];
    let e = inf.get_or_start(&d, &registry, "x", sources).await.unwrap();
    let (got, err) = read_all(e.clone()).await;
    assert!(err.is_none(), "{err:?}");
    assert!(got == *data, "bytes differ");
    assert_eq!(*leader_seen.lock().unwrap(), vec![(0, true)]);
    assert_eq!(*registry_seen.lock().unwrap(), vec![(100_000, false)]);
    assert_eq!(e.state().end, End::Verified);
    // The hand-over, as the swarm tests read it: one peer given up, one takeover of this
    // blob, resumed at the first missing byte.
    let t = m.encode();
    let has = |line: &str| t.lines().any(|l| l == line);
    assert!(
        has(r#"ipcs_inflight_abandoned_total{source="peer"} 1"#),
        "{t}"
    );
    assert!(
        !t.contains(r#"ipcs_inflight_abandoned_total{source="registry"}"#),
        "{t}"
    );
    assert!(
        has(&format!(
            r#"ipcs_inflight_takeovers_total{{digest="{d}"}} 1"#
        )),
        "{t}"
    );
    assert!(
        has(&format!(
            r#"ipcs_inflight_takeover_from_bytes{{digest="{d}"}} 100000"#
        )),
        "{t}"
    );
}

/// A source that answers and then sends nothing is abandoned after the stall time.
#[tokio::test]
async fn a_stalled_source_is_abandoned_after_the_stall_time() {
    let dir = tempfile::tempdir().unwrap();
    let (data, d) = blob();
    let (leader, _) = source(data.clone(), Mode::Stall).await;
    let (registry, registry_seen) = source(data.clone(), Mode::Full).await;
    let inf = inflight(dir.path(), Duration::from_secs(1));
    let sources = vec![Source::Peer(format!("http://{leader}")), Source::Registry];
    let t0 = Instant::now();
    let e = inf.get_or_start(&d, &registry, "x", sources).await.unwrap();
    let (got, err) = read_all(e).await;
    assert!(err.is_none(), "{err:?}");
    assert!(got == *data);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(*registry_seen.lock().unwrap(), vec![(0, false)]);
}

/// While the registry fills an entry (this node leads it) its metrics show the digest,
/// the source and the bytes so far; the series is gone once that source is done.
#[tokio::test]
async fn the_source_filling_an_entry_is_in_the_metrics_while_it_fills() {
    let dir = tempfile::tempdir().unwrap();
    let (data, d) = blob();
    let (registry, _) = source(data.clone(), Mode::StallAt(50_000)).await;
    let m = Metrics::new();
    let inf = inflight_counted(dir.path(), Duration::from_millis(700), m.clone());
    let series = format!(r#"ipcs_inflight_written_bytes{{digest="{d}",source="registry"}} "#);
    let e = inf
        .get_or_start(&d, &registry, "x", vec![Source::Registry])
        .await
        .unwrap();
    let mut seen = None;
    for _ in 0..200 {
        let t = m.encode();
        seen = t
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.parse::<u64>().ok());
        if seen == Some(50_000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, Some(50_000), "{}", m.encode());
    // Each renewed request brings 50 000 more bytes, so the registry is asked until done.
    let (got, err) = read_all(e).await;
    assert!(err.is_none() && got == *data, "{err:?}");
    assert!(!m.encode().contains(&d.to_string()), "{}", m.encode());
}

/// Bytes that do not hash to the digest: the reader gets an error and never the last
/// byte, so nothing downstream can complete a wrong blob.
#[tokio::test]
async fn wrong_bytes_never_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (data, d) = blob();
    let (registry, _) = source(data.clone(), Mode::Wrong).await;
    let inf = inflight(dir.path(), Duration::from_secs(5));
    let e = inf
        .get_or_start(&d, &registry, "x", vec![Source::Registry])
        .await
        .unwrap();
    let (got, err) = read_all(e.clone()).await;
    assert!(err.unwrap().to_string().contains("hash"));
    assert!(got.len() < data.len());
    assert!(matches!(e.state().end, End::Failed(_)));
    // Failed entries are forgotten: the next request starts afresh.
    let (good, _) = source(data.clone(), Mode::Full).await;
    let again = inf
        .get_or_start(&d, &good, "x", vec![Source::Registry])
        .await
        .unwrap();
    assert!(!Arc::ptr_eq(&again, &e));
    assert!(read_all(again).await.0 == *data);
}

#[test]
fn the_last_byte_waits_for_verification() {
    let st = |written, end| State {
        size: Some(10),
        written,
        end,
    };
    assert_eq!(readable(&st(4, End::Running)), 4);
    assert_eq!(readable(&st(10, End::Running)), 9);
    assert_eq!(readable(&st(10, End::Failed("x".into()))), 9);
    assert_eq!(readable(&st(10, End::Verified)), 10);
    let unknown = State {
        size: None,
        written: 0,
        end: End::Running,
    };
    assert_eq!(readable(&unknown), 0);
}

#[test]
fn content_range_is_parsed() {
    assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, Some(10))));
    assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
    assert_eq!(parse_content_range("items 5-9/10"), None);
}
