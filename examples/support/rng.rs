//! What the hostile-input and load clients share: a seeded splitmix64 (deterministic per
//! seed, independent of rand's API), the sha256 digest string containerd uses, and a
//! Write message without data.
#![allow(dead_code)]

use ipcs::server::proto::{WriteAction, WriteContentRequest};
use sha2::{Digest as _, Sha256};

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

pub fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn msg(
    action: WriteAction,
    r: &str,
    offset: i64,
    total: i64,
    expected: &str,
) -> WriteContentRequest {
    WriteContentRequest {
        action: action as i32,
        r#ref: r.into(),
        offset,
        total,
        expected: expected.into(),
        ..Default::default()
    }
}
