//! The CID Kubo's `ipfs add` gives a file, computed while its bytes stream in, so a blob
//! can be named before Kubo has hashed it. This module owns that computation for ipcs's
//! import options only: CIDv1, raw leaves, fixed-size chunks, sha2-256, the balanced
//! layout with a link limit per node, no inlining, no file attributes. Any other option
//! gives another DAG; ipcs still takes Kubo's answer as the truth and compares.
//!
//! Memory is bounded by the tree's pending rightmost path (`balanced`), never by the
//! file: one running hash for the current leaf, at most max_links links per level.
mod balanced;
mod base32;
mod link;
mod pb;

use crate::cid::Cid;
use sha2::{Digest as _, Sha256};

/// A streaming builder of one file's CID.
pub struct FileCid {
    chunk_size: usize,
    /// The leaf being filled, hashed as its bytes arrive rather than buffered.
    leaf: Sha256,
    leaf_len: usize,
    tree: balanced::Balanced,
}

impl FileCid {
    /// `chunk_size` is the chunker's `size-N`, `max_links` the `--max-file-links`.
    /// Panics if `chunk_size` is 0 or `max_links` under 2: Kubo refuses `size-0`, and
    /// with one link per node its layout never ends (`ipfs add` hangs).
    pub fn new(chunk_size: u32, max_links: u32) -> FileCid {
        assert!(chunk_size > 0, "chunk size must be positive");
        FileCid {
            chunk_size: chunk_size as usize,
            leaf: Sha256::new(),
            leaf_len: 0,
            tree: balanced::Balanced::new(max_links as usize),
        }
    }

    /// Feeds the next bytes of the file; how the stream is sliced does not matter.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (self.chunk_size - self.leaf_len).min(data.len());
            self.leaf.update(&data[..take]);
            self.leaf_len += take;
            data = &data[take..];
            // A full leaf is final at once: later bytes only decide the nodes above it.
            if self.leaf_len == self.chunk_size {
                self.end_leaf();
            }
        }
    }

    /// Back to an empty file, as when an ingest is truncated to 0.
    pub fn reset(&mut self) {
        self.leaf.reset();
        self.leaf_len = 0;
        self.tree.reset();
    }

    /// The file's CID (base32, multibase prefix 'b'), as `ipfs add` prints it.
    pub fn finish(mut self) -> Cid {
        // A short last chunk is a leaf; an empty file is one empty leaf. A file of whole
        // chunks has no empty leaf after them (boxo's chunker ends without one).
        if self.leaf_len > 0 || self.tree.is_empty() {
            self.end_leaf();
        }
        self.tree.finish().cid()
    }

    fn end_leaf(&mut self) {
        let digest = self.leaf.finalize_reset().into();
        self.tree
            .push_leaf(link::Link::raw_leaf(digest, self.leaf_len as u64));
        self.leaf_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cid_of(data: &[u8], chunk: u32, links: u32) -> String {
        let mut f = FileCid::new(chunk, links);
        f.update(data);
        f.finish().to_string()
    }

    /// `data[i] = i % 251`: reproducible without a generator.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn empty_file_is_one_empty_raw_leaf() {
        // `ipfs add --cid-version 1 --raw-leaves` of an empty file (Kubo 0.42).
        let empty = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
        assert_eq!(cid_of(b"", 262_144, 174), empty);
        assert_eq!(FileCid::new(1024, 3).finish().as_str(), empty);
    }

    /// CIDs Kubo 0.42 printed for `pattern(len)` (`ipfs add --only-hash --cid-version 1
    /// --raw-leaves --chunker size-C --max-file-links M`): a fixed point that needs no
    /// Kubo; tests/unixfs_cid.rs compares many more against a running one.
    #[test]
    fn known_kubo_cids() {
        for (len, chunk, links, want) in KUBO_PATTERN_CIDS {
            assert_eq!(
                cid_of(&pattern(*len), *chunk, *links),
                *want,
                "{len} {chunk} {links}"
            );
        }
    }

    const KUBO_PATTERN_CIDS: &[(usize, u32, u32, &str)] = &[
        (
            1,
            262144,
            174,
            "bafkreidogqfzz75tpkmjzjke425xqcrmpcib2p5tg44hnbirumdbpl5adu",
        ),
        (
            262144,
            262144,
            174,
            "bafkreibruh455iawsviqslif5c7uurdcfdemh22mtnytyzvnzn75kpejxy",
        ),
        (
            4100,
            1024,
            3,
            "bafybeib3si4gyoa5ov4tnbjbhdwsrd3qaogfqfosqylrl6h7ml5bkwauba",
        ),
        (
            9217,
            1024,
            3,
            "bafybeiat5nkhr4ijr4cczungqpda6ur6ckwm2mrmbiktljrn66fijiupve",
        ),
        (
            786449,
            262144,
            174,
            "bafybeiazf3hwcyssmk5zulxipul4hzjd3xeuhvxssc4a3kp5ffwvsqxnse",
        ),
        (
            28000,
            1024,
            4,
            "bafybeigcw3ltkbvlynawvijnmt6hbac5ojhrumgk2w5m4sy3sytuhaerz4",
        ),
    ];

    #[test]
    fn reset_forgets_everything() {
        let data = pattern(10_000);
        let mut f = FileCid::new(1024, 3);
        f.update(&pattern(7_777));
        f.reset();
        f.update(&data);
        assert_eq!(f.finish().to_string(), cid_of(&data, 1024, 3));
        let mut f = FileCid::new(1024, 3);
        f.update(&data);
        f.reset();
        assert_eq!(f.finish().to_string(), cid_of(b"", 1024, 3));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn slicing_does_not_matter(
            data in proptest::collection::vec(any::<u8>(), 0..6000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
            chunk in 1u32..300,
            links in 2u32..6,
        ) {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            at.push(0);
            at.push(data.len());
            at.sort_unstable();
            let mut f = FileCid::new(chunk, links);
            for w in at.windows(2) {
                f.update(&data[w[0]..w[1]]);
            }
            prop_assert_eq!(f.finish().to_string(), cid_of(&data, chunk, links));
        }
    }
}
