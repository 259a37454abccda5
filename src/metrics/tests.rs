use super::http::{Listen, ReadyCheck};
use super::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The value of the sample line starting with `series ` (name and labels as exported).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn counts_appear_under_their_names_and_labels() {
    let m = Metrics::new();
    m.rpc("Read", "OK", Duration::from_millis(3));
    m.rpc("Read", "OK", Duration::from_millis(5));
    m.rpc("Info", "NotFound", Duration::from_millis(1));
    m.served(Source::Peers, 1000);
    m.served(Source::Cache, 10);
    m.served(Source::Cache, 0);
    m.ingested(77);
    m.adoption(Adoption::RefusedSize);
    m.adoption(Adoption::Ok);
    m.adopted_by_hint(Hint::ManifestUrl);
    m.adopted_by_hint(Hint::ManifestUrl);
    m.adopted_by_hint(Hint::Cluster);
    m.fallback(Fallback::NotInCluster);
    m.cache_lookup(true);
    m.cache_lookup(false);
    m.cache_lookup(false);
    m.kubo_call("cat", Duration::from_millis(2), true);
    m.kubo_call("cat", Duration::from_millis(2), false);
    m.pinset_blobs(12);
    m.layer_applied();
    let t = m.encode();
    assert_eq!(
        value(&t, r#"ipcs_rpc_requests_total{method="Read",code="OK"}"#),
        Some(2.0),
        "{t}"
    );
    assert_eq!(
        value(
            &t,
            r#"ipcs_rpc_requests_total{method="Info",code="NotFound"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&t, r#"ipcs_rpc_duration_seconds_count{method="Read"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(&t, r#"ipcs_served_bytes_total{source="peers"}"#),
        Some(1000.0)
    );
    assert_eq!(
        value(&t, r#"ipcs_served_bytes_total{source="cache"}"#),
        Some(10.0)
    );
    assert_eq!(value(&t, r#"ipcs_served_bytes_total{source="kubo"}"#), None);
    assert_eq!(value(&t, "ipcs_ingested_bytes_total"), Some(77.0));
    assert_eq!(
        value(&t, r#"ipcs_peer_adoptions_total{outcome="refused_size"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(&t, r#"ipcs_peer_adoptions_total{outcome="ok"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(
            &t,
            r#"ipcs_peer_adopted_by_hint_total{hint="manifest_url"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&t, r#"ipcs_peer_adopted_by_hint_total{hint="cluster"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(
            &t,
            r#"ipcs_registry_fallbacks_total{reason="not_in_cluster"}"#
        ),
        Some(1.0)
    );
    assert_eq!(value(&t, "ipcs_cache_hits_total"), Some(1.0));
    assert_eq!(value(&t, "ipcs_cache_misses_total"), Some(2.0));
    assert_eq!(
        value(&t, r#"ipcs_kubo_call_duration_seconds_count{call="cat"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(&t, r#"ipcs_kubo_call_errors_total{call="cat"}"#),
        Some(1.0)
    );
    assert_eq!(value(&t, "ipcs_cluster_pinset_blobs"), Some(12.0));
    assert_eq!(value(&t, "ipcs_differ_layers_applied_total"), Some(1.0));
    assert!(
        t.contains("# TYPE ipcs_rpc_duration_seconds histogram"),
        "{t}"
    );
    assert!(t.trim_end().ends_with("# EOF"), "{t}");
}

#[test]
fn an_inflight_series_lives_while_its_source_fills_it() {
    let m = Metrics::new();
    let reg = r#"ipcs_inflight_written_bytes{digest="sha256:ab",source="registry"}"#;
    let peer = r#"ipcs_inflight_written_bytes{digest="sha256:ab",source="peer"}"#;
    let from_peer = m.inflight("sha256:ab", false);
    from_peer.set(10);
    let t = m.encode();
    assert_eq!(value(&t, peer), Some(10.0), "{t}");
    assert_eq!(value(&t, reg), None, "{t}");
    drop(from_peer);
    let from_registry = m.inflight("sha256:ab", true);
    from_registry.set(4096);
    let t = m.encode();
    assert_eq!(value(&t, reg), Some(4096.0), "{t}");
    assert_eq!(value(&t, peer), None, "{t}");
    drop(from_registry);
    assert!(!m.encode().contains("sha256:ab"));
}

#[test]
fn sampled_values_are_read_at_each_scrape() {
    let m = Metrics::new();
    let n = Arc::new(std::sync::atomic::AtomicU64::new(5));
    let n2 = n.clone();
    m.sample("ipcs_cache_bytes", "bytes", Kind::Gauge, move || {
        Some(n2.load(Ordering::Relaxed) as f64)
    });
    m.sample("ipcs_cache_evictions", "evictions", Kind::Counter, || {
        Some(3.0)
    });
    m.sample(
        "ipcs_cluster_pinset_age_seconds",
        "age",
        Kind::Gauge,
        || None,
    );
    let t = m.encode();
    assert_eq!(value(&t, "ipcs_cache_bytes"), Some(5.0), "{t}");
    assert_eq!(value(&t, "ipcs_cache_evictions_total"), Some(3.0), "{t}");
    assert!(!t.contains("ipcs_cluster_pinset_age_seconds"), "{t}");
    n.store(9, Ordering::Relaxed);
    assert_eq!(value(&m.encode(), "ipcs_cache_bytes"), Some(9.0));
    // Replacing a sampler keeps one series.
    m.sample("ipcs_cache_bytes", "bytes", Kind::Gauge, || Some(1.0));
    let t = m.encode();
    assert_eq!(t.matches("# TYPE ipcs_cache_bytes gauge").count(), 1, "{t}");
    assert_eq!(value(&t, "ipcs_cache_bytes"), Some(1.0));
}

#[test]
fn listen_addresses_are_loopback_or_unix_only() {
    assert_eq!(
        Listen::parse("127.0.0.1:9464").unwrap(),
        Listen::Tcp("127.0.0.1:9464".parse().unwrap())
    );
    assert!(matches!(Listen::parse("[::1]:9464"), Ok(Listen::Tcp(_))));
    assert_eq!(
        Listen::parse("unix:///run/ipcs/metrics.sock").unwrap(),
        Listen::Unix("/run/ipcs/metrics.sock".into())
    );
    assert!(Listen::parse("0.0.0.0:9464")
        .unwrap_err()
        .contains("not a loopback"));
    assert!(Listen::parse("10.1.2.3:9464").is_err());
    assert!(Listen::parse("unix://relative.sock").is_err());
    assert!(Listen::parse("localhost").is_err());
}

async fn get(sock: &std::path::Path, path: &str) -> (u16, String) {
    let mut s = tokio::net::UnixStream::connect(sock).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
    (code, body)
}

#[tokio::test]
async fn serves_metrics_health_and_readiness_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run/metrics.sock");
    let m = Metrics::new();
    m.ingested(42);
    let ok = Arc::new(AtomicBool::new(true));
    let ok2 = ok.clone();
    let ready: ReadyCheck = Arc::new(move || {
        let ok = ok2.load(Ordering::Relaxed);
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err("kubo is down".to_string())
            }
        })
    });
    let running = http::serve(&Listen::Unix(sock.clone()), m.clone(), ready)
        .await
        .unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let (code, body) = get(&sock, "/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("ipcs_ingested_bytes_total 42"), "{body}");
    assert_eq!(get(&sock, "/healthz").await.0, 200);
    assert_eq!(get(&sock, "/readyz").await, (200, "ready\n".to_string()));
    ok.store(false, Ordering::Relaxed);
    let (code, body) = get(&sock, "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("kubo is down"), "{body}");
    assert_eq!(get(&sock, "/nope").await.0, 404);
    running.stop().await;
    assert!(tokio::net::UnixStream::connect(&sock).await.is_err());
}

#[tokio::test]
async fn refuses_to_replace_a_file_that_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.sock");
    std::fs::write(&file, b"precious").unwrap();
    let ready: ReadyCheck = Arc::new(|| Box::pin(async { Ok(()) }));
    assert!(
        http::serve(&Listen::Unix(file.clone()), Metrics::new(), ready)
            .await
            .is_err()
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}

#[test]
fn the_mirrors_hand_overs_are_counted_per_kind_and_blob() {
    let m = Metrics::new();
    m.mirror_tag_from_cluster();
    m.inflight_abandoned(false);
    m.inflight_abandoned(false);
    m.inflight_abandoned(true);
    m.inflight_takeover("sha256:ab", 1000);
    m.inflight_takeover("sha256:ab", 2500);
    let t = m.encode();
    assert_eq!(
        value(&t, "ipcs_mirror_tags_from_cluster_total"),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        value(&t, r#"ipcs_inflight_abandoned_total{source="peer"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(&t, r#"ipcs_inflight_abandoned_total{source="registry"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(&t, r#"ipcs_inflight_takeovers_total{digest="sha256:ab"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(
            &t,
            r#"ipcs_inflight_takeover_from_bytes{digest="sha256:ab"}"#
        ),
        Some(2500.0)
    );
}
