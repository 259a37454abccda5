//! Swarm membership through the cluster pinset (`swarm = true`): this node's *member
//! record* and the members the pinset names. A member record is a tiny IPFS object
//! ("ipcs swarm member\n<url>\n") pinned with `ipcs-kind=member`, `ipcs-mirror=<url>` and
//! an expiry. It is re-announced long before it expires, so a node that dies drops out by
//! itself, and withdrawn on a clean stop. Records whose expiry passed are ignored even
//! while the cluster still lists them (the cluster unpins expired pins only at its next
//! state sync). The mirror ranks the members (`mirror/swarm.rs`); this file only says who
//! they are.
use crate::peer::cluster::ClusterClient;
use crate::peer::Peers;
use crate::store::ContentStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a member record counts after it was (re-)announced.
pub const RECORD_LIFETIME: Duration = Duration::from_secs(600);
/// Re-announce period: three missed rounds still leave the record alive.
const REANNOUNCE_EVERY: Duration = Duration::from_secs(180);
/// Retries while the cluster does not answer (start-up: it may come up after ipcs).
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// For this long after start the pinset is read every `FAST_REFRESH`: a herd pulls right
/// after its nodes start, and each must see the others by then. Later joiners are seen
/// within `cluster_refresh_secs` (a disagreement costs one more registry download).
const FAST_WINDOW: Duration = Duration::from_secs(120);
const FAST_REFRESH: Duration = Duration::from_secs(1);
/// A clean stop waits at most this long to withdraw the record.
const LEAVE_WITHIN: Duration = Duration::from_secs(5);
/// Longest mirror URL accepted from a record or the peers file.
const MAX_URL: usize = 256;

/// One member as the pinset names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub url: String,
    /// `None`: the record has no expiry (pinned by hand), it counts until unpinned.
    pub expires: Option<SystemTime>,
}

impl Member {
    pub fn alive_at(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

/// A mirror URL as members are named: `http(s)://host[:port]`, nothing else (no path, no
/// credentials, no whitespace), at most `MAX_URL` bytes; a trailing `/` is dropped.
/// Anything else is `None`: a record is written by any node of the cluster and its URL
/// becomes the base of this node's requests.
pub fn mirror_url(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.strip_suffix('/').unwrap_or(s);
    if s.len() > MAX_URL {
        return None;
    }
    let host = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))?;
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then(|| s.to_string())
}

/// The member a pin names, from its metadata and `expire_at` (absent, or Go's zero time,
/// means none); `None` if the URL is not acceptable or the expiry unreadable.
pub fn from_pin(meta: &HashMap<String, String>, expire_at: Option<&str>) -> Option<Member> {
    let url = mirror_url(meta.get(crate::peer::cluster::MIRROR)?)?;
    let expires = match expire_at {
        None | Some("") => None,
        Some(t) => {
            let secs = crate::peer::rfc3339::parse_unix(t)?;
            // Go writes an unset expiry as year 1 (or 1970 after a round trip).
            u64::try_from(secs)
                .ok()
                .filter(|s| *s > 0)
                .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        }
    };
    Some(Member { url, expires })
}

/// The object a member record pins: unique per URL, so re-announcing pins the same CID.
pub fn record(url: &str) -> Vec<u8> {
    format!("ipcs swarm member\n{url}\n").into_bytes()
}

/// How long the view loop sleeps between pinset reads.
pub fn refresh_every(configured: Duration, discovering: bool, since_start: Duration) -> Duration {
    if discovering && since_start < FAST_WINDOW {
        configured.min(FAST_REFRESH)
    } else {
        configured
    }
}

/// This node's announcement: its URL, and (behind one lock, so that a withdrawal is never
/// followed by a late re-announce) the record's CID and whether the node left.
pub struct Announce {
    url: String,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    cid: Option<String>,
    left: bool,
}

impl Announce {
    pub fn new(url: String) -> Announce {
        Announce {
            url,
            state: Default::default(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Announces this node now, then every `REANNOUNCE_EVERY`; retries with backoff while the
/// cluster (or Kubo) does not answer. Each announce asks the view loop for a fresh pinset,
/// so this node sees the others (and its own record) at once. Never blocks anything.
pub(crate) fn spawn(peers: Arc<Peers>, store: ContentStore) {
    tokio::spawn(async move {
        let (Some(cluster), Some(me)) = (peers.cluster.clone(), peers.member.as_ref()) else {
            return;
        };
        let mut retry = RETRY_FIRST;
        let mut failing = false;
        let mut announced = false;
        loop {
            match announce(me, &cluster, &store).await {
                Ok(true) => {
                    if failing || !announced {
                        tracing::info!(url = %me.url, "announced as a swarm member in the cluster pinset");
                    }
                    announced = true;
                    failing = false;
                    retry = RETRY_FIRST;
                    peers.publish_now.notify_one();
                    tokio::time::sleep(REANNOUNCE_EVERY).await;
                }
                Ok(false) => return,
                Err(e) => {
                    if !failing {
                        tracing::warn!(url = %me.url, error = %e, "announcing this node to the swarm failed; retrying");
                    }
                    failing = true;
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    });
}

/// One announce; `Ok(false)` once the node has left.
async fn announce(
    me: &Announce,
    cluster: &ClusterClient,
    store: &ContentStore,
) -> Result<bool, String> {
    // Added each time: cheap, and it survives a Kubo whose repo was reset.
    let cid = store
        .backend()
        .add_record(record(&me.url))
        .await
        .map_err(|e| e.to_string())?;
    let mut state = me.state.lock().await;
    if state.left {
        return Ok(false);
    }
    let expires = SystemTime::now() + RECORD_LIFETIME;
    cluster
        .pin_member(cid.as_str(), &me.url, expires)
        .await
        .map_err(|e| e.to_string())?;
    state.cid = Some(cid.as_str().to_string());
    Ok(true)
}

impl Peers {
    /// The mirrors of the unexpired member records in the last pinset snapshot (this
    /// node's own among them once announced); empty unless `swarm = true`.
    pub fn swarm_members(&self) -> Vec<String> {
        if self.member.is_none() {
            return Vec::new();
        }
        self.resolver.swarm_members(SystemTime::now())
    }

    /// Withdraws this node's member record (a clean stop), within `LEAVE_WITHIN`; the
    /// record expires by itself if the cluster does not answer in time.
    pub async fn leave_swarm(&self) {
        let (Some(cluster), Some(me)) = (&self.cluster, &self.member) else {
            return;
        };
        let started = Instant::now();
        let leave = async {
            let mut state = me.state.lock().await;
            state.left = true;
            let Some(cid) = state.cid.take() else {
                return Ok(());
            };
            cluster.unpin(&cid).await
        };
        match tokio::time::timeout(LEAVE_WITHIN, leave).await {
            Ok(Ok(())) => tracing::info!(url = %me.url, "left the swarm (member record withdrawn)"),
            Ok(Err(e)) => {
                tracing::warn!(url = %me.url, error = %e, "withdrawing the member record failed; it expires by itself")
            }
            Err(_) => {
                tracing::warn!(url = %me.url, waited = ?started.elapsed(), "withdrawing the member record timed out; it expires by itself")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(url: &str) -> HashMap<String, String> {
        [("ipcs-kind", "member"), ("ipcs-mirror", url)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_plain_mirror_urls_are_members() {
        assert_eq!(
            mirror_url(" http://127.0.0.1:5080/ ").as_deref(),
            Some("http://127.0.0.1:5080")
        );
        assert_eq!(
            mirror_url("https://[::1]:5080").as_deref(),
            Some("https://[::1]:5080")
        );
        let long = format!("http://{}", "a".repeat(MAX_URL));
        for bad in [
            "",
            "http://",
            "ftp://x:1",
            "127.0.0.1:5080",
            "http://x:1/path",
            "http://u:p@x:1",
            "http://x:1?q",
            "http://a b",
            "http://x\ny:1",
            &long,
        ] {
            assert_eq!(mirror_url(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn member_records_carry_url_and_expiry() {
        let m = from_pin(&meta("http://127.0.0.1:1"), Some("2030-01-01T00:00:00Z")).unwrap();
        assert_eq!(m.url, "http://127.0.0.1:1");
        let at = UNIX_EPOCH + Duration::from_secs(1_893_456_000);
        assert_eq!(m.expires, Some(at));
        assert!(m.alive_at(at - Duration::from_secs(1)));
        assert!(!m.alive_at(at), "expired the moment it says");
        for unset in [
            None,
            Some(""),
            Some("0001-01-01T00:00:00Z"),
            Some("1970-01-01T00:00:00Z"),
        ] {
            let m = from_pin(&meta("http://127.0.0.1:1"), unset).unwrap();
            assert_eq!(m.expires, None, "{unset:?}");
        }
        assert_eq!(from_pin(&meta("http://127.0.0.1:1"), Some("soon")), None);
        assert_eq!(from_pin(&meta("javascript:alert(1)"), None), None);
        assert_eq!(from_pin(&HashMap::new(), None), None);
    }

    #[test]
    fn fast_refresh_only_early_and_only_when_discovering() {
        let five = Duration::from_secs(5);
        assert_eq!(refresh_every(five, true, Duration::ZERO), FAST_REFRESH);
        assert_eq!(refresh_every(five, true, FAST_WINDOW), five);
        assert_eq!(refresh_every(five, false, Duration::ZERO), five);
        assert_eq!(
            refresh_every(Duration::from_millis(200), true, Duration::ZERO),
            Duration::from_millis(200)
        );
    }
}
