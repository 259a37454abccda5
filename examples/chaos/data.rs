//! Deterministic blob contents: byte i of blob `seed` is computable on its own
//! (splitmix64 of a counter), so any range can be regenerated to resume an ingest at the
//! offset ipcs reports, and no blob is ever held whole in memory.
use sha2::{Digest as _, Sha256};

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes `[start, end)` of blob `seed`.
pub fn range(seed: u64, start: u64, end: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity((end - start) as usize);
    let mut i = start;
    while i < end {
        let word = splitmix64(seed.wrapping_mul(0x1000_0000_01b3) ^ (i / 8)).to_le_bytes();
        let from = (i % 8) as usize;
        let take = (8 - from).min((end - i) as usize);
        out.extend_from_slice(&word[from..from + take]);
        i += take as u64;
    }
    out
}

/// The blob's sha256 digest, hashed 1 MiB at a time.
pub fn digest(seed: u64, size: u64) -> String {
    let mut h = Sha256::new();
    let mut off = 0;
    while off < size {
        let end = (off + (1 << 20)).min(size);
        h.update(range(seed, off, end));
        off = end;
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_compose() {
        let whole = super::range(7, 0, 1000);
        assert_eq!(&whole[13..501], &super::range(7, 13, 501)[..]);
    }
}
