//! The nodes of this swarm and who leads which blob. Members are this node, the mirrors
//! named in `swarm_peers_file` (re-read when it changes) and, with `swarm = true`, those
//! the cluster pinset announces (`peer::members`, handed in as `Discovered`). Every node
//! ranks the members for a digest by rendezvous hashing (sha256 of digest and member
//! URL), so all nodes that know the same members agree, without any message, on one
//! leader per blob: the first in the ranking. The leader downloads from the registry; the
//! others read from it. If it fails, the second in the ranking is everyone's next choice,
//! so exactly one node takes over. No election round trip: a herd starting in the same
//! millisecond still makes one registry download per blob.
use crate::peer::members::mirror_url;
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

/// Members found elsewhere than the file (the cluster's member records). A function
/// rather than the peer layer itself, so this file stays testable on its own.
pub type Discovered = Box<dyn Fn() -> Vec<String> + Send + Sync>;

pub struct Swarm {
    me: String,
    file: Option<PathBuf>,
    /// The file's mirrors as last read, and its modification time then.
    cached: Mutex<(Option<SystemTime>, Vec<String>)>,
    discovered: Option<Discovered>,
}

/// Members ranked for `digest`, best first (ties, impossible in practice, by URL).
pub fn rank(digest: &str, members: &[String]) -> Vec<String> {
    let mut scored: Vec<([u8; 32], &String)> = members
        .iter()
        .map(|m| {
            let mut h = Sha256::new();
            h.update(digest.as_bytes());
            h.update(b"\n");
            h.update(m.as_bytes());
            (h.finalize().into(), m)
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    scored.into_iter().map(|(_, m)| m.clone()).collect()
}

impl Swarm {
    /// `me` is this node's mirror URL as the others name it (`http://<mirror_listen>`).
    pub fn new(me: &str, file: Option<PathBuf>, discovered: Option<Discovered>) -> Swarm {
        let me = me.trim();
        Swarm {
            me: me.strip_suffix('/').unwrap_or(me).to_string(),
            file,
            cached: Mutex::new((None, Vec::new())),
            discovered,
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Every member, this node included, sorted and without duplicates.
    ///
    /// Synchronous: the file is a few lines read only when its modification time moves
    /// (one stat per call otherwise), and the metrics gauge must count members without
    /// an async context.
    pub fn members(&self) -> Vec<String> {
        let mut list = vec![self.me.clone()];
        list.extend(self.file_members());
        if let Some(d) = &self.discovered {
            list.extend(d());
        }
        list.sort();
        list.dedup();
        list
    }

    /// The file's mirrors. An unreadable file leaves the last list read (none if it was
    /// never read).
    fn file_members(&self) -> Vec<String> {
        let Some(file) = &self.file else {
            return Vec::new();
        };
        let modified = std::fs::metadata(file).and_then(|m| m.modified()).ok();
        let mut cached = self.cached.lock().expect("swarm members");
        if modified.is_some() && cached.0 == modified {
            return cached.1.clone();
        }
        match std::fs::read_to_string(file) {
            Ok(text) => *cached = (modified, text.lines().filter_map(mirror_url).collect()),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "swarm peers file unreadable")
            }
        }
        cached.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_ranks_alike_and_leaders_spread() {
        let m: Vec<String> = (0..4).map(|i| format!("http://127.0.0.1:50{i}0")).collect();
        let mut reversed = m.clone();
        reversed.reverse();
        let mut leaders = std::collections::HashSet::new();
        for i in 0..64 {
            let d = format!("sha256:{i:064x}");
            let r = rank(&d, &m);
            assert_eq!(r, rank(&d, &reversed));
            assert_eq!(r.len(), 4);
            leaders.insert(r[0].clone());
        }
        // 64 blobs over 4 nodes: every node leads some (load spread, not one hot node).
        assert_eq!(leaders.len(), 4);
    }

    #[test]
    fn members_come_from_the_file_and_include_me() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("peers");
        std::fs::write(&f, "http://127.0.0.1:2/\n\ngarbage\nhttp://127.0.0.1:1\n").unwrap();
        let s = Swarm::new("http://127.0.0.1:1", Some(f.clone()), None);
        assert_eq!(
            s.members(),
            vec![
                "http://127.0.0.1:1".to_string(),
                "http://127.0.0.1:2".into()
            ]
        );
        std::fs::remove_file(&f).unwrap();
        assert_eq!(s.members().len(), 2, "last list kept");
    }

    #[test]
    fn members_merge_file_and_cluster_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("peers");
        std::fs::write(&f, "http://127.0.0.1:3\nhttp://127.0.0.1:2\n").unwrap();
        let found: Discovered = Box::new(|| {
            vec![
                "http://127.0.0.1:1".into(), // this node's own record
                "http://127.0.0.1:2".into(), // also in the file
                "http://127.0.0.1:4".into(),
            ]
        });
        let s = Swarm::new("http://127.0.0.1:1/", Some(f), Some(found));
        let all: Vec<String> = (1..=4).map(|i| format!("http://127.0.0.1:{i}")).collect();
        assert_eq!(s.members(), all);
        // Cluster only: no file at all.
        let s = Swarm::new(
            "http://127.0.0.1:1",
            None,
            Some(Box::new(|| vec!["http://127.0.0.1:2".into()])),
        );
        assert_eq!(s.members(), all[..2].to_vec());
        assert_eq!(
            Swarm::new("http://127.0.0.1:1", None, None).members(),
            all[..1].to_vec()
        );
    }

    #[test]
    fn the_ranking_is_stable_and_a_new_member_moves_only_its_own_blobs() {
        let three: Vec<String> = (1..=3).map(|i| format!("http://127.0.0.1:{i}")).collect();
        let mut four = three.clone();
        four.push("http://127.0.0.1:4".into());
        // Known answer: the ranking is part of the protocol between nodes of different
        // versions, so it must not drift.
        let d = format!("sha256:{}", "3".repeat(64));
        let expected: Vec<String> = [2, 1, 3]
            .iter()
            .map(|i| format!("http://127.0.0.1:{i}"))
            .collect();
        assert_eq!(rank(&d, &three), expected);
        let mut moved = 0;
        for i in 0..200 {
            let d = format!("sha256:{i:064x}");
            let (before, after) = (rank(&d, &three), rank(&d, &four));
            if after[0] != before[0] {
                // Rendezvous hashing: a blob changes leader only to the newcomer.
                assert_eq!(after[0], four[3]);
                moved += 1;
            }
            let without: Vec<&String> = after.iter().filter(|m| **m != four[3]).collect();
            assert_eq!(
                without,
                before.iter().collect::<Vec<_>>(),
                "order of the others kept"
            );
        }
        assert!((25..=75).contains(&moved), "about a quarter move: {moved}");
    }
}
