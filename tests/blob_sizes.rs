//! Committed blobs of boundary sizes live in Kubo as UnixFS DAGs with the CID `ipfs add`
//! gives for the same bytes and options, and read back exactly at any offset.
mod common;

use common::*;
use rand::{Rng, SeedableRng};

const SIZES: [usize; 7] = [
    0,
    1,
    256 * 1024 - 1,
    256 * 1024,
    256 * 1024 + 1,
    1 << 20,
    32 << 20,
];

async fn check_random_reads(ipcs: &Ipcs, d: &str, data: &[u8], seed: u64, rounds: usize) {
    let mut c = ipcs.content().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let len = data.len() as i64;
    for _ in 0..rounds {
        let offset = rng.random_range(0..=len);
        // size 0 (or past the end) means "to the end", as in containerd.
        let size = match rng.random_range(0..4) {
            0 => 0,
            1 => len - offset + rng.random_range(1..1000),
            _ => rng.random_range(0..=(len - offset).min(3 << 20)),
        };
        let got = read_range(&mut c, d, offset, size).await.unwrap();
        let end = if size <= 0 || offset + size > len {
            len
        } else {
            offset + size
        };
        assert!(
            got == data[offset as usize..end as usize],
            "read {d} @{offset}+{size}: {} bytes differ from expected {}",
            got.len(),
            end - offset
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boundary_sizes_match_kubo_cids_and_read_back() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let mut blobs = Vec::new();
    for (i, size) in SIZES.iter().enumerate() {
        let data = random_bytes(*size, 1000 + i as u64);
        let d = put_blob(&mut c, &format!("sizes/{size}"), &data)
            .await
            .unwrap();
        blobs.push((d, data));
    }
    let cids = ipcs.cids().await;
    assert_eq!(cids.len(), SIZES.len());
    for (i, (d, data)) in blobs.iter().enumerate() {
        let cid = &cids[d];
        assert_eq!(*cid, expected_cid(data), "CID of {} bytes", data.len());
        let cat = ipfs(&["cat", cid], None).unwrap();
        assert!(
            cat == *data,
            "ipfs cat {cid} differs from the {}-byte blob",
            data.len()
        );
        let pins =
            String::from_utf8(ipfs(&["pin", "ls", "--type", "recursive", cid], None).unwrap())
                .unwrap();
        assert!(pins.contains(cid.as_str()), "{cid} not pinned: {pins}");

        let info = c
            .info(ipcs::server::proto::InfoRequest { digest: d.clone() })
            .await
            .unwrap()
            .into_inner()
            .info
            .unwrap();
        assert_eq!(info.size as usize, data.len());
        check_random_reads(&ipcs, d, data, i as u64, 24).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_fetch_from_kubo_when_not_cached() {
    // A zero-byte cache keeps only the newest blob, so older ones come back from Kubo,
    // hashed and checked before any byte is served.
    let ipcs = Ipcs::start_with(
        kubo_api(),
        vec![("IPCS_CACHE_MAX_BYTES".into(), "0".into())],
    )
    .await;
    let mut c = ipcs.content().await;
    let a = random_bytes(3 << 20 | 17, 7);
    let b = random_bytes(300_000, 8);
    let da = put_blob(&mut c, "fetch/a", &a).await.unwrap();
    let db = put_blob(&mut c, "fetch/b", &b).await.unwrap();
    check_random_reads(&ipcs, &da, &a, 11, 8).await;
    check_random_reads(&ipcs, &db, &b, 12, 8).await;
    assert_eq!(read_range(&mut c, &da, 0, 0).await.unwrap(), a);
}
