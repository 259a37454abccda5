//! What the hostile-input and load clients share: a seeded splitmix64 (deterministic per
//! seed, independent of rand's API), the sha256 digest string containerd uses, a Write
//! message without data, the content client they connect with and a whole-range Read.
#![allow(dead_code)]

use ipcs::server::client;
use ipcs::server::proto::content_client::ContentClient;
use ipcs::server::proto::{ReadContentRequest, WriteAction, WriteContentRequest};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use tonic::transport::Channel;
use tonic::Status;

pub type Client = ContentClient<Channel>;

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

/// A content client on `socket` whose message limits never cut a test short.
pub async fn connect(socket: &Path) -> Result<Client, String> {
    client::connect(socket)
        .await
        .map(|ch| {
            ContentClient::new(ch)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20)
        })
        .map_err(|e| format!("connect {}: {e}", socket.display()))
}

/// The bytes of one Read stream (size 0: to the end), gathered in order.
pub async fn read(c: &mut Client, d: &str, offset: i64, size: i64) -> Result<Vec<u8>, Status> {
    let mut s = c
        .read(ReadContentRequest {
            digest: d.into(),
            offset,
            size,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        out.extend_from_slice(&m.data);
    }
    Ok(out)
}
