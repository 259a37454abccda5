//! The checks after each restart, on a quiet server: uncertain outcomes of killed
//! operations are resolved; Status and ListStatuses agree on every partial ingest, each of
//! which then resumes at its reported offset and commits, or aborts cleanly; the index
//! holds exactly the blobs the client knows committed; each of them reads back right
//! through ipcs and through `ipfs cat` of its CID, pinned; deleted blobs stay gone.
use crate::workload::{self, Partial, Shared, Worker};
use ipcs::ipfs::KuboClient;
use ipcs::server::proto::admin::admin_client::AdminClient;
use ipcs::server::proto::admin::BlobsRequest;
use ipcs::server::proto::{InfoRequest, ListStatusesRequest, StatusRequest};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tonic::Code;

#[derive(Default, Debug)]
pub struct RoundCheck {
    pub verified: u64,
    pub resolved_commits: u64,
    pub resumed: u64,
    pub aborted: u64,
}

pub async fn round(shared: &Arc<Shared>, kubo: &KuboClient, full: bool, seed: u64) -> RoundCheck {
    let mut out = RoundCheck::default();
    let Some(mut c) = workload::connect(&shared.socket).await else {
        shared.fail("verify: cannot connect to ipcs".into());
        return out;
    };
    let (maybe_c, maybe_d, maybe_a) = {
        let mut p = shared.pools.lock().unwrap();
        (
            std::mem::take(&mut p.maybe_committed),
            std::mem::take(&mut p.maybe_deleted),
            std::mem::take(&mut p.maybe_aborted),
        )
    };
    let info = |c: &mut ipcs::server::proto::content_client::ContentClient<_>, d: String| {
        let mut c = c.clone();
        async move { c.info(InfoRequest { digest: d }).await }
    };
    // A commit cut by the kill either recorded the blob or left the whole ingest behind.
    for p in maybe_c {
        match info(&mut c, p.blob.digest.clone()).await {
            Ok(_) => {
                out.resolved_commits += 1;
                shared.committed(p.blob);
            }
            Err(e) if e.code() == Code::NotFound => {
                match c.status(StatusRequest { r#ref: p.r.clone() }).await {
                    Ok(_) => shared.pools.lock().unwrap().partials.push(p),
                    Err(e) => shared.fail(format!(
                        "{}: commit cut by the kill left neither blob nor ingest: {}",
                        p.r,
                        e.message()
                    )),
                }
            }
            Err(e) => shared.fail(format!("info {}: {}", p.blob.digest, e.message())),
        }
    }
    for b in maybe_d {
        match info(&mut c, b.digest.clone()).await {
            Ok(_) => {
                let mut p = shared.pools.lock().unwrap();
                p.fresh.push(b.digest.clone());
                p.committed.push(b);
            }
            Err(e) if e.code() == Code::NotFound => {
                shared.pools.lock().unwrap().deleted.push(b.digest)
            }
            Err(e) => shared.fail(format!("info {}: {}", b.digest, e.message())),
        }
    }
    for p in maybe_a {
        match c.status(StatusRequest { r#ref: p.r.clone() }).await {
            Ok(_) => shared.pools.lock().unwrap().partials.push(p),
            Err(e) if e.code() == Code::NotFound => out.aborted += 1,
            Err(e) => shared.fail(format!("status {}: {}", p.r, e.message())),
        }
    }

    // Status and ListStatuses must tell the same story about every partial ingest.
    let listed: HashMap<String, i64> = match c
        .list_statuses(ListStatusesRequest { filters: vec![] })
        .await
    {
        Ok(r) => r
            .into_inner()
            .statuses
            .into_iter()
            .map(|s| (s.r#ref, s.offset))
            .collect(),
        Err(e) => {
            shared.fail(format!("ListStatuses: {}", e.message()));
            HashMap::new()
        }
    };
    let partials: Vec<Partial> = std::mem::take(&mut shared.pools.lock().unwrap().partials);
    let known: HashSet<&str> = partials.iter().map(|p| p.r.as_str()).collect();
    for (r, off) in &listed {
        if !known.contains(r.as_str()) {
            let seed: u64 = r
                .rsplit('-')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let p = shared.pools.lock().unwrap();
            let fate = if p.committed.iter().any(|b| b.seed == seed) {
                "committed"
            } else {
                "not committed"
            };
            shared.fail(format!(
                "ListStatuses has an ingest the client never left: {r} at {off} (client: {fate})"
            ));
        }
    }
    let mut w = Worker::new(shared.clone(), seed);
    if !w.connect_now().await {
        shared.fail("verify: cannot connect to ipcs".into());
    }
    for (i, p) in partials.into_iter().enumerate() {
        match c.status(StatusRequest { r#ref: p.r.clone() }).await {
            Ok(st) => {
                let off = st.into_inner().status.unwrap_or_default().offset;
                if listed.get(&p.r) != Some(&off) {
                    shared.fail(format!(
                        "{}: Status offset {off}, ListStatuses {:?}",
                        p.r,
                        listed.get(&p.r)
                    ));
                }
                if off as u64 > p.sent {
                    shared.fail(format!(
                        "{}: offset {off} beyond the {} bytes sent",
                        p.r, p.sent
                    ));
                }
            }
            Err(e) if e.code() == Code::NotFound && !p.certain => continue,
            Err(e) => {
                shared.fail(format!(
                    "{}: Status of a partial ingest: {:?} {}",
                    p.r,
                    e.code(),
                    e.message()
                ));
                continue;
            }
        }
        if i % 2 == 0 {
            out.resumed += 1;
            w.resume_partial(p).await;
        } else {
            out.aborted += 1;
            w.abort_partial(p).await;
        }
    }
    match c
        .list_statuses(ListStatusesRequest { filters: vec![] })
        .await
    {
        Ok(r) if r.get_ref().statuses.is_empty() => {}
        Ok(r) => shared.fail(format!(
            "{} ingests left after resume/abort",
            r.get_ref().statuses.len()
        )),
        Err(e) => shared.fail(format!("ListStatuses: {}", e.message())),
    }

    // The index holds exactly the committed blobs: none half-committed, none lost.
    let cids = match blobs(&shared.socket).await {
        Ok(m) => m,
        Err(e) => {
            shared.fail(e);
            return out;
        }
    };
    let (mut check, fresh, deleted, all): (Vec<_>, Vec<String>, Vec<String>, HashMap<String, u64>) = {
        let mut p = shared.pools.lock().unwrap();
        let all = p
            .committed
            .iter()
            .map(|b| (b.digest.clone(), b.size))
            .collect();
        let check = p.committed.iter().map(|b| b.digest.clone()).collect();
        (
            check,
            std::mem::take(&mut p.fresh),
            std::mem::take(&mut p.deleted),
            all,
        )
    };
    for d in all.keys() {
        if !cids.contains_key(d) {
            shared.fail(format!("committed blob {d} is missing from the index"));
        }
    }
    for d in cids.keys() {
        if !all.contains_key(d) {
            shared.fail(format!(
                "index has a blob the client never saw committed: {d}"
            ));
        }
    }
    if !full {
        check.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        check.truncate(16);
        check.extend(fresh.into_iter().filter(|d| all.contains_key(d)));
        check.sort();
        check.dedup();
    }
    // The pinset is listed once, so "pinned" is decided by membership, never by the
    // wording of a Kubo error.
    let mut pinned = HashSet::new();
    if let Err(e) = kubo
        .pin_ls_recursive(|p| {
            pinned.insert(p.cid);
        })
        .await
    {
        shared.fail(format!("pin ls: {e}"));
    }
    for d in check {
        let Some(cid) = cids.get(&d) else { continue };
        match workload::read_digest(&mut c, &d).await {
            Ok(got) if got == d => {}
            Ok(got) => shared.fail(format!("{d}: Read gives {got}")),
            Err(e) => shared.fail(format!("{d}: Read: {:?} {}", e.code(), e.message())),
        }
        if !pinned.contains(cid) {
            shared.fail(format!("{d}: its CID {cid} is not pinned"));
        }
        match cat_digest(kubo, cid, all[&d]).await {
            Ok(got) if got == d => {}
            Ok(got) => shared.fail(format!("{d}: ipfs cat {cid} gives {got}")),
            Err(e) => shared.fail(format!("{d}: ipfs cat {cid}: {e}")),
        }
        out.verified += 1;
    }
    for d in deleted {
        match info(&mut c, d.clone()).await {
            Err(e) if e.code() == Code::NotFound => {}
            Ok(_) => shared.fail(format!("deleted blob {d} is back")),
            Err(e) => shared.fail(format!("info {d}: {}", e.message())),
        }
    }
    out
}

/// digest → CID of every blob, once no import into Kubo is pending (commits answer
/// before Kubo's import; at most 120 s).
async fn blobs(socket: &std::path::Path) -> Result<HashMap<String, String>, String> {
    let ch = ipcs::server::client::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    ipcs::server::admin_client::Admin::connect(socket)
        .await?
        .settle(std::time::Duration::from_secs(120))
        .await?;
    let mut admin = AdminClient::new(ch);
    let mut s = admin
        .blobs(BlobsRequest { filters: vec![] })
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    let mut out = HashMap::new();
    while let Some(batch) = s.message().await.map_err(|e| e.message().to_string())? {
        for b in batch.blobs {
            out.insert(b.digest, b.cid);
        }
    }
    Ok(out)
}

async fn cat_digest(kubo: &KuboClient, cid: &str, size: u64) -> Result<String, String> {
    use futures::StreamExt;
    let mut s = Box::pin(
        kubo.cat(cid, 0, size + 1)
            .await
            .map_err(|e| e.to_string())?,
    );
    let mut h = Sha256::new();
    while let Some(chunk) = s.next().await {
        h.update(&chunk.map_err(|e| e.to_string())?);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}
