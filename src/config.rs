//! One `Config` for the daemon, merged from defaults, a TOML file, `IPCS_*` environment
//! variables and command-line flags (later sources win).
use crate::endpoint::Endpoint;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// containerd's limit for one label: key and value together.
pub const MAX_ONE_LABEL_BYTES: usize = 4096;
/// Hard upper bound of `max_ref_bytes` (refs are index keys and log fields).
pub const MAX_REF_BYTES: usize = 4096;

/// How blobs become UnixFS DAGs. Passed explicitly on every import so that a Kubo
/// configured differently still produces the same CIDs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportOptions {
    pub chunk_size: u32,
    pub cid_version: u8,
    pub raw_leaves: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            chunk_size: 262_144,
            cid_version: 1,
            raw_leaves: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Unix socket containerd's proxy plugin dials.
    pub socket: PathBuf,
    /// Index, ingests and the local blob cache live here.
    pub data_dir: PathBuf,
    /// Kubo's HTTP RPC endpoint.
    pub kubo_api: String,
    /// Deadline for Kubo calls that do not move blob bytes.
    pub kubo_timeout_secs: u64,
    /// Slowest transfer rate tolerated when moving a blob to or from Kubo; sets the
    /// deadline of those calls as `kubo_timeout_secs + size / rate`.
    pub kubo_min_rate_bytes_per_sec: u64,
    /// How long a Write waits for a ref held by another stream before UNAVAILABLE.
    pub lock_wait_ms: u64,
    /// gRPC message limit both ways (containerd sends up to 16 MiB).
    pub max_message_bytes: usize,
    /// Write streams holding an ingest at once; one more gets RESOURCE_EXHAUSTED. Each
    /// holds an open file and a hasher, so this bounds fds and memory under a flood.
    pub max_open_ingests: usize,
    /// Total bytes of one blob's labels (keys + values). containerd itself only limits
    /// each key + value to 4096 bytes; this bounds what one record can make us store.
    pub max_label_bytes: usize,
    /// Longest ingest ref accepted (containerd's are ~100 bytes, BuildKit's a few hundred).
    pub max_ref_bytes: usize,
    /// Upper bound of the local blob cache that serves Reads without Kubo round trips.
    pub cache_max_bytes: u64,
    /// Keep each committed blob once: Kubo's filestore references the blob file ipcs
    /// keeps (`add --nocopy`) instead of copying it into its blockstore. Startup refuses
    /// a Kubo that cannot; `false` keeps two copies (blockstore + cache).
    pub filestore: bool,
    /// With `filestore`: a commit records the CID ipcs computed while the blob streamed
    /// in and answers at once; Kubo imports the stored file right after, in the
    /// background. `false`: the commit waits for Kubo's import.
    pub import_after_commit: bool,
    /// IPFS Cluster REST API shared by the nodes; none means this node works alone.
    pub cluster_api: Option<String>,
    /// Replication factor of the blobs this node publishes (-1: every cluster peer).
    pub cluster_replication: i32,
    /// How often the local mirror of the cluster pinset is refreshed.
    pub cluster_refresh_secs: u64,
    /// How long a blob known from peers may take to arrive before containerd is told
    /// NOT_FOUND, so that it downloads from the registry instead.
    pub peer_fetch_deadline_secs: u64,
    /// Address of the registry mirror for containerd's hosts.toml (none: disabled).
    pub mirror_listen: Option<String>,
    /// In-flight sharing (docs/inflight.md): a file naming the mirrors of the nodes of this
    /// swarm, one `http://host:port` per line (this node's own may be among them), read
    /// again on every change. With it, the mirror downloads blobs the store lacks itself,
    /// from the node that leads each blob or, if this node leads, from the registry.
    pub swarm_peers_file: Option<PathBuf>,
    /// In-flight sharing with members discovered through the cluster pinset: this node
    /// announces its mirror there (a member record that expires unless renewed) and
    /// counts every node that does as a member, besides those of `swarm_peers_file`.
    /// Needs `mirror_listen` and `cluster_api`.
    pub swarm: bool,
    /// Registry hosts (`host:port`) the mirror speaks plain HTTP to, besides loopback ones.
    pub registry_plain_http: Vec<String>,
    /// Repositories (`host/name`, a trailing `*` matches any rest) whose blobs this node
    /// serves to peers and publishes to the cluster; empty: all (docs/inflight.md, trust).
    pub share_repositories: Vec<String>,
    /// A source of an in-flight blob that sends nothing for this long is abandoned.
    pub inflight_stall_secs: u64,
    /// Slowest rate tolerated from one source of an in-flight blob; with the stall time
    /// it sets that source's deadline (`stall + remaining / rate`).
    pub inflight_min_rate_bytes_per_sec: u64,
    /// How long a finished in-flight file is kept for nodes that arrive late.
    pub inflight_keep_secs: u64,
    /// On SIGTERM, how long requests in flight (Read streams, Writes, commits) may take to
    /// finish before ipcs exits anyway. systemd's TimeoutStopSec must be longer.
    pub drain_secs: u64,
    /// Where Prometheus metrics, /healthz and /readyz are served: a loopback `host:port`
    /// or `unix:///path` (none: disabled).
    pub metrics_listen: Option<String>,
    /// Log lines as human-readable text or one JSON object each.
    pub log_format: LogFormat,
    pub import: ImportOptions,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from("/run/ipcs/ipcs.sock"),
            data_dir: PathBuf::from("/var/lib/ipcs"),
            kubo_api: "unix:///run/kubo/api.sock".to_string(),
            kubo_timeout_secs: 30,
            kubo_min_rate_bytes_per_sec: 8 << 20,
            lock_wait_ms: 1000,
            max_message_bytes: 32 << 20,
            max_open_ingests: 1024,
            max_label_bytes: 256 << 10,
            max_ref_bytes: MAX_REF_BYTES,
            cache_max_bytes: 8 << 30,
            filestore: true,
            import_after_commit: true,
            cluster_api: None,
            cluster_replication: -1,
            cluster_refresh_secs: 5,
            peer_fetch_deadline_secs: 120,
            mirror_listen: None,
            swarm_peers_file: None,
            swarm: false,
            registry_plain_http: Vec::new(),
            share_repositories: Vec::new(),
            inflight_stall_secs: 10,
            inflight_min_rate_bytes_per_sec: 1 << 20,
            inflight_keep_secs: 300,
            drain_secs: 30,
            metrics_listen: None,
            log_format: LogFormat::Text,
            import: ImportOptions::default(),
        }
    }
}

/// Values given on the command line or in the environment; `None` keeps the file's value.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "IPCS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Unix socket to serve on.
    #[arg(long, env = "IPCS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Directory for the index, ingests and blob cache.
    #[arg(long, env = "IPCS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kubo RPC address: unix:///run/kubo/api.sock (default) or an http:// URL.
    #[arg(long, env = "IPCS_KUBO_API")]
    pub kubo_api: Option<String>,
    /// Deadline in seconds for Kubo calls that do not move blob bytes.
    #[arg(long, env = "IPCS_KUBO_TIMEOUT_SECS")]
    pub kubo_timeout_secs: Option<u64>,
    /// gRPC message limit in bytes, both ways (at least 16 MiB, containerd's).
    #[arg(long, env = "IPCS_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Write streams holding an ingest at once.
    #[arg(long, env = "IPCS_MAX_OPEN_INGESTS")]
    pub max_open_ingests: Option<usize>,
    /// Total bytes of one blob's labels.
    #[arg(long, env = "IPCS_MAX_LABEL_BYTES")]
    pub max_label_bytes: Option<usize>,
    /// Longest ingest ref in bytes.
    #[arg(long, env = "IPCS_MAX_REF_BYTES")]
    pub max_ref_bytes: Option<usize>,
    /// Upper bound of the local blob cache in bytes.
    #[arg(long, env = "IPCS_CACHE_MAX_BYTES")]
    pub cache_max_bytes: Option<u64>,
    /// Keep each blob once, referenced by Kubo's filestore (true) or copied (false).
    #[arg(long, env = "IPCS_FILESTORE")]
    pub filestore: Option<bool>,
    /// With filestore: record the CID computed while streaming and import into Kubo after
    /// the commit (true), or import before answering the commit (false).
    #[arg(long, env = "IPCS_IMPORT_AFTER_COMMIT")]
    pub import_after_commit: Option<bool>,
    /// IPFS Cluster REST API: unix:///run/ipfs-cluster/api.sock or an http:// URL.
    #[arg(long, env = "IPCS_CLUSTER_API")]
    pub cluster_api: Option<String>,
    /// Replication factor of published blobs (-1: every cluster peer).
    #[arg(long, env = "IPCS_CLUSTER_REPLICATION", allow_hyphen_values = true)]
    pub cluster_replication: Option<i32>,
    /// Seconds between refreshes of the local mirror of the cluster pinset.
    #[arg(long, env = "IPCS_CLUSTER_REFRESH_SECS")]
    pub cluster_refresh_secs: Option<u64>,
    /// Seconds a blob known from peers may take before falling back to the registry.
    #[arg(long, env = "IPCS_PEER_FETCH_DEADLINE_SECS")]
    pub peer_fetch_deadline_secs: Option<u64>,
    /// Serve a registry mirror for containerd's hosts.toml on this loopback address.
    #[arg(long, env = "IPCS_MIRROR_LISTEN")]
    pub mirror_listen: Option<String>,
    /// File naming the mirrors of this swarm's nodes (enables in-flight sharing).
    #[arg(long, env = "IPCS_SWARM_PEERS_FILE")]
    pub swarm_peers_file: Option<PathBuf>,
    /// In-flight sharing with the members announced in the cluster pinset (true/false,
    /// 1/0, yes/no).
    #[arg(long, env = "IPCS_SWARM", value_parser = clap::builder::BoolishValueParser::new())]
    pub swarm: Option<bool>,
    /// Registry hosts (host:port, comma-separated) spoken to over plain HTTP.
    #[arg(long, env = "IPCS_REGISTRY_PLAIN_HTTP", value_delimiter = ',')]
    pub registry_plain_http: Option<Vec<String>>,
    /// Repositories (host/name, trailing * allowed, comma-separated) shared with peers.
    #[arg(long, env = "IPCS_SHARE_REPOSITORIES", value_delimiter = ',')]
    pub share_repositories: Option<Vec<String>>,
    /// Seconds without bytes after which a source of an in-flight blob is abandoned.
    #[arg(long, env = "IPCS_INFLIGHT_STALL_SECS")]
    pub inflight_stall_secs: Option<u64>,
    /// Slowest rate tolerated from one source of an in-flight blob (bytes/s).
    #[arg(long, env = "IPCS_INFLIGHT_MIN_RATE_BYTES_PER_SEC")]
    pub inflight_min_rate_bytes_per_sec: Option<u64>,
    /// Seconds a finished in-flight file is kept for nodes that arrive late.
    #[arg(long, env = "IPCS_INFLIGHT_KEEP_SECS")]
    pub inflight_keep_secs: Option<u64>,
    /// Seconds requests in flight may take to finish after SIGTERM (0: stop at once).
    #[arg(long, env = "IPCS_DRAIN_SECS")]
    pub drain_secs: Option<u64>,
    /// Serve Prometheus metrics, /healthz and /readyz on this loopback host:port or
    /// unix:///path.
    #[arg(long, env = "IPCS_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Log format: text or json (one JSON object per line).
    #[arg(long, env = "IPCS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// UnixFS chunk size of imported blobs (changes their CIDs).
    #[arg(long, env = "IPCS_IMPORT_CHUNK_SIZE")]
    pub import_chunk_size: Option<u32>,
    /// CID version of imported blobs, 0 or 1 (changes their CIDs).
    #[arg(long, env = "IPCS_IMPORT_CID_VERSION")]
    pub import_cid_version: Option<u8>,
    /// Raw leaf blocks for imported blobs (changes their CIDs).
    #[arg(long, env = "IPCS_IMPORT_RAW_LEAVES")]
    pub import_raw_leaves: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(o: &Overrides) -> Result<Config, ConfigError> {
        let mut c = match &o.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = &o.socket {
            c.socket = v.clone();
        }
        if let Some(v) = &o.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &o.kubo_api {
            c.kubo_api = v.clone();
        }
        if let Some(v) = o.kubo_timeout_secs {
            c.kubo_timeout_secs = v;
        }
        if let Some(v) = o.max_message_bytes {
            c.max_message_bytes = v;
        }
        if let Some(v) = o.max_open_ingests {
            c.max_open_ingests = v;
        }
        if let Some(v) = o.max_label_bytes {
            c.max_label_bytes = v;
        }
        if let Some(v) = o.max_ref_bytes {
            c.max_ref_bytes = v;
        }
        if let Some(v) = o.cache_max_bytes {
            c.cache_max_bytes = v;
        }
        if let Some(v) = o.filestore {
            c.filestore = v;
        }
        if let Some(v) = o.import_after_commit {
            c.import_after_commit = v;
        }
        if let Some(v) = &o.cluster_api {
            c.cluster_api = Some(v.clone());
        }
        if let Some(v) = o.cluster_replication {
            c.cluster_replication = v;
        }
        if let Some(v) = o.cluster_refresh_secs {
            c.cluster_refresh_secs = v;
        }
        if let Some(v) = o.peer_fetch_deadline_secs {
            c.peer_fetch_deadline_secs = v;
        }
        if let Some(v) = &o.mirror_listen {
            c.mirror_listen = Some(v.clone());
        }
        if let Some(v) = &o.swarm_peers_file {
            c.swarm_peers_file = Some(v.clone());
        }
        if let Some(v) = o.swarm {
            c.swarm = v;
        }
        if let Some(v) = &o.registry_plain_http {
            c.registry_plain_http = v.clone();
        }
        if let Some(v) = &o.share_repositories {
            c.share_repositories = v.clone();
        }
        if let Some(v) = o.inflight_stall_secs {
            c.inflight_stall_secs = v;
        }
        if let Some(v) = o.inflight_min_rate_bytes_per_sec {
            c.inflight_min_rate_bytes_per_sec = v;
        }
        if let Some(v) = o.inflight_keep_secs {
            c.inflight_keep_secs = v;
        }
        if let Some(v) = o.drain_secs {
            c.drain_secs = v;
        }
        if let Some(v) = &o.metrics_listen {
            c.metrics_listen = Some(v.clone());
        }
        if let Some(v) = o.log_format {
            c.log_format = v;
        }
        if let Some(v) = o.import_chunk_size {
            c.import.chunk_size = v;
        }
        if let Some(v) = o.import_cid_version {
            c.import.cid_version = v;
        }
        if let Some(v) = o.import_raw_leaves {
            c.import.raw_leaves = v;
        }
        c.validate()?;
        Ok(c)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Err(e) = Endpoint::parse(&self.kubo_api) {
            return bad(format!("kubo_api {e}"));
        }
        if let Some(Err(e)) = self.cluster_api.as_deref().map(Endpoint::parse) {
            return bad(format!("cluster_api {e}"));
        }
        if self.cluster_replication == 0 || self.cluster_replication < -1 {
            return bad("cluster_replication must be -1 (every peer) or at least 1".into());
        }
        if self.cluster_refresh_secs == 0 || self.peer_fetch_deadline_secs == 0 {
            return bad("cluster_refresh_secs and peer_fetch_deadline_secs must be > 0".into());
        }
        if let Some(addr) = &self.mirror_listen {
            match addr.parse::<std::net::SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => {}
                Ok(_) => return bad(format!("mirror_listen {addr} is not a loopback address")),
                Err(e) => return bad(format!("mirror_listen {addr:?}: {e}")),
            }
        }
        if let Some(Err(e)) = self
            .metrics_listen
            .as_deref()
            .map(crate::metrics::http::Listen::parse)
        {
            return bad(format!("metrics_listen {e}"));
        }
        if self.swarm_peers_file.is_some() && self.mirror_listen.is_none() {
            return bad(
                "swarm_peers_file needs mirror_listen (peers fetch from this mirror)".into(),
            );
        }
        if self.swarm && (self.mirror_listen.is_none() || self.cluster_api.is_none()) {
            return bad(
                "swarm = true needs mirror_listen (peers fetch from this mirror) and \
                 cluster_api (members are announced in its pinset)"
                    .into(),
            );
        }
        if self.inflight_stall_secs == 0 || self.inflight_min_rate_bytes_per_sec == 0 {
            return bad(
                "inflight_stall_secs and inflight_min_rate_bytes_per_sec must be > 0".into(),
            );
        }
        if self.import.cid_version == 0 && self.import.raw_leaves {
            return bad("import.raw_leaves needs import.cid_version = 1".into());
        }
        if self.import.cid_version > 1 {
            return bad(format!(
                "import.cid_version {} is not 0 or 1",
                self.import.cid_version
            ));
        }
        if self.import.chunk_size == 0 || self.import.chunk_size > 1 << 20 {
            return bad(format!(
                "import.chunk_size {} must be between 1 and 1048576",
                self.import.chunk_size
            ));
        }
        if self.max_message_bytes < 16 << 20 || self.max_message_bytes > 1 << 30 {
            return bad(format!(
                "max_message_bytes {} must be between 16 MiB (containerd's limit) and 1 GiB",
                self.max_message_bytes
            ));
        }
        // containerd pulls a few layers per image at once and BuildKit a few dozen; fewer
        // than 16 slots would fail ordinary parallel pulls.
        if !(16..=1 << 20).contains(&self.max_open_ingests) {
            return bad(format!(
                "max_open_ingests {} must be between 16 and 1048576",
                self.max_open_ingests
            ));
        }
        // Below one containerd-legal label, a label containerd accepts could be refused.
        if self.max_label_bytes < MAX_ONE_LABEL_BYTES {
            return bad(format!(
                "max_label_bytes {} must be at least {MAX_ONE_LABEL_BYTES} (one containerd label)",
                self.max_label_bytes
            ));
        }
        if !(256..=MAX_REF_BYTES).contains(&self.max_ref_bytes) {
            return bad(format!(
                "max_ref_bytes {} must be between 256 and {MAX_REF_BYTES}",
                self.max_ref_bytes
            ));
        }
        // An hour is far beyond any pull's tail; more would only hide a stuck request.
        if self.drain_secs > 3600 {
            return bad(format!(
                "drain_secs {} must be between 0 and 3600",
                self.drain_secs
            ));
        }
        if self.kubo_timeout_secs == 0 || self.kubo_min_rate_bytes_per_sec == 0 {
            return bad("kubo_timeout_secs and kubo_min_rate_bytes_per_sec must be > 0".into());
        }
        Ok(())
    }

    /// In-flight sharing is on: members come from a file, the cluster, or both.
    pub fn in_flight_sharing(&self) -> bool {
        self.swarm || self.swarm_peers_file.is_some()
    }

    pub fn kubo_timeout(&self) -> Duration {
        Duration::from_secs(self.kubo_timeout_secs)
    }

    pub fn peer_fetch_deadline(&self) -> Duration {
        Duration::from_secs(self.peer_fetch_deadline_secs)
    }

    pub fn cluster_refresh(&self) -> Duration {
        Duration::from_secs(self.cluster_refresh_secs)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_secs)
    }

    pub fn lock_wait(&self) -> Duration {
        Duration::from_millis(self.lock_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_then_overrides_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipcs.toml");
        std::fs::write(
            &path,
            "socket = \"/tmp/a.sock\"\nkubo_api = \"http://127.0.0.1:1\"\n[import]\nchunk_size = 1024\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            kubo_api: Some("http://127.0.0.1:2".into()),
            ..Default::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.kubo_api, "http://127.0.0.1:2");
        assert_eq!(c.import.chunk_size, 1024);
        let o = Overrides {
            config: Some(path),
            import_chunk_size: Some(4096),
            ..Default::default()
        };
        assert_eq!(Config::load(&o).unwrap().import.chunk_size, 4096);
        assert!(c.import.raw_leaves);
    }

    #[test]
    fn metrics_listen_and_log_format_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipcs.toml");
        std::fs::write(
            &path,
            "metrics_listen = \"127.0.0.1:9464\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(Config::default().log_format, LogFormat::Text);
        assert_eq!(Config::default().metrics_listen, None);
        let o = Overrides {
            config: Some(path.clone()),
            metrics_listen: Some("unix:///run/ipcs/metrics.sock".into()),
            log_format: Some(LogFormat::Text),
            ..Default::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(
            c.metrics_listen.as_deref(),
            Some("unix:///run/ipcs/metrics.sock")
        );
        assert_eq!(c.log_format, LogFormat::Text);
        let o = Overrides {
            metrics_listen: Some("0.0.0.0:9464".into()),
            ..Default::default()
        };
        let e = Config::load(&o).unwrap_err().to_string();
        assert!(
            e.contains("metrics_listen") && e.contains("loopback"),
            "{e}"
        );
        std::fs::write(&path, "log_format = \"xml\"\n").unwrap();
        let o = Overrides {
            config: Some(path),
            ..Default::default()
        };
        assert!(Config::load(&o).is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipcs.toml");
        std::fs::write(&path, "sockte = \"/x\"\n").unwrap();
        assert!(Config::from_file(&path).is_err());
        let o = Overrides {
            kubo_api: Some("127.0.0.1:5001".into()),
            ..Default::default()
        };
        assert!(Config::load(&o).is_err());
    }

    #[test]
    fn limits_come_from_file_env_and_flags_and_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipcs.toml");
        std::fs::write(
            &path,
            "max_open_ingests = 64\nmax_label_bytes = 8192\nmax_ref_bytes = 512\nmax_message_bytes = 20971520\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(
            (c.max_open_ingests, c.max_label_bytes, c.max_ref_bytes),
            (64, 8192, 512)
        );
        assert_eq!(c.max_message_bytes, 20 << 20);
        let o = Overrides {
            config: Some(path),
            max_open_ingests: Some(32),
            ..Default::default()
        };
        assert_eq!(Config::load(&o).unwrap().max_open_ingests, 32);
        for bad in [
            Overrides {
                max_open_ingests: Some(0),
                ..Default::default()
            },
            Overrides {
                max_label_bytes: Some(4095),
                ..Default::default()
            },
            Overrides {
                max_ref_bytes: Some(MAX_REF_BYTES + 1),
                ..Default::default()
            },
            Overrides {
                max_message_bytes: Some(1 << 20),
                ..Default::default()
            },
        ] {
            let e = Config::load(&bad).unwrap_err().to_string();
            assert!(e.contains("max_"), "{e}");
        }
        let d = Config::default();
        d.validate().unwrap();
        assert!(d.max_label_bytes >= MAX_ONE_LABEL_BYTES && d.max_open_ingests >= 1024);
    }

    #[test]
    fn drain_secs_from_file_and_flag_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipcs.toml");
        std::fs::write(&path, "drain_secs = 5\n").unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        assert_eq!(Config::load(&o).unwrap().drain(), Duration::from_secs(5));
        let o = Overrides {
            config: Some(path),
            drain_secs: Some(0),
            ..Default::default()
        };
        assert_eq!(Config::load(&o).unwrap().drain_secs, 0);
        assert_eq!(Config::default().drain_secs, 30);
        let bad = Overrides {
            drain_secs: Some(3601),
            ..Default::default()
        };
        let e = Config::load(&bad).unwrap_err().to_string();
        assert!(e.contains("drain_secs 3601"), "{e}");
    }

    #[test]
    fn swarm_from_file_and_env_needs_mirror_and_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipcs.toml");
        std::fs::write(
            &path,
            "swarm = true\nmirror_listen = \"127.0.0.1:5080\"\ncluster_api = \"http://127.0.0.1:9094\"\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = Config::load(&o).unwrap();
        assert!(c.swarm && c.in_flight_sharing());
        assert!(!Config::default().in_flight_sharing());
        let o = Overrides {
            config: Some(path),
            swarm: Some(false),
            ..Default::default()
        };
        assert!(!Config::load(&o).unwrap().in_flight_sharing());
        let o = Overrides {
            swarm: Some(true),
            mirror_listen: Some("127.0.0.1:5080".into()),
            ..Default::default()
        };
        let e = Config::load(&o).unwrap_err().to_string();
        assert!(
            e.contains("swarm = true") && e.contains("cluster_api"),
            "{e}"
        );
        // IPCS_SWARM=1 as a shell script would write it.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            o: Overrides,
        }
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["ipcs", "--swarm", "1"]).unwrap();
        assert_eq!(cli.o.swarm, Some(true));
        let cli = Cli::try_parse_from(["ipcs", "--swarm", "no"]).unwrap();
        assert_eq!(cli.o.swarm, Some(false));
    }

    #[test]
    fn example_config_in_repo_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin-config/ipcs.toml");
        let c = Config::from_file(&path).unwrap();
        c.validate().unwrap();
        assert_eq!(c.import, ImportOptions::default());
    }
}
