//! Where a blob this node never stored may be found in IPFS. Two sources give unverified
//! digest → CID hints: the IPFS Cluster pinset (mirrored in the background by `cluster`)
//! and `ipfs://<cid>` URLs on descriptors of committed manifests (`manifest`). The core
//! checks every hint by hashing the fetched bytes; a hint that fails is rejected here and
//! never tried again.
use crate::peer::manifest::ipfs_urls;
use crate::peer::members::Member;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::{Instant, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cluster,
    ManifestUrl,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub cid: String,
    pub size: u64,
    pub origin: Origin,
}

/// Tag → manifest records published through the cluster by the registry mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// When it was published, for "newest wins" among records of one tag.
    pub published: String,
}

#[derive(Default)]
pub struct Resolver {
    cluster: RwLock<ClusterView>,
    from_manifests: RwLock<HashMap<String, Candidate>>,
    rejected: Mutex<HashSet<(String, String)>>,
}

/// The last pinset snapshot read from the cluster.
#[derive(Default)]
pub struct ClusterView {
    pub blobs: HashMap<String, Candidate>,
    pub tags: HashMap<String, TagRecord>,
    /// CIDs in the pinset, whatever their kind: what this node need not pin again.
    pub cids: HashSet<String>,
    /// Swarm member records (`members`), expired ones included: expiry is judged when
    /// the members are asked for, since a snapshot is read seconds before it is used.
    pub members: Vec<Member>,
    pub refreshed: Option<Instant>,
}

impl Resolver {
    /// Hints for `digest`, cluster first, minus those already proven wrong.
    pub fn candidates(&self, digest: &str) -> Vec<Candidate> {
        let rejected = self.rejected.lock().expect("rejected set");
        let mut out = Vec::new();
        if let Some(c) = self.cluster.read().expect("cluster view").blobs.get(digest) {
            out.push(c.clone());
        }
        if let Some(c) = self
            .from_manifests
            .read()
            .expect("manifest hints")
            .get(digest)
        {
            if !out.iter().any(|o| o.cid == c.cid) {
                out.push(c.clone());
            }
        }
        out.retain(|c| !rejected.contains(&(digest.to_string(), c.cid.clone())));
        out
    }

    /// Remembers that `cid` does not hold `digest`.
    pub fn reject(&self, digest: &str, cid: &str) {
        self.rejected
            .lock()
            .expect("rejected set")
            .insert((digest.to_string(), cid.to_string()));
    }

    pub fn set_cluster_view(&self, view: ClusterView) {
        *self.cluster.write().expect("cluster view") = view;
    }

    pub fn cluster_has_cid(&self, cid: &str) -> bool {
        self.cluster
            .read()
            .expect("cluster view")
            .cids
            .contains(cid)
    }

    pub fn cluster_refreshed(&self) -> Option<Instant> {
        self.cluster.read().expect("cluster view").refreshed
    }

    /// The mirrors of the member records alive at `now`, sorted, without duplicates.
    pub fn swarm_members(&self, now: SystemTime) -> Vec<String> {
        let view = self.cluster.read().expect("cluster view");
        let mut out: Vec<String> = view
            .members
            .iter()
            .filter(|m| m.alive_at(now))
            .map(|m| m.url.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn tag(&self, reference: &str) -> Option<TagRecord> {
        self.cluster
            .read()
            .expect("cluster view")
            .tags
            .get(reference)
            .cloned()
    }

    /// Learns one digest → CID hint from an `ipfs://` URL found elsewhere (the root
    /// descriptor of an `ipfs://<CID>` image); checked like every other hint.
    pub fn learn_hint(&self, digest: &str, cid: &str, size: u64) {
        self.from_manifests.write().expect("manifest hints").insert(
            digest.to_string(),
            Candidate {
                cid: cid.to_string(),
                size,
                origin: Origin::ManifestUrl,
            },
        );
    }

    /// Learns the `ipfs://` URLs of a manifest or index; returns how many were new.
    pub fn learn_from_manifest(&self, json: &[u8]) -> usize {
        let found = ipfs_urls(json);
        let mut hints = self.from_manifests.write().expect("manifest hints");
        let mut new = 0;
        for (digest, cid, size) in found {
            let c = Candidate {
                cid,
                size,
                origin: Origin::ManifestUrl,
            };
            if hints.insert(digest, c.clone()).as_ref() != Some(&c) {
                new += 1;
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_hints_are_not_offered_again() {
        let r = Resolver::default();
        let mut view = ClusterView::default();
        view.blobs.insert(
            "sha256:a".into(),
            Candidate {
                cid: "bafyA".into(),
                size: 3,
                origin: Origin::Cluster,
            },
        );
        r.set_cluster_view(view);
        assert_eq!(r.candidates("sha256:a").len(), 1);
        r.reject("sha256:a", "bafyA");
        assert!(r.candidates("sha256:a").is_empty());
        assert!(r.candidates("sha256:b").is_empty());
    }
}
