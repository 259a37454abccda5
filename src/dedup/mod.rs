//! `ipcs compare`: how much of some images is stored once thanks to IPFS. Each image's
//! blobs come from the store (`car::walk`), each blob's blocks from its DAG in Kubo
//! (`refs -r --unique`, local blocks only), each block's size from `block stat`; the
//! arithmetic is in `report`. With ipcs's import options (raw leaves, fixed 256 KiB
//! chunks) a blob's data blocks are its raw leaves, so two layers that contain the same
//! 256 KiB-aligned run of bytes share those blocks; the dag-pb nodes above them are
//! structure and are not counted as data.
pub mod report;

use crate::car::walk::{walk, ImageRef};
use crate::ipfs::KuboClient;
use crate::store::{ContentStore, StoreError};
use futures::StreamExt;
use report::{ImageBlocks, Report};
use std::collections::{HashMap, HashSet};

/// Kubo calls in flight at once.
const CONCURRENCY: usize = 8;

/// The multicodec of a CIDv1 in base32 (the form ipcs imports with), None for
/// anything else (CIDv0 is always dag-pb).
fn codec(cid: &str) -> Option<u64> {
    let rest = cid.strip_prefix('b')?;
    let mut bits: u64 = 0;
    let mut nbits = 0;
    let mut bytes = Vec::new();
    for c in rest.bytes().take(8) {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        } as u64;
        bits = (bits << 5) | v;
        nbits += 5;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    // version varint (1), then the codec varint.
    if bytes.first() != Some(&1) {
        return None;
    }
    let mut v: u64 = 0;
    for (i, b) in bytes[1..].iter().enumerate() {
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Raw blocks (multicodec 0x55) hold a blob's bytes.
fn is_data_block(cid: &str) -> bool {
    codec(cid) == Some(0x55)
}

pub async fn compare(
    store: &ContentStore,
    kubo: &KuboClient,
    images: &[ImageRef],
) -> Result<Report, StoreError> {
    if images.is_empty() {
        return Err(StoreError::InvalidArgument("compare of no image".into()));
    }
    let mut per_image = Vec::new();
    for img in images {
        per_image.push(walk(store, std::slice::from_ref(img)).await?);
    }
    let mut dags: HashMap<String, u64> = HashMap::new();
    for b in per_image.iter().flatten() {
        dags.insert(b.cid.to_string(), b.desc.size);
    }
    let walks: Vec<(String, Vec<String>)> = futures::stream::iter(dags)
        .map(|(cid, size)| async move {
            let w = kubo
                .dag_blocks(&cid, size)
                .await
                .map_err(StoreError::ipfs(format!("listing the blocks of {cid}")))?;
            let data: Vec<String> = w.blocks.into_iter().filter(|b| is_data_block(b)).collect();
            if data.is_empty() && size > 0 {
                return Err(StoreError::FailedPrecondition(format!(
                    "{cid} has no raw leaf blocks; compare needs blobs imported with raw leaves (import.raw_leaves)"
                )));
            }
            Ok::<_, StoreError>((cid, data))
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let blocks_of: HashMap<String, Vec<String>> = walks.into_iter().collect();
    let distinct: HashSet<String> = blocks_of.values().flatten().cloned().collect();
    let sizes: HashMap<String, u64> = futures::stream::iter(distinct)
        .map(|b| async move {
            let n = kubo
                .block_size(&b)
                .await
                .map_err(StoreError::ipfs(format!("sizing block {b}")))?;
            Ok::<_, StoreError>((b, n))
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let input: Vec<ImageBlocks> = images
        .iter()
        .zip(&per_image)
        .map(|(img, blobs)| ImageBlocks {
            name: img.name.clone(),
            digest: img.target.digest.to_string(),
            blobs: blobs
                .iter()
                .map(|b| {
                    let blocks = blocks_of.get(b.cid.as_str()).cloned().unwrap_or_default();
                    (b.desc.digest.to_string(), b.desc.size, blocks)
                })
                .collect(),
        })
        .collect();
    Ok(report::compute(&input, &sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_codec_of_cidv1_base32() {
        // A raw leaf, a dag-pb node and a dag-cbor block, as Kubo printed them.
        assert_eq!(
            codec("bafkreia25z6egyqj2yezjuf3twayqo5vkfqgwpi3lffmvf2tmrgjadyway"),
            Some(0x55)
        );
        assert_eq!(
            codec("bafybeigbxsevxjrnec7brfgwvogxit7ijz7xvhsdxwh44ajbzaqs2xe44m"),
            Some(0x70)
        );
        assert_eq!(
            codec("bafyreieiawczu5tofn3dkroi5vukckbkrewny42mtwx3nh6jof4ist5oqu"),
            Some(0x71)
        );
        assert_eq!(
            codec("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"),
            None
        );
        assert_eq!(codec("b"), None);
        assert_eq!(codec("bZZ"), None);
    }
}
