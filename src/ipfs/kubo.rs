//! A small typed client for the parts of Kubo's HTTP RPC API (`POST /api/v0/…`) ipcs uses.
//! Connections are pooled (reqwest), every call has a deadline, and a Kubo that cannot be
//! reached is reported with its address: callers must never mistake it for a locked ref.
//! The API is reached over a unix socket (`unix:///run/kubo/api.sock`, the default: only
//! accounts that may open the socket control Kubo) or an http:// URL.
//!
//! Needs Kubo ≥ 0.37: blob imports name their pin in the `add` call itself
//! (`--pin-name`), which older releases silently ignore, so the first named import checks
//! the node's version once.
use crate::config::ImportOptions;
use crate::endpoint::Endpoint;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// Links per UnixFS file node: the UnixFS v1 default (boxo's `DefaultLinksPerBlock`). A
/// node's `Import.UnixFSFileMaxLinks` would otherwise change the CID of every blob above
/// 174 × chunk size (45.6 MB at 256 KiB chunks), where the DAG gets a second level.
pub const UNIXFS_FILE_MAX_LINKS: u32 = 174;

/// Oldest Kubo whose `add` takes `--pin-name` (0.37).
const MIN_KUBO_MINOR: u32 = 37;

#[derive(Debug, thiserror::Error)]
pub enum KuboError {
    #[error("kubo at {addr} is unreachable during {op}: {reason}")]
    Unreachable {
        addr: String,
        op: &'static str,
        reason: String,
    },
    #[error("kubo at {addr} did not finish {op} within {after:?}")]
    Timeout {
        addr: String,
        op: &'static str,
        after: Duration,
    },
    #[error("kubo at {addr}: {op} failed: {message}")]
    Api {
        addr: String,
        op: &'static str,
        message: String,
    },
    #[error("reading {path} for kubo {op}: {source}")]
    Local {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedBlob {
    pub cid: String,
    pub size: u64,
}

#[derive(Clone)]
pub struct KuboClient {
    /// The address as configured, for messages.
    pub(super) base: String,
    /// Prefix of request URLs (`http://localhost` when the socket carries them).
    url: String,
    http: reqwest::Client,
    pub(super) timeout: Duration,
    min_rate: u64,
    /// Name given to every recursive pin of a blob this client imports or adopts, so
    /// that `ipcs fsck` can tell the pins of one store from anyone else's.
    pin_name: Option<String>,
    /// Set once the node's version is known to take `add --pin-name`.
    named_add_checked: std::sync::Arc<tokio::sync::OnceCell<()>>,
}

/// How an import is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PinAs {
    /// A blob: pinned under the store's name (`pin_name`) by the add itself.
    Blob,
    /// Anything else (tag records): an anonymous pin.
    Anonymous,
    /// Not stored at all: only the CID is computed (`only-hash`).
    HashOnly,
    /// Stored without a pin (the filestore probe, removed right after).
    Unpinned,
}

/// One recursive pin as `pin ls --names` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PinEntry {
    #[serde(rename = "Cid")]
    pub cid: String,
    #[serde(rename = "Name", default)]
    pub name: String,
}

/// One line of `refs`: a block reached, or the error that stopped the walk.
#[derive(Deserialize)]
struct RefLine {
    #[serde(rename = "Err", default)]
    err: Option<String>,
}

#[derive(Deserialize)]
struct FileStatBody {
    #[serde(rename = "Size")]
    size: u64,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Deserialize)]
struct AddLine {
    #[serde(rename = "Hash")]
    hash: Option<String>,
}

#[derive(Deserialize)]
struct PinLsBody {
    #[serde(rename = "Keys", default)]
    keys: std::collections::HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct BlockRmLine {
    #[serde(rename = "Hash", default)]
    hash: String,
    #[serde(rename = "Error", default)]
    error: String,
}

#[derive(Deserialize)]
struct RepoSizeBody {
    #[serde(rename = "RepoSize")]
    repo_size: u64,
}

/// One line of `filestore verify`/`ls`: a block kept as a reference into a file.
#[derive(Debug, Clone, Deserialize)]
pub struct FilestoreEntry {
    /// 0 ok; 10 file error, 11 file not found, 12 file changed, 20 other, 30 key not found.
    #[serde(rename = "Status")]
    pub status: i32,
    #[serde(rename = "ErrorMsg", default)]
    pub error: String,
    #[serde(rename = "Key", default)]
    pub key: serde_json::Value,
    #[serde(rename = "FilePath", default)]
    pub file_path: String,
    #[serde(rename = "Offset", default)]
    pub offset: u64,
    #[serde(rename = "Size", default)]
    pub size: u64,
}

impl FilestoreEntry {
    pub fn cid(&self) -> String {
        match &self.key {
            serde_json::Value::Object(m) => m
                .get("/")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => String::new(),
        }
    }
}

#[derive(Deserialize)]
struct VersionBody {
    #[serde(rename = "Version")]
    version: String,
}

impl KuboClient {
    /// `timeout` bounds control calls; calls moving `n` bytes get `timeout + n / min_rate`.
    pub fn new(base: &str, timeout: Duration, min_rate: u64) -> Result<KuboClient, KuboError> {
        let setup = |reason: String| KuboError::Unreachable {
            addr: base.to_string(),
            op: "client setup",
            reason,
        };
        let endpoint = Endpoint::parse(base).map_err(setup)?;
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        let http = endpoint
            .configure(builder)
            .build()
            .map_err(|e| setup(e.to_string()))?;
        Ok(KuboClient {
            base: endpoint.display,
            url: endpoint.url,
            http,
            timeout,
            min_rate: min_rate.max(1),
            pin_name: None,
            named_add_checked: Default::default(),
        })
    }

    /// Names the pins of imported and adopted blobs `name` (see `pin_name`).
    pub fn with_pin_name(mut self, name: impl Into<String>) -> KuboClient {
        self.pin_name = Some(name.into());
        self
    }

    pub fn pin_name(&self) -> Option<&str> {
        self.pin_name.as_deref()
    }

    pub fn address(&self) -> &str {
        &self.base
    }

    /// Deadline for a call that moves `bytes` of blob data.
    pub fn transfer_timeout(&self, bytes: u64) -> Duration {
        self.timeout + Duration::from_secs(bytes / self.min_rate)
    }

    pub(super) fn classify(
        &self,
        op: &'static str,
        after: Duration,
        e: reqwest::Error,
    ) -> KuboError {
        if e.is_timeout() {
            KuboError::Timeout {
                addr: self.base.clone(),
                op,
                after,
            }
        } else if e.is_connect() || e.is_request() {
            KuboError::Unreachable {
                addr: self.base.clone(),
                op,
                reason: error_chain(&e),
            }
        } else {
            KuboError::Api {
                addr: self.base.clone(),
                op,
                message: error_chain(&e),
            }
        }
    }

    pub(super) async fn call(
        &self,
        op: &'static str,
        path: &str,
        query: &[(&str, String)],
        timeout: Option<Duration>,
        body: Option<reqwest::multipart::Form>,
    ) -> Result<reqwest::Response, KuboError> {
        let mut req = self
            .http
            .post(format!("{}/api/v0/{path}", self.url))
            .query(query);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(form) = body {
            req = req.multipart(form);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.classify(op, timeout.unwrap_or_default(), e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ApiErrorBody>(&text)
            .map(|b| b.message)
            .unwrap_or_else(|_| format!("HTTP {status}: {}", text.trim()));
        Err(KuboError::Api {
            addr: self.base.clone(),
            op,
            message,
        })
    }

    pub(super) async fn json<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        resp: reqwest::Response,
        timeout: Duration,
    ) -> Result<T, KuboError> {
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.classify(op, timeout, e))?;
        serde_json::from_slice(&bytes).map_err(|e| KuboError::Api {
            addr: self.base.clone(),
            op,
            message: format!("unexpected response: {e}"),
        })
    }

    pub async fn version(&self) -> Result<String, KuboError> {
        let t = self.timeout;
        let resp = self.call("version", "version", &[], Some(t), None).await?;
        Ok(self.json::<VersionBody>("version", resp, t).await?.version)
    }

    /// Imports the file at `path` as a UnixFS DAG with `opts` given explicitly (so Kubo's
    /// own Import config cannot change the CID) and pins it recursively under the store's
    /// name, in the same call. The file is streamed, never read into memory.
    pub async fn add_file(
        &self,
        path: &Path,
        size: u64,
        opts: &ImportOptions,
        home: Option<&Path>,
    ) -> Result<AddedBlob, KuboError> {
        let part = by_reference(self.file_part(path, size).await?, home);
        let cid = self
            .add_part(
                part,
                Some(self.transfer_timeout(size)),
                opts,
                PinAs::Blob,
                &nocopy(home),
            )
            .await?;
        Ok(AddedBlob { cid, size })
    }

    /// The CID `add_file` would give the file at `path`, computed by Kubo without storing
    /// or pinning anything (`only-hash`). fsck uses it to recognise the pin of a commit
    /// that a crash cut short.
    pub async fn hash_file(
        &self,
        path: &Path,
        size: u64,
        opts: &ImportOptions,
    ) -> Result<String, KuboError> {
        let part = self.file_part(path, size).await?;
        self.add_part(
            part,
            Some(self.transfer_timeout(size)),
            opts,
            PinAs::HashOnly,
            &[],
        )
        .await
    }

    async fn file_part(
        &self,
        path: &Path,
        size: u64,
    ) -> Result<reqwest::multipart::Part, KuboError> {
        let op = "add";
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| KuboError::Local {
                path: path.display().to_string(),
                op,
                source,
            })?;
        // 1 MiB reads: a plain File body reads 4 KiB per blocking-pool round trip, which
        // made the add several times slower than Kubo itself.
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        Ok(reqwest::multipart::Part::stream_with_length(body, size)
            .file_name("blob")
            .mime_str("application/octet-stream")
            .expect("static mime type parses"))
    }

    /// Imports a body that is still being produced (an ingest file followed while it is
    /// written), with the same options and pinning as `add_file`. There is no deadline
    /// here because the body's end is not known yet: the caller bounds the wait once it
    /// is. Kubo pins only after the whole body has arrived, so a body that fails, or a
    /// request dropped before the body ends, leaves nothing pinned.
    pub async fn add_stream<S>(&self, body: S, opts: &ImportOptions) -> Result<String, KuboError>
    where
        S: futures::TryStream + Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        Bytes: From<S::Ok>,
    {
        let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(body))
            .file_name("blob")
            .mime_str("application/octet-stream")
            .expect("static mime type parses");
        self.add_part(part, None, opts, PinAs::Blob, &[]).await
    }

    /// One `ipfs add` of one file. Every option that shapes the DAG is sent, so neither
    /// Kubo's defaults nor its `Import.*` config can change a CID; nothing is announced
    /// (`fast-provide-*` off). A blob is pinned under the store's name by the add itself:
    /// Kubo pins after the last block is stored and before its answer ends, so there is
    /// no moment where the blob is stored but its pin unnamed or missing.
    async fn add_part(
        &self,
        part: reqwest::multipart::Part,
        timeout: Option<Duration>,
        opts: &ImportOptions,
        pin_as: PinAs,
        extra: &[(&'static str, String)],
    ) -> Result<String, KuboError> {
        let op = "add";
        let mut query = vec![
            ("cid-version", opts.cid_version.to_string()),
            ("raw-leaves", opts.raw_leaves.to_string()),
            ("chunker", format!("size-{}", opts.chunk_size)),
            ("hash", "sha2-256".to_string()),
            ("trickle", "false".to_string()),
            ("max-file-links", UNIXFS_FILE_MAX_LINKS.to_string()),
            // Directory shapes: no directory is ever created (no wrap), sent anyway so a
            // node's profile has nothing left to decide.
            ("max-directory-links", "0".to_string()),
            ("max-hamt-fanout", "256".to_string()),
            ("wrap-with-directory", "false".to_string()),
            ("inline", "false".to_string()),
            ("fscache", "false".to_string()),
            ("preserve-mode", "false".to_string()),
            ("preserve-mtime", "false".to_string()),
            ("fast-provide-root", "false".to_string()),
            ("fast-provide-dag", "false".to_string()),
            ("fast-provide-wait", "false".to_string()),
            ("only-hash", (pin_as == PinAs::HashOnly).to_string()),
            (
                "pin",
                matches!(pin_as, PinAs::Blob | PinAs::Anonymous).to_string(),
            ),
            ("quieter", "true".to_string()),
            ("progress", "false".to_string()),
            // Every block of an import comes from its body. Offline, a block Kubo took
            // for present but cannot read (a reference whose file went) fails the pin's
            // walk at once instead of waiting on bitswap for the rest of the deadline.
            ("offline", "true".to_string()),
        ];
        query.extend(extra.iter().cloned());
        if !query.iter().any(|(k, _)| *k == "nocopy") {
            query.push(("nocopy", "false".to_string()));
        }
        if pin_as == PinAs::Blob {
            if let Some(name) = &self.pin_name {
                self.check_named_add().await?;
                query.push(("pin-name", name.clone()));
            }
        }
        let form = reqwest::multipart::Form::new().part("file", part);
        let resp = self.call(op, "add", &query, timeout, Some(form)).await?;
        let text = self
            .body_checked(op, resp, timeout.unwrap_or_default())
            .await?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<AddLine>(l).ok())
            .filter_map(|l| l.hash)
            .next_back()
            .ok_or_else(|| KuboError::Api {
                addr: self.base.clone(),
                op,
                message: format!("no CID in response {:?}", text.trim()),
            })
    }

    /// The whole body of a streamed response, failing if Kubo reported an error after
    /// it had begun answering. Kubo sends such an error only as the `X-Stream-Error`
    /// trailer: `add` prints the CID before it pins, so a pin that fails would otherwise
    /// look like success.
    pub(super) async fn body_checked(
        &self,
        op: &'static str,
        resp: reqwest::Response,
        t: Duration,
    ) -> Result<String, KuboError> {
        use http_body_util::BodyExt;
        let mut body = reqwest::Body::from(resp);
        let mut data = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.classify(op, t, e))?;
            match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => {
                    let failed = frame
                        .trailers_ref()
                        .and_then(|h| h.get("x-stream-error"))
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
                        .filter(|m| !m.is_empty());
                    if let Some(message) = failed {
                        return Err(KuboError::Api {
                            addr: self.base.clone(),
                            op,
                            message,
                        });
                    }
                }
            }
        }
        Ok(String::from_utf8_lossy(&data).into_owned())
    }

    /// Refuses named imports on a Kubo older than 0.37, whose `add` would ignore
    /// `pin-name` and leave a pin fsck cannot attribute. Checked once per client.
    async fn check_named_add(&self) -> Result<(), KuboError> {
        self.named_add_checked
            .get_or_try_init(|| async {
                let v = self.version().await?;
                let minor = v
                    .split('.')
                    .nth(1)
                    .and_then(|m| m.parse::<u32>().ok())
                    .unwrap_or(0);
                if v.starts_with("0.") && minor < MIN_KUBO_MINOR {
                    return Err(KuboError::Api {
                        addr: self.base.clone(),
                        op: "add",
                        message: format!(
                            "kubo {v} cannot name a pin in `add`; ipcs needs kubo >= 0.{MIN_KUBO_MINOR}"
                        ),
                    });
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Imports a small in-memory object (e.g. a tag record) with the same options.
    pub async fn add_bytes(
        &self,
        data: Vec<u8>,
        opts: &ImportOptions,
    ) -> Result<AddedBlob, KuboError> {
        let size = data.len() as u64;
        let part = reqwest::multipart::Part::bytes(data).file_name("record");
        let cid = self
            .add_part(
                part,
                Some(self.transfer_timeout(size)),
                opts,
                PinAs::Anonymous,
                &[],
            )
            .await?;
        Ok(AddedBlob { cid, size })
    }

    /// Test hook for the error path of `body_checked`: an add whose `to-files` MFS
    /// directory does not exist makes Kubo fail only after it has printed the CID, which
    /// is how a failing pin is reported too (nothing else makes a real Kubo do that on
    /// demand). Not used by ipcs itself.
    #[doc(hidden)]
    pub async fn add_bytes_to_files(
        &self,
        data: Vec<u8>,
        opts: &ImportOptions,
        mfs_path: &str,
    ) -> Result<String, KuboError> {
        let part = reqwest::multipart::Part::bytes(data).file_name("record");
        let extra = [("to-files", mfs_path.to_string())];
        self.add_part(part, Some(self.timeout), opts, PinAs::Anonymous, &extra)
            .await
    }

    /// Streams `length` bytes of the DAG at `cid` starting at `offset`.
    pub async fn cat(
        &self,
        cid: &str,
        offset: u64,
        length: u64,
    ) -> Result<impl Stream<Item = Result<Bytes, KuboError>> + use<>, KuboError> {
        self.cat_with(cid, offset, length, false).await
    }

    /// Like `cat`, from local blocks only: a missing block fails the stream at once
    /// instead of being searched for on the network.
    pub async fn cat_local(
        &self,
        cid: &str,
        offset: u64,
        length: u64,
    ) -> Result<impl Stream<Item = Result<Bytes, KuboError>> + use<>, KuboError> {
        self.cat_with(cid, offset, length, true).await
    }

    async fn cat_with(
        &self,
        cid: &str,
        offset: u64,
        length: u64,
        offline: bool,
    ) -> Result<impl Stream<Item = Result<Bytes, KuboError>> + use<>, KuboError> {
        let op = "cat";
        let t = self.transfer_timeout(length);
        let mut query = vec![
            ("arg", cid.to_string()),
            ("offset", offset.to_string()),
            ("length", length.to_string()),
            ("progress", "false".to_string()),
        ];
        if offline {
            query.push(("offline", "true".to_string()));
        }
        let resp = self.call(op, "cat", &query, Some(t), None).await?;
        let me = self.clone();
        Ok(resp.bytes_stream().map_err(move |e| me.classify(op, t, e)))
    }

    /// Removes the recursive pin of `cid`. Kubo refuses a CID that is not pinned; the
    /// caller decides from the pinset what that means (`backend::KuboBackend::unpin`).
    pub async fn pin_rm(&self, cid: &str) -> Result<(), KuboError> {
        let query = [("arg", cid.to_string())];
        self.call("pin rm", "pin/rm", &query, Some(self.timeout), None)
            .await?;
        Ok(())
    }

    /// Pins `cid` recursively (fetching missing blocks from peers).
    pub async fn pin_add(&self, cid: &str, size: u64) -> Result<(), KuboError> {
        let t = self.transfer_timeout(size);
        self.pin_add_with(cid, t, false).await
    }

    /// Pins `cid` recursively from local blocks only: fails at once, instead of searching
    /// the network, when part of the DAG is missing.
    pub async fn pin_add_local(&self, cid: &str) -> Result<(), KuboError> {
        self.pin_add_with(cid, self.timeout, true).await
    }

    async fn pin_add_with(&self, cid: &str, t: Duration, offline: bool) -> Result<(), KuboError> {
        let mut query = vec![("arg", cid.to_string()), ("progress", "false".to_string())];
        if let Some(name) = &self.pin_name {
            query.push(("name", name.clone()));
        }
        if offline {
            query.push(("offline", "true".to_string()));
        }
        self.call("pin add", "pin/add", &query, Some(t), None)
            .await?;
        Ok(())
    }

    /// Streams every recursive pin with its name to `f`, one NDJSON line at a time, so a
    /// large pinset is never held as one response.
    pub async fn pin_ls_recursive(&self, mut f: impl FnMut(PinEntry)) -> Result<u64, KuboError> {
        let op = "pin ls";
        // Listing is proportional to the pinset: allow well beyond a control call.
        let t = self.timeout * 10;
        let query = [
            ("type", "recursive".to_string()),
            ("stream", "true".to_string()),
            ("names", "true".to_string()),
        ];
        let resp = self.call(op, "pin/ls", &query, Some(t), None).await?;
        self.each_json_line(op, t, resp, |entry: PinEntry| {
            f(entry);
            Ok(())
        })
        .await
    }

    /// Brings every block of `cid`'s DAG into the local blockstore without pinning it.
    /// `refs -r` asks bitswap for all children of a node at once, where `cat` reads ahead
    /// only a few blocks, so a large blob crosses from peers several times faster.
    /// `size` (the blob's) scales the deadline. Returns the number of blocks listed.
    pub async fn fetch_dag(&self, cid: &str, size: u64) -> Result<u64, KuboError> {
        let op = "refs";
        let t = self.transfer_timeout(size);
        let query = [
            ("arg", cid.to_string()),
            ("recursive", "true".to_string()),
            ("unique", "true".to_string()),
        ];
        let resp = self.call(op, "refs", &query, Some(t), None).await?;
        let base = self.base.clone();
        self.each_json_line(op, t, resp, |line: RefLine| match line.err {
            Some(e) if !e.is_empty() => Err(KuboError::Api {
                addr: base.clone(),
                op,
                message: e,
            }),
            _ => Ok(()),
        })
        .await
    }

    /// The file size recorded in the root of `cid`'s UnixFS DAG (one block fetched).
    pub async fn file_size(&self, cid: &str) -> Result<u64, KuboError> {
        let op = "files stat";
        let t = self.timeout;
        let query = [("arg", format!("/ipfs/{cid}"))];
        let resp = self.call(op, "files/stat", &query, Some(t), None).await?;
        Ok(self.json::<FileStatBody>(op, resp, t).await?.size)
    }

    /// Feeds each line of an NDJSON response to `f` as it arrives; returns the count.
    pub(super) async fn each_json_line<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        t: Duration,
        resp: reqwest::Response,
        mut f: impl FnMut(T) -> Result<(), KuboError>,
    ) -> Result<u64, KuboError> {
        let mut body = resp.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        let mut n = 0u64;
        let mut emit = |line: &[u8]| -> Result<(), KuboError> {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            let item: T = serde_json::from_slice(line).map_err(|e| KuboError::Api {
                addr: self.base.clone(),
                op,
                message: format!("unexpected {op} line: {e}"),
            })?;
            n += 1;
            f(item)
        };
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.classify(op, t, e))?;
            pending.extend_from_slice(&chunk);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                emit(&line)?;
            }
        }
        emit(&pending)?;
        Ok(n)
    }

    /// The repository's size on disk as Kubo counts it (`repo stat --size-only`): its
    /// blockstore and datastore, not the files its filestore references.
    pub async fn repo_size(&self) -> Result<u64, KuboError> {
        let op = "repo stat";
        let t = self.timeout;
        let query = [("size-only", "true".to_string())];
        let resp = self.call(op, "repo/stat", &query, Some(t), None).await?;
        Ok(self.json::<RepoSizeBody>(op, resp, t).await?.repo_size)
    }

    /// Checks that this node keeps imports by reference to files at `path` and can read
    /// them back: imports the (small) file there by reference, unpinned, has Kubo verify
    /// the reference, then removes it. Kubo's own words say what is missing (no
    /// filestore, a path outside its filestore root, a file it cannot open).
    ///
    /// Returns Kubo's filestore root: `filestore ls`/`verify` name files relative to it.
    pub async fn probe_filestore(
        &self,
        path: &Path,
        opts: &ImportOptions,
    ) -> Result<std::path::PathBuf, KuboError> {
        let op = "filestore probe";
        let size = std::fs::metadata(path)
            .map_err(|source| KuboError::Local {
                path: path.display().to_string(),
                op,
                source,
            })?
            .len();
        let part = by_reference(self.file_part(path, size).await?, Some(path));
        let cid = self
            .add_part(
                part,
                Some(self.timeout),
                opts,
                PinAs::Unpinned,
                &nocopy(Some(path)),
            )
            .await?;
        let query = [("arg", cid.clone())];
        let resp = self
            .call(op, "filestore/verify", &query, Some(self.timeout), None)
            .await?;
        let mut bad = None;
        let mut seen = 0;
        let mut recorded = String::new();
        self.each_json_line(op, self.timeout, resp, |e: FilestoreEntry| {
            seen += 1;
            if e.status != 0 {
                bad = Some(format!(
                    "status {}: {} ({})",
                    e.status, e.error, e.file_path
                ));
            }
            recorded = e.file_path;
            Ok(())
        })
        .await?;
        let _ = self.block_rm(std::slice::from_ref(&cid)).await;
        let problem = match (seen, bad) {
            (0, _) => Some(format!("{cid} was stored as a copy, not as a reference")),
            (_, b) => b,
        };
        // The probe's path as Kubo recorded it, relative to its filestore root.
        let rel = Path::new(&recorded);
        let mut root = path.to_path_buf();
        for _ in rel.components() {
            root.pop();
        }
        let problem = problem.or_else(|| {
            (rel.is_relative() && root.join(rel) != path).then(|| {
                format!("kubo recorded the probe as {recorded:?}, not a path ending the probe's")
            })
        });
        match problem {
            None if rel.is_absolute() => Ok(std::path::PathBuf::from("/")),
            None => Ok(root),
            Some(message) => Err(KuboError::Api {
                addr: self.base.clone(),
                op,
                message,
            }),
        }
    }

    /// The filestore references of `cids` (`filestore ls <cid>...`: no file is read),
    /// fed to `f`; a block that is no reference comes with a non-zero status. Asked in
    /// batches, so that a large DAG's list of CIDs stays far below the request size
    /// Kubo's HTTP server accepts.
    pub async fn filestore_ls_of(
        &self,
        cids: &[String],
        deadline: Duration,
        mut f: impl FnMut(FilestoreEntry),
    ) -> Result<u64, KuboError> {
        let op = "filestore ls";
        let mut seen = 0;
        for batch in cids.chunks(256) {
            let query: Vec<(&str, String)> = batch.iter().map(|c| ("arg", c.clone())).collect();
            let resp = self
                .call(op, "filestore/ls", &query, Some(deadline), None)
                .await?;
            seen += self
                .each_json_line(op, deadline, resp, |e: FilestoreEntry| {
                    f(e);
                    Ok(())
                })
                .await?;
        }
        Ok(seen)
    }

    /// Every filestore reference with its state (`filestore verify`: Kubo reads back and
    /// rehashes each referenced range), fed to `f` as they arrive. `deadline` bounds the
    /// whole walk. Fails clearly when the node has no filestore.
    pub async fn filestore_verify(
        &self,
        deadline: Duration,
        mut f: impl FnMut(FilestoreEntry),
    ) -> Result<u64, KuboError> {
        let op = "filestore verify";
        let resp = self
            .call(op, "filestore/verify", &[], Some(deadline), None)
            .await?;
        self.each_json_line(op, deadline, resp, |e: FilestoreEntry| {
            f(e);
            Ok(())
        })
        .await
    }

    /// Removes blocks (`block rm --force`), in batches: a filestore reference whose file
    /// is gone goes with its key. Blocks that are absent are not an error; a block Kubo
    /// refuses (pinned) is, naming Kubo's reason.
    pub async fn block_rm(&self, cids: &[String]) -> Result<(), KuboError> {
        let op = "block rm";
        for batch in cids.chunks(256) {
            let mut query: Vec<(&str, String)> = batch.iter().map(|c| ("arg", c.clone())).collect();
            query.push(("force", "true".to_string()));
            let resp = self
                .call(op, "block/rm", &query, Some(self.timeout), None)
                .await?;
            let mut refused = Vec::new();
            self.each_json_line(op, self.timeout, resp, |l: BlockRmLine| {
                if !l.error.is_empty() {
                    refused.push(format!("{}: {}", l.hash, l.error));
                }
                Ok(())
            })
            .await?;
            if let Some(first) = refused.first() {
                return Err(self.api_error(
                    op,
                    format!("{} blocks not removed, first {first}", refused.len()),
                ));
            }
        }
        Ok(())
    }

    /// The name of `cid`'s recursive pin: None if it is not pinned, Some("") if the pin
    /// has no name. Kubo refuses a CID that is not pinned with an error; exactly its
    /// wording for this CID (`path '<cid>' is not pinned`) is read as None, any other
    /// error is returned, and the caller decides from the whole pinset what it means
    /// (`backend::KuboBackend::pinned_as`). Recognising it matters: an import after the
    /// commit asks this for every blob, nearly always one not pinned yet, and a listing
    /// of the pinset each time made imports slower than commits.
    pub async fn recursive_pin_name(&self, cid: &str) -> Result<Option<String>, KuboError> {
        let op = "pin ls";
        let query = [
            ("arg", cid.to_string()),
            ("type", "recursive".to_string()),
            ("names", "true".to_string()),
        ];
        let resp = match self
            .call(op, "pin/ls", &query, Some(self.timeout), None)
            .await
        {
            Err(KuboError::Api { message, .. })
                if message == format!("path '{cid}' is not pinned") =>
            {
                return Ok(None)
            }
            other => other?,
        };
        let body: PinLsBody = self.json(op, resp, self.timeout).await?;
        Ok(body.keys.get(cid).map(|v| {
            v.get("Name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_string()
        }))
    }
}

/// Marks a file part as the bytes of the file at `home`: with `nocopy`, Kubo's filestore
/// then keeps only references (path, offset, length) to `home` for the leaves instead of
/// copying them. Kubo takes the path from the part's `abspath-encoded` header; the bytes
/// themselves still come from the body, so `home` need not exist yet.
fn by_reference(part: reqwest::multipart::Part, home: Option<&Path>) -> reqwest::multipart::Part {
    let Some(home) = home else {
        return part;
    };
    // Kubo decodes it with Go's `url.QueryUnescape`: escape all but unreserved bytes.
    let mut encoded = String::new();
    for b in std::os::unix::ffi::OsStrExt::as_bytes(home.as_os_str()) {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                encoded.push(*b as char)
            }
            _ => encoded.push_str(&format!("%{b:02X}")),
        }
    }
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&encoded) {
        headers.insert("abspath-encoded", v);
    }
    part.headers(headers)
}

/// The `nocopy` query option of an import by reference.
fn nocopy(home: Option<&Path>) -> Vec<(&'static str, String)> {
    vec![("nocopy", home.is_some().to_string())]
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_kubo_is_named_and_fast() {
        // Port 9 (discard) on loopback has no listener here: connect is refused at once.
        let k = KuboClient::new("http://127.0.0.1:9", Duration::from_secs(2), 1).unwrap();
        let started = std::time::Instant::now();
        let err = k.version().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let msg = err.to_string();
        assert!(matches!(err, KuboError::Unreachable { .. }), "{msg}");
        assert!(msg.contains("127.0.0.1:9"), "{msg}");
    }

    #[tokio::test]
    async fn missing_socket_is_named_and_fast() {
        let dir = tempfile::tempdir().unwrap();
        let api = format!("unix://{}/absent.sock", dir.path().display());
        let k = KuboClient::new(&api, Duration::from_secs(2), 1).unwrap();
        let err = k.version().await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, KuboError::Unreachable { .. }), "{msg}");
        assert!(msg.contains("absent.sock"), "{msg}");
    }

    #[test]
    fn transfer_deadline_grows_with_size() {
        let k = KuboClient::new("http://127.0.0.1:1", Duration::from_secs(10), 1 << 20).unwrap();
        assert_eq!(k.transfer_timeout(0), Duration::from_secs(10));
        assert_eq!(k.transfer_timeout(100 << 20), Duration::from_secs(110));
    }
}
