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
        // Two copies (filestore = false): a committed blob is a cache copy that the 0-byte
        // bound evicts, so reads must fetch it from Kubo (as for blobs from peers).
        vec![
            ("IPCS_CACHE_MAX_BYTES".into(), "0".into()),
            ("IPCS_FILESTORE".into(), "false".into()),
        ],
    )
    .await;
    let mut c = ipcs.content().await;
    let a = random_bytes(3 << 20 | 17, 7);
    let b = random_bytes(300_000, 8);
    let da = put_blob(&mut c, "fetch/a", &a).await.unwrap();
    let db = put_blob(&mut c, "fetch/b", &b).await.unwrap();
    // Committing b evicted a; a cache file for a can only come from a fetch from Kubo.
    let cached_a = ipcs
        .data
        .join("blobs/sha256")
        .join(da.strip_prefix("sha256:").unwrap());
    assert!(
        !cached_a.exists(),
        "a is still cached: the read would not touch Kubo"
    );
    check_random_reads(&ipcs, &da, &a, 11, 8).await;
    assert!(cached_a.exists(), "reading a did not fetch it from Kubo");
    check_random_reads(&ipcs, &db, &b, 12, 8).await;
    assert_eq!(read_range(&mut c, &da, 0, 0).await.unwrap(), a);
}

/// 174 links × 256 KiB chunks = 45.6 MB: above this a UnixFS file gets a second DAG
/// level, so `Import.UnixFSFileMaxLinks` decides the CID there. The blob goes through ipcs
/// into a Kubo node whose profile sets 1024 links; its CID must still be the UnixFS v1
/// default one (what `ipfs add --max-file-links=174` gives) and not the node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_blob_cid_ignores_the_nodes_import_profile() {
    let kubo = common::kubo_node::KuboNode::start();
    kubo.ipfs(&["config", "--json", "Import.UnixFSFileMaxLinks", "1024"])
        .unwrap();
    let ipcs = Ipcs::start_with(kubo.api.clone(), vec![]).await;
    let mut c = ipcs.content().await;
    let data = random_bytes(48 << 20, 174);
    let d = put_blob(&mut c, "sizes/48MiB", &data).await.unwrap();
    let cid = ipcs.cids().await[&d].clone();

    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &data).unwrap();
    let add = |extra: &[&str]| {
        let mut args = vec![
            "add",
            "--only-hash",
            "-Q",
            "--cid-version=1",
            "--raw-leaves",
            "--chunker=size-262144",
        ];
        args.extend_from_slice(extra);
        args.push(tmp.path().to_str().unwrap());
        kubo.ipfs(&args).unwrap().trim().to_string()
    };
    let v1_default = add(&["--max-file-links=174"]);
    let node_profile = add(&[]);
    assert_ne!(
        v1_default, node_profile,
        "the node's Import.UnixFSFileMaxLinks=1024 must change `ipfs add`'s CID here, \
         or this test proves nothing"
    );
    assert_eq!(cid, v1_default, "ipcs's CID of a 48 MiB blob");
    // Pinned in the same call that imported it, under this store's name.
    let pins = kubo.recursive_pins();
    let line = pins
        .lines()
        .find(|l| l.starts_with(cid.as_str()))
        .unwrap_or_else(|| panic!("{cid} not pinned: {pins}"));
    assert!(
        line.contains(" ipcs:"),
        "{cid} pinned without the store's name: {line}"
    );
    assert_eq!(read_range(&mut c, &d, 0, 0).await.unwrap(), data);
}
