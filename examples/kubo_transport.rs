//! Measures one Kubo RPC transport as ipcs uses it (a pooled reqwest client): p50/p99 of a
//! small call (`version`), then a 100 MB `add` (streamed from a file, unpinned) and a
//! 100 MB `cat` of it. Used to choose between a unix socket and TCP with
//! `API.Authorizations` (README, Security).
//!
//!   kubo_transport --api unix:///…/api.sock | http://127.0.0.1:PORT [--token T]
//!                  [--calls N] [--file PATH]
use futures::StreamExt;
use ipcs::endpoint::Endpoint;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::collections::HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        args.insert(k.trim_start_matches("--").to_string(), v);
    }
    let ep = Endpoint::parse(args.get("api").ok_or("--api is required")?)?;
    let token = args.get("token").cloned();
    let calls: usize = args
        .get("calls")
        .map_or(Ok(1000), |v| v.parse())
        .map_err(|e| format!("{e}"))?;
    let file = args
        .get("file")
        .cloned()
        .ok_or("--file (100 MB of data) is required")?;
    let http = ep
        .configure(reqwest::Client::builder().tcp_nodelay(true))
        .build()
        .map_err(|e| e.to_string())?;
    let post = |path: &str| {
        let r = http
            .post(format!("{}/api/v0/{path}", ep.url))
            .timeout(Duration::from_secs(300));
        match &token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };

    let mut lat = Vec::with_capacity(calls);
    for i in 0..calls + 50 {
        let t0 = Instant::now();
        let resp = post("version").send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("version: HTTP {}", resp.status()));
        }
        resp.bytes().await.map_err(|e| e.to_string())?;
        if i >= 50 {
            lat.push(t0.elapsed());
        }
    }
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;

    let size = std::fs::metadata(&file).map_err(|e| e.to_string())?.len();
    let f = tokio::fs::File::open(&file)
        .await
        .map_err(|e| e.to_string())?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20));
    let part = reqwest::multipart::Part::stream_with_length(body, size).file_name("blob");
    let t0 = Instant::now();
    let text = post("add?cid-version=1&raw-leaves=true&chunker=size-262144&pin=false&quieter=true")
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let add = t0.elapsed();
    let cid = serde_json::from_str::<serde_json::Value>(text.lines().last().unwrap_or(""))
        .ok()
        .and_then(|v| v["Hash"].as_str().map(String::from))
        .ok_or(format!("no CID in {text:?}"))?;

    let t0 = Instant::now();
    let mut s = post(&format!("cat?arg={cid}&progress=false"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes_stream();
    let mut n = 0u64;
    while let Some(c) = s.next().await {
        n += c.map_err(|e| e.to_string())?.len() as u64;
    }
    let cat = t0.elapsed();
    if n != size {
        return Err(format!("cat returned {n} of {size} bytes"));
    }
    let mbs = |d: Duration| size as f64 / d.as_secs_f64() / 1e6;
    println!(
        "{}{}: version p50 {:.3} ms p99 {:.3} ms ({calls} calls); add {} MB {:.0} MB/s; cat {:.0} MB/s",
        ep.display,
        if token.is_some() { " (bearer token)" } else { "" },
        pct(0.50),
        pct(0.99),
        size / 1_000_000,
        mbs(add),
        mbs(cat)
    );
    Ok(())
}
