//! Throughput of `ipcs::unixfs::FileCid::update` against plain sha2-256 over the same
//! bytes, as the content store's write path would feed it (1 MiB messages).
//!
//!   cargo run --release --example unixfs_cid_throughput [-- GIB]
//!
//! A 64 MiB buffer is streamed over and over (bigger than the caches, so the numbers are
//! not L2-resident ones) until GIB GiB (default 1) went through each hasher.
use ipcs::ipfs::UNIXFS_FILE_MAX_LINKS;
use ipcs::unixfs::FileCid;
use sha2::{Digest as _, Sha256};
use std::time::Instant;

const SLICE: usize = 1 << 20;
const BUFFER: usize = 64 << 20;

fn main() {
    let gib: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("GiB count"))
        .unwrap_or(1);
    let total = gib << 30;
    // splitmix64: cheap, incompressible-looking bytes.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let buf: Vec<u8> = (0..BUFFER / 8)
        .flat_map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)).to_le_bytes()
        })
        .collect();
    let slices = || {
        (0..total / SLICE).map(|i| {
            let at = (i * SLICE) % BUFFER;
            &buf[at..at + SLICE]
        })
    };
    let mbps = |secs: f64| total as f64 / secs / 1e6;

    for round in 1..=2 {
        let t = Instant::now();
        let mut h = Sha256::new();
        slices().for_each(|s| h.update(s));
        let digest = h.finalize();
        let sha = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut f = FileCid::new(262_144, UNIXFS_FILE_MAX_LINKS);
        slices().for_each(|s| f.update(s));
        let cid = f.finish();
        let file_cid = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut h = Sha256::new();
        let mut f = FileCid::new(262_144, UNIXFS_FILE_MAX_LINKS);
        slices().for_each(|s| {
            h.update(s);
            f.update(s);
        });
        let (_, _) = (h.finalize(), f.finish());
        let both = t.elapsed().as_secs_f64();

        println!(
            "round {round}: {gib} GiB in 1 MiB slices: sha256 {:.0} MB/s, FileCid {:.0} MB/s \
             ({:.3}x), both on each slice {:.0} MB/s",
            mbps(sha),
            mbps(file_cid),
            sha / file_cid,
            mbps(both),
        );
        if round == 2 {
            println!("sha256:{} {cid}", hex::encode(digest));
        }
    }
}
