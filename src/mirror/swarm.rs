//! The nodes of this swarm and who leads which blob. Members are the mirrors named in
//! `swarm_peers_file` (re-read when it changes) plus this node. Every node ranks the
//! members for a digest by rendezvous hashing (sha256 of digest and member URL), so all
//! nodes that know the same members agree, without any message, on one leader per blob:
//! the first in the ranking. The leader downloads from the registry; the others read
//! from it. If it fails, the second in the ranking is everyone's next choice, so exactly
//! one node takes over. No election round trip: a herd starting in the same millisecond
//! still makes one registry download per blob.
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

pub struct Swarm {
    me: String,
    file: PathBuf,
    cached: Mutex<(Option<SystemTime>, Vec<String>)>,
}

fn normalise(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
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
    pub fn new(me: &str, file: PathBuf) -> Swarm {
        Swarm {
            me: normalise(me),
            file,
            cached: Mutex::new((None, Vec::new())),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Every member, this node included, sorted and without duplicates. An unreadable
    /// file leaves the last list read (a node alone if it was never read).
    pub async fn members(&self) -> Vec<String> {
        let modified = tokio::fs::metadata(&self.file)
            .await
            .and_then(|m| m.modified())
            .ok();
        {
            let c = self.cached.lock().expect("swarm members");
            if modified.is_some() && c.0 == modified {
                return c.1.clone();
            }
        }
        let mut list = vec![self.me.clone()];
        match tokio::fs::read_to_string(&self.file).await {
            Ok(text) => list.extend(
                text.lines()
                    .map(normalise)
                    .filter(|l| l.starts_with("http://") || l.starts_with("https://")),
            ),
            Err(e) => {
                tracing::warn!(file = %self.file.display(), error = %e, "swarm peers file unreadable");
                return self.cached.lock().expect("swarm members").1.clone();
            }
        }
        list.sort();
        list.dedup();
        *self.cached.lock().expect("swarm members") = (modified, list.clone());
        list
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

    #[tokio::test]
    async fn members_come_from_the_file_and_include_me() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("peers");
        std::fs::write(&f, "http://127.0.0.1:2/\n\ngarbage\nhttp://127.0.0.1:1\n").unwrap();
        let s = Swarm::new("http://127.0.0.1:1", f.clone());
        assert_eq!(
            s.members().await,
            vec![
                "http://127.0.0.1:1".to_string(),
                "http://127.0.0.1:2".into()
            ]
        );
        std::fs::remove_file(&f).unwrap();
        assert_eq!(s.members().await.len(), 2, "last list kept");
    }
}
