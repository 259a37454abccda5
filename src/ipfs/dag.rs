//! Kubo's DAG commands, for CAR archives (`car`) and the block-level dedup report
//! (`dedup`): `dag put` of a small index document, `dag export` of one root as a CAR
//! stream, `dag import` of a CAR stream, `dag get`, and the block list and sizes of a DAG
//! (`refs -r --unique`, `block stat`). Everything local: these calls never ask the
//! network for a block (`offline=true`), a missing block is an error.
use crate::ipfs::{KuboClient, KuboError};
use bytes::Bytes;
use futures::Stream;
use serde::Deserialize;
use std::time::Duration;

/// What `dag import` reports: the CAR's roots (pinned, recursively and anonymously, by
/// the import itself) and how many blocks and bytes it read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DagImport {
    pub roots: Vec<String>,
    pub blocks: u64,
    pub block_bytes: u64,
}

/// Every block of one DAG: the root and each distinct descendant, in `refs` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefsWalk {
    pub blocks: Vec<String>,
}

#[derive(Deserialize)]
struct CidLink {
    #[serde(rename = "/")]
    cid: String,
}

#[derive(Deserialize)]
struct DagPutBody {
    #[serde(rename = "Cid")]
    cid: CidLink,
}

#[derive(Deserialize)]
struct ImportRoot {
    #[serde(rename = "Cid")]
    cid: CidLink,
    #[serde(rename = "PinErrorMsg", default)]
    pin_error: String,
}

#[derive(Deserialize)]
struct ImportStats {
    #[serde(rename = "BlockCount", default)]
    blocks: u64,
    #[serde(rename = "BlockBytesCount", default)]
    bytes: u64,
}

#[derive(Deserialize)]
struct ImportLine {
    #[serde(rename = "Root")]
    root: Option<ImportRoot>,
    #[serde(rename = "Stats")]
    stats: Option<ImportStats>,
}

#[derive(Deserialize)]
struct LsBody {
    #[serde(rename = "Objects", default)]
    objects: Vec<LsObject>,
}

#[derive(Deserialize)]
struct LsObject {
    #[serde(rename = "Links", default)]
    links: Vec<LsLink>,
}

#[derive(Deserialize)]
struct LsLink {
    #[serde(rename = "Hash")]
    hash: String,
}

#[derive(Deserialize)]
struct RefLine {
    #[serde(rename = "Ref", default)]
    r#ref: String,
    #[serde(rename = "Err", default)]
    err: Option<String>,
}

#[derive(Deserialize)]
struct BlockStatBody {
    #[serde(rename = "Size")]
    size: u64,
}

fn offline(mut q: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    q.push(("offline", "true".to_string()));
    q
}

impl KuboClient {
    pub(super) fn api_error(&self, op: &'static str, message: impl Into<String>) -> KuboError {
        KuboError::Api {
            addr: self.base.clone(),
            op,
            message: message.into(),
        }
    }

    /// Stores a dag-json document as one dag-cbor block (not pinned); returns its CID.
    pub async fn dag_put_json(&self, doc: Vec<u8>) -> Result<String, KuboError> {
        let op = "dag put";
        let t = self.transfer_timeout(doc.len() as u64);
        let query = offline(vec![
            ("input-codec", "dag-json".to_string()),
            ("store-codec", "dag-cbor".to_string()),
            ("hash", "sha2-256".to_string()),
            ("pin", "false".to_string()),
        ]);
        let part = reqwest::multipart::Part::bytes(doc).file_name("index.json");
        let form = reqwest::multipart::Form::new().part("file", part);
        let resp = self
            .call(op, "dag/put", &query, Some(t), Some(form))
            .await?;
        let text = self.body_checked(op, resp, t).await?;
        let body: DagPutBody = serde_json::from_str(text.trim())
            .map_err(|e| self.api_error(op, format!("unexpected response: {e}")))?;
        Ok(body.cid.cid)
    }

    /// The block of `cid` as dag-json, refused if longer than `limit` bytes.
    pub async fn dag_get_json(&self, cid: &str, limit: usize) -> Result<Vec<u8>, KuboError> {
        let op = "dag get";
        let t = self.timeout;
        let query = offline(vec![
            ("arg", cid.to_string()),
            ("output-codec", "dag-json".to_string()),
        ]);
        let resp = self.call(op, "dag/get", &query, Some(t), None).await?;
        let text = self.body_checked(op, resp, t).await?;
        if text.len() > limit {
            return Err(self.api_error(op, format!("{cid} is over {limit} bytes")));
        }
        Ok(text.into_bytes())
    }

    /// Streams the CAR (v1) of the whole DAG under `root`, each block once. `bytes`, the
    /// expected size, scales the deadline. An error Kubo reports after the stream began
    /// (a block missing) ends the stream with that error, never with a short success.
    pub async fn dag_export(
        &self,
        root: &str,
        bytes: u64,
    ) -> Result<impl Stream<Item = Result<Bytes, KuboError>> + use<>, KuboError> {
        use http_body_util::BodyExt;
        let op = "dag export";
        let t = self.transfer_timeout(bytes);
        let query = offline(vec![
            ("arg", root.to_string()),
            ("progress", "false".to_string()),
        ]);
        let resp = self.call(op, "dag/export", &query, Some(t), None).await?;
        let me = self.clone();
        let body = reqwest::Body::from(resp);
        Ok(futures::stream::unfold(Some(body), move |state| {
            let me = me.clone();
            async move {
                let mut body = state?;
                loop {
                    match body.frame().await {
                        None => return None,
                        Some(Err(e)) => return Some((Err(me.classify(op, t, e)), None)),
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => return Some((Ok(data), Some(body))),
                            Err(frame) => {
                                let failed = frame
                                    .trailers_ref()
                                    .and_then(|h| h.get("x-stream-error"))
                                    .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
                                    .filter(|m| !m.trim().is_empty());
                                if let Some(m) = failed {
                                    return Some((Err(me.api_error(op, m)), None));
                                }
                            }
                        },
                    }
                }
            }
        }))
    }

    /// Imports a CAR stream, pinning its roots (recursively, without a name: the caller
    /// replaces that pin by its own and removes it). Kubo checks each block against its
    /// CID as it reads; a corrupted or truncated CAR fails here, and a root whose DAG is
    /// incomplete fails to pin, which is an error too.
    pub async fn dag_import<S>(&self, body: S, timeout: Duration) -> Result<DagImport, KuboError>
    where
        S: futures::TryStream + Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        Bytes: From<S::Ok>,
    {
        let op = "dag import";
        let query = offline(vec![
            ("pin-roots", "true".to_string()),
            ("stats", "true".to_string()),
            ("allow-big-block", "false".to_string()),
        ]);
        let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(body))
            .file_name("images.car")
            .mime_str("application/vnd.ipld.car")
            .expect("static mime type parses");
        let form = reqwest::multipart::Form::new().part("file", part);
        let resp = self
            .call(op, "dag/import", &query, Some(timeout), Some(form))
            .await?;
        let text = self.body_checked(op, resp, timeout).await?;
        let mut out = DagImport::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let l: ImportLine = serde_json::from_str(line)
                .map_err(|e| self.api_error(op, format!("unexpected line {line:?}: {e}")))?;
            if let Some(r) = l.root {
                if !r.pin_error.is_empty() {
                    return Err(self.api_error(
                        op,
                        format!("root {} could not be pinned: {}", r.cid.cid, r.pin_error),
                    ));
                }
                out.roots.push(r.cid.cid);
            }
            if let Some(s) = l.stats {
                out.blocks = s.blocks;
                out.block_bytes = s.bytes;
            }
        }
        Ok(out)
    }

    /// The root and every distinct block below it, from local blocks only.
    pub async fn dag_blocks(&self, root: &str, size: u64) -> Result<RefsWalk, KuboError> {
        let op = "refs";
        let t = self.transfer_timeout(size);
        let query = offline(vec![
            ("arg", root.to_string()),
            ("recursive", "true".to_string()),
            ("unique", "true".to_string()),
        ]);
        let resp = self.call(op, "refs", &query, Some(t), None).await?;
        let mut blocks = vec![root.to_string()];
        let base = self.base.clone();
        self.each_json_line(op, t, resp, |line: RefLine| match line.err {
            Some(e) if !e.is_empty() => Err(KuboError::Api {
                addr: base.clone(),
                op,
                message: e,
            }),
            _ => {
                if !line.r#ref.is_empty() {
                    blocks.push(line.r#ref);
                }
                Ok(())
            }
        })
        .await?;
        Ok(RefsWalk { blocks })
    }

    /// The leaves of a UnixFS file's DAG, read from its inner nodes only (`ls` with
    /// `resolve-type=false`, `size=false`, offline: no leaf is fetched or read). A raw
    /// root is its own leaf. `size` (the file's) scales the deadline.
    pub async fn file_leaves(&self, root: &str, size: u64) -> Result<Vec<String>, KuboError> {
        let op = "ls";
        let t = self.transfer_timeout(size);
        let mut leaves = Vec::new();
        let mut inner = vec![root.to_string()];
        while let Some(node) = inner.pop() {
            // CIDv1 raw leaves print as "bafk…" (codec 0x55); dag-pb nodes as "bafy…".
            if node.starts_with("bafk") {
                leaves.push(node);
                continue;
            }
            let query = offline(vec![
                ("arg", node.clone()),
                ("resolve-type", "false".to_string()),
                ("size", "false".to_string()),
                ("stream", "false".to_string()),
            ]);
            let resp = self.call(op, "ls", &query, Some(t), None).await?;
            let body: LsBody = self.json(op, resp, t).await?;
            for o in body.objects {
                // Children in file order; popped from the end, so pushed reversed.
                inner.extend(o.links.into_iter().rev().map(|l| l.hash));
            }
        }
        Ok(leaves)
    }

    /// The size in bytes of one local block.
    pub async fn block_size(&self, cid: &str) -> Result<u64, KuboError> {
        let op = "block stat";
        let t = self.timeout;
        let query = offline(vec![("arg", cid.to_string())]);
        let resp = self.call(op, "block/stat", &query, Some(t), None).await?;
        Ok(self.json::<BlockStatBody>(op, resp, t).await?.size)
    }

    /// Removes an anonymous recursive pin (a CAR root); one that is gone already is fine
    /// (decided from the pinset, never from the wording of Kubo's error).
    pub async fn unpin_root(&self, cid: &str) -> Result<(), KuboError> {
        match self.pin_rm(cid).await {
            Ok(()) => Ok(()),
            Err(e @ KuboError::Api { .. }) => {
                let mut pinned = false;
                match self.pin_ls_recursive(|p| pinned |= p.cid == cid).await {
                    Ok(_) if !pinned => Ok(()),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}
