//! boxo's balanced layout, built bottom-up as leaves arrive instead of top-down from a
//! chunker. boxo fills the tree recursively: a root of depth d is a new node whose
//! first child is the full tree of depth d-1 so far, then further depth d-1 subtrees
//! filled left to right, each up to max_links children; a new depth only begins when
//! more data follows a full tree. So every leaf sits at the same depth, every node but
//! those on the rightmost path is full, and a node is final exactly when its level
//! (the pending children of the rightmost node at that height) is full and one more
//! child arrives, or at the end. Only the rightmost path is pending: max_links links
//! per level, whatever the file size.
use super::link::{Link, DAG_PB};
use super::pb::encode_file_node;
use sha2::{Digest as _, Sha256};

pub(super) struct Balanced {
    max_links: usize,
    /// `levels[0]` holds leaves, `levels[h]` nodes of height h; only `..depth` are in
    /// use, the rest are kept (empty) so that a reset stream reuses their memory.
    levels: Vec<Vec<Link>>,
    depth: usize,
    /// The block being encoded, reused for every node.
    block: Vec<u8>,
}

impl Balanced {
    pub fn new(max_links: usize) -> Balanced {
        assert!(max_links >= 2, "a file node needs room for two links");
        Balanced {
            max_links,
            levels: Vec::new(),
            depth: 0,
            block: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.depth == 0
    }

    pub fn reset(&mut self) {
        for l in &mut self.levels[..self.depth] {
            l.clear();
        }
        self.depth = 0;
    }

    pub fn push_leaf(&mut self, leaf: Link) {
        self.push(0, leaf);
    }

    /// Adds `link` to `level`. A full level is first closed into one node that moves up,
    /// because `link` proves more data follows it.
    fn push(&mut self, mut level: usize, mut link: Link) {
        loop {
            if level == self.depth {
                if self.levels.len() == level {
                    self.levels.push(Vec::new());
                }
                self.depth += 1;
            }
            if self.levels[level].len() < self.max_links {
                self.levels[level].push(link);
                return;
            }
            let node = self.close(level);
            self.levels[level].push(link);
            link = node;
            level += 1;
        }
    }

    /// Encodes `level`'s links as one node and empties the level.
    fn close(&mut self, level: usize) -> Link {
        let links = &mut self.levels[level];
        encode_file_node(links, &mut self.block);
        let node = Link {
            codec: DAG_PB,
            digest: Sha256::digest(&self.block).into(),
            tsize: self.block.len() as u64 + links.iter().map(|l| l.tsize).sum::<u64>(),
            filesize: links.iter().map(|l| l.filesize).sum(),
        };
        links.clear();
        node
    }

    /// The root: a lone leaf is the file itself; otherwise every pending level closes
    /// into the one above it, bottom-up. Leaves the builder empty.
    pub fn finish(&mut self) -> Link {
        assert!(
            !self.is_empty(),
            "a file has at least one (maybe empty) leaf"
        );
        if self.depth == 1 && self.levels[0].len() == 1 {
            let leaf = self.levels[0][0];
            self.reset();
            return leaf;
        }
        let mut level = 0;
        loop {
            let node = self.close(level);
            if level + 1 == self.depth {
                self.reset();
                return node;
            }
            self.push(level + 1, node);
            level += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// boxo's algorithm as it is written (layoutData and fillNodeRec), over a list of
    /// leaves: the reference the incremental builder must agree with.
    fn reference(leaves: &[Link], max_links: usize) -> Link {
        fn node(children: &[Link]) -> Link {
            let mut block = Vec::new();
            encode_file_node(children, &mut block);
            Link {
                codec: DAG_PB,
                digest: Sha256::digest(&block).into(),
                tsize: block.len() as u64 + children.iter().map(|l| l.tsize).sum::<u64>(),
                filesize: children.iter().map(|l| l.filesize).sum(),
            }
        }
        fn fill(
            next: &mut std::slice::Iter<Link>,
            mut children: Vec<Link>,
            depth: usize,
            m: usize,
        ) -> Link {
            while children.len() < m && next.len() > 0 {
                let child = if depth == 1 {
                    *next.next().unwrap()
                } else {
                    fill(next, Vec::new(), depth - 1, m)
                };
                children.push(child);
            }
            node(&children)
        }
        let mut next = leaves.iter();
        let mut root = *next.next().unwrap();
        let mut depth = 1;
        while next.len() > 0 {
            root = fill(&mut next, vec![root], depth, max_links);
            depth += 1;
        }
        root
    }

    fn leaf(i: u64) -> Link {
        Link::raw_leaf(Sha256::digest(i.to_le_bytes()).into(), 100 + i % 7)
    }

    #[test]
    fn matches_the_recursive_layout() {
        for m in [2usize, 3, 4, 5, 174] {
            let mut b = Balanced::new(m);
            for n in 1..=(m.pow(4) + 2).min(700) as u64 {
                let leaves: Vec<Link> = (0..n).map(leaf).collect();
                for l in &leaves {
                    b.push_leaf(*l);
                }
                assert_eq!(
                    b.finish(),
                    reference(&leaves, m),
                    "max_links {m}, {n} leaves"
                );
                assert!(b.is_empty());
            }
        }
    }

    #[test]
    fn pending_links_stay_bounded() {
        let m = 3;
        let mut b = Balanced::new(m);
        for i in 0..10_000 {
            b.push_leaf(leaf(i));
            assert!(b.levels.iter().all(|l| l.len() <= m));
        }
        // 3^8 < 10000 <= 3^9 leaves: nine levels pending.
        assert_eq!(b.depth, 9);
    }
}
