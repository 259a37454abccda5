//! Which repositories this node shares with its swarm (`share_repositories`). Any node
//! holding the swarm key and the mirror secret can ask for any blob another node holds,
//! including blobs of images it had no registry credentials for; a node that pulls
//! private images names the repositories it is willing to share, and blobs of every
//! other repository are neither served to peers nor published to the cluster.
//! Repositories are `host/name` (containerd's `ns` plus the path name, or the
//! `containerd.io/distribution.source.<host>` label's value); a pattern ending in `*`
//! matches any name with that prefix. No pattern: everything is shared.
use std::collections::BTreeMap;

const SOURCE_LABEL: &str = "containerd.io/distribution.source.";

#[derive(Debug, Clone, Default)]
pub struct SharePolicy {
    patterns: Vec<String>,
}

/// What a blob's labels say about sharing it.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Share,
    Keep,
    /// No distribution-source label yet (containerd adds it after the commit).
    Unknown,
}

impl SharePolicy {
    pub fn new(patterns: &[String]) -> SharePolicy {
        SharePolicy {
            patterns: patterns
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    pub fn shares_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether repository `host/name` is shared.
    pub fn shares(&self, repository: &str) -> bool {
        self.shares_all()
            || self.patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => repository.starts_with(prefix),
                None => repository == p,
            })
    }

    /// From containerd's `containerd.io/distribution.source.<host>=<name>[,<name>...]`
    /// labels: shared if one of the repositories it came from is.
    pub fn verdict(&self, labels: &BTreeMap<String, String>) -> Verdict {
        if self.shares_all() {
            return Verdict::Share;
        }
        let mut seen = false;
        for (k, v) in labels {
            let Some(host) = k.strip_prefix(SOURCE_LABEL) else {
                continue;
            };
            seen = true;
            if v.split(',')
                .any(|name| self.shares(&format!("{host}/{name}")))
            {
                return Verdict::Share;
            }
        }
        if seen {
            Verdict::Keep
        } else {
            Verdict::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_policy_shares_everything() {
        let p = SharePolicy::new(&[]);
        assert!(p.shares("r:5000/private/x"));
        assert_eq!(p.verdict(&BTreeMap::new()), Verdict::Share);
    }

    #[test]
    fn patterns_match_exactly_or_by_prefix() {
        let p = SharePolicy::new(&["r:5000/ipcs/*".into(), "docker.io/library/alpine".into()]);
        assert!(p.shares("r:5000/ipcs/big"));
        assert!(p.shares("docker.io/library/alpine"));
        assert!(!p.shares("docker.io/library/alpine2"));
        assert!(!p.shares("r:5000/private/big"));
        assert!(!p.shares("r:5001/ipcs/big"));
    }

    #[test]
    fn labels_decide_and_their_absence_is_unknown() {
        let p = SharePolicy::new(&["r:5000/ipcs/*".into()]);
        let mut l = BTreeMap::new();
        assert_eq!(p.verdict(&l), Verdict::Unknown);
        l.insert(format!("{SOURCE_LABEL}r:5000"), "private/x".to_string());
        assert_eq!(p.verdict(&l), Verdict::Keep);
        l.insert(
            format!("{SOURCE_LABEL}r:5000"),
            "private/x,ipcs/small".to_string(),
        );
        assert_eq!(p.verdict(&l), Verdict::Share);
    }
}
