//! `ipcs::unixfs::FileCid` gives the CID the real Kubo's `ipfs add` gives the same bytes
//! with ipcs's import options, at the sizes where the balanced layout changes shape (a
//! leaf more, a level more), with small chunks and link limits so deep trees stay small,
//! and with the real settings up to ~50 MB. Our side is fed in random slices.
mod common;

use common::*;
use ipcs::ipfs::UNIXFS_FILE_MAX_LINKS;
use ipcs::unixfs::FileCid;
use rand::{Rng, SeedableRng};

/// Our CID, the stream cut at random points (slices of 0 to 3 chunks or 1 MiB).
fn our_cid(data: &[u8], chunk: u32, links: u32, seed: u64) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let max_slice = (3 * chunk as usize).max(1 << 20);
    let mut f = FileCid::new(chunk, links);
    let mut at = 0;
    while at < data.len() {
        let n = rng.random_range(0..=max_slice).min(data.len() - at);
        f.update(&data[at..at + n]);
        at += n;
    }
    f.finish().to_string()
}

/// The sizes where the tree changes shape, then `random` more below `limit`.
fn sizes(chunk: usize, m: usize, limit: usize, random: usize, seed: u64) -> Vec<usize> {
    let mut v = vec![0, 1, chunk - 1, chunk, chunk + 1];
    for level in 1..=4u32 {
        let full = chunk * m.pow(level);
        v.extend([full - 1, full, full + 1]);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let span = limit.min(chunk * m.pow(3) * 2);
    v.extend((0..random).map(|_| rng.random_range(0..span)));
    v.retain(|&s| s <= limit);
    v.sort_unstable();
    v.dedup();
    v
}

/// Compares every size (prefixes of one random buffer) and reports all mismatches.
fn check(chunk: u32, links: u32, limit: usize, extra: &[usize], seed: u64) {
    let mut all = sizes(chunk as usize, links as usize, limit, 4, seed);
    all.extend(extra);
    let data = random_bytes(*all.iter().max().unwrap(), seed);
    let mut bad = Vec::new();
    for &size in &all {
        let want = kubo_cid(&data[..size], chunk, links);
        let got = our_cid(&data[..size], chunk, links, seed ^ size as u64);
        if got != want {
            bad.push(format!("size {size}: kubo {want}, ours {got}"));
        }
    }
    assert!(
        bad.is_empty(),
        "chunk {chunk}, max links {links}: {} of {} sizes differ:\n{}",
        bad.len(),
        all.len(),
        bad.join("\n")
    );
}

#[test]
fn small_chunks_three_links() {
    // 1 KiB * 3^4 + 1 is a depth-5 tree.
    check(1024, 3, 1 << 20, &[], 3);
}

#[test]
fn small_chunks_four_links() {
    check(1024, 4, 1 << 20, &[], 4);
}

#[test]
fn small_chunks_174_links() {
    // 1 KiB * 174^2 + 1 (31 MB) is the first depth-3 tree.
    check(1024, 174, 40 << 20, &[], 174);
}

#[test]
fn real_settings() {
    // 256 KiB * 174 + 1 (45.6 MB) is the first depth-2 tree; 50 MB and 10 MB besides.
    check(
        262_144,
        UNIXFS_FILE_MAX_LINKS,
        50_000_000,
        &[10_000_000, 50_000_000],
        262_144,
    );
}

#[test]
fn agrees_with_the_harness_cid_of_a_blob() {
    // common::expected_cid is the CID ipcs's own tests expect of a stored blob.
    let data = random_bytes(3 * 262_144 + 12_345, 7);
    let mut f = FileCid::new(262_144, UNIXFS_FILE_MAX_LINKS);
    f.update(&data);
    assert_eq!(f.finish().to_string(), expected_cid(&data));
}
