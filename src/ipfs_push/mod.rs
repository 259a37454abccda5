//! nerdctl's `ipfs://` image format, written from an image already in this store, so
//! that `nerdctl pull ipfs://<CID>` works on any node that can reach this node's Kubo, and
//! the CID is the one `nerdctl push ipfs://` prints for the same image.
//!
//! nerdctl (v2.x, through stargz-snapshotter's `ipfs` package) runs containerd's image
//! converter with Docker→OCI media types and its platform filter, and a hook that adds
//! every blob it visits to IPFS (`add --cid-version=1`: 256 KiB chunks, raw leaves) and
//! sets that descriptor's `urls` to `["ipfs://<CID>"]`. Manifests and indexes are thereby
//! rewritten (Go's `json.Marshal`, see `oci.rs`/`gojson.rs`), and the printed CID is that of
//! the root descriptor's JSON. Here the blobs are already in IPFS under exactly those CIDs
//! (ipcs imports with the same options), so only the rewritten JSON is new: it is stored as
//! ordinary blobs, the root descriptor too, and added to ipfs under an anonymous pin as
//! nerdctl's push does, since containerd's garbage collection removes blobs no image names.
//! The pull side of the format is `mirror/ipfs_routes.rs`.
mod gojson;
mod oci;
pub mod platform;

use crate::digest::{Algorithm, Digest, Digester};
use crate::store::{ContentStore, StoreError, WriteAction, WriteRequest, MAX_MANIFEST_BYTES};
use oci::{Descriptor, Index, Manifest};
pub use platform::PlatformMatch;
use std::collections::BTreeMap;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Nested indexes deeper than this are refused: a hostile index cannot recurse forever.
const MAX_DEPTH: usize = 8;

/// What an export produced.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The CID to give `nerdctl pull ipfs://`.
    pub cid: String,
    /// The converted root descriptor (its JSON is what `cid` names).
    pub root_json: Vec<u8>,
    /// How many new JSON blobs (manifests, indexes, the root) were stored.
    pub written: usize,
}

/// Exports the image whose top descriptor is `root_json` (an OCI descriptor as JSON, as
/// containerd's image record holds it), keeping the manifests `platforms` selects.
pub async fn push(
    store: &ContentStore,
    root_json: &[u8],
    platforms: &PlatformMatch,
) -> Result<Pushed, StoreError> {
    let root: Descriptor = serde_json::from_slice(root_json)
        .map_err(|e| StoreError::InvalidArgument(format!("root descriptor: {e}")))?;
    let mut run = Run {
        store,
        platforms,
        written: Vec::new(),
        pins_added: 0,
    };
    let result = async {
        let converted = run.convert(root, 0).await?;
        let root_json = converted.to_go_json();
        let (_, cid) = run.put(&root_json).await?;
        Ok::<_, StoreError>((cid, root_json))
    }
    .await;
    match result {
        Ok((cid, root_json)) => Ok(Pushed {
            cid,
            root_json,
            written: run.written.len(),
        }),
        Err(e) => {
            // A failed export leaves nothing of its own behind (blobs that were there
            // before it are not touched).
            for d in &run.written {
                if let Err(de) = store.delete(d).await {
                    tracing::warn!(digest = %d, error = %de, "ipfs-push: could not remove a blob of a failed export");
                }
            }
            // Its anonymous pins stay: one may be nerdctl's for the same bytes (Kubo keeps
            // one pin per CID), and they are a few small JSON objects.
            if run.pins_added > 0 {
                tracing::info!(
                    pins = run.pins_added,
                    "ipfs-push failed; the JSON it had added to ipfs stays pinned"
                );
            }
            Err(e)
        }
    }
}

/// containerd's `ConvertDockerMediaTypeToOCI`.
fn docker_to_oci(mt: &str) -> &str {
    match mt {
        DOCKER_LIST => OCI_INDEX,
        DOCKER_MANIFEST => OCI_MANIFEST,
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar"
        }
        "application/vnd.docker.container.image.v1+json" => {
            "application/vnd.oci.image.config.v1+json"
        }
        other => other,
    }
}

fn is_docker(mt: &str) -> bool {
    mt.starts_with("application/vnd.docker.")
}

struct Run<'a> {
    store: &'a ContentStore,
    platforms: &'a PlatformMatch,
    /// Blobs this export stored (not those already there).
    written: Vec<Digest>,
    /// How many objects this export added to the backend under an anonymous pin.
    pins_added: usize,
}

impl Run<'_> {
    /// containerd's `defaultConverter.convert` with nerdctl's hook: a manifest or index is
    /// rewritten first; then the (possibly new) blob's CID becomes the descriptor's only
    /// URL; then a Docker media type becomes OCI's. Layers, configs and anything else keep
    /// their bytes (nerdctl converts no layer unless asked to, and no diffID changes).
    fn convert(
        &mut self,
        desc: Descriptor,
        depth: usize,
    ) -> futures::future::BoxFuture<'_, Result<Descriptor, StoreError>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(StoreError::InvalidArgument(format!(
                    "indexes nested deeper than {MAX_DEPTH} levels"
                )));
            }
            let rewritten = match desc.media_type.as_str() {
                OCI_MANIFEST | DOCKER_MANIFEST => Some(self.manifest(&desc, depth).await?),
                OCI_INDEX | DOCKER_LIST => self.index(&desc, depth).await?,
                _ => None,
            };
            let (mut out, cid) = match rewritten {
                Some(new) => new,
                None => {
                    // A blob of the image: containerd holds it, and its DAG must be in
                    // ipfs before its CID is handed out.
                    let digest = parse_digest(&desc.digest)?;
                    let info = self
                        .store
                        .imported_info(&digest)
                        .await?
                        .ok_or_else(|| StoreError::NotFound(format!("content {digest}")))?;
                    (desc.clone(), info.cid.to_string())
                }
            };
            out.urls = vec![format!("ipfs://{cid}")];
            if is_docker(&desc.media_type) {
                out.media_type = docker_to_oci(&out.media_type).to_string();
            }
            Ok(out)
        })
    }

    async fn manifest(
        &mut self,
        desc: &Descriptor,
        depth: usize,
    ) -> Result<(Descriptor, String), StoreError> {
        let mut m: Manifest = self.read_json(desc).await?;
        if is_docker(&m.media_type) {
            m.media_type = docker_to_oci(&m.media_type).to_string();
        }
        if let Some(layers) = m.layers.take() {
            let mut out = Vec::with_capacity(layers.len());
            for l in layers {
                out.push(self.convert(l, depth + 1).await?);
            }
            m.layers = Some(out);
        }
        m.config = self
            .convert(std::mem::take(&mut m.config), depth + 1)
            .await?;
        self.rewritten(desc, m.to_go_json()).await
    }

    /// None when nothing changed (an OCI index listing no manifests): Go writes no new blob.
    async fn index(
        &mut self,
        desc: &Descriptor,
        depth: usize,
    ) -> Result<Option<(Descriptor, String)>, StoreError> {
        let mut idx: Index = self.read_json(desc).await?;
        let mut modified = false;
        if is_docker(&idx.media_type) {
            idx.media_type = docker_to_oci(&idx.media_type).to_string();
            modified = true;
        }
        let mut kept = Vec::new();
        for m in idx.manifests.take().unwrap_or_default() {
            modified = true;
            if m.platform
                .as_ref()
                .is_some_and(|p| !self.platforms.matches(p))
            {
                continue;
            }
            kept.push(self.convert(m, depth + 1).await?);
        }
        // Go appends the kept ones to a nil slice: none kept is `null`, not `[]`.
        idx.manifests = (!kept.is_empty()).then_some(kept);
        if !modified {
            return Ok(None);
        }
        Ok(Some(self.rewritten(desc, idx.to_go_json()).await?))
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        desc: &Descriptor,
    ) -> Result<T, StoreError> {
        let digest = parse_digest(&desc.digest)?;
        let bytes = self
            .store
            .read_small(&digest, MAX_MANIFEST_BYTES)
            .await?
            .ok_or_else(|| {
                StoreError::InvalidArgument(format!(
                    "{digest}: larger than {MAX_MANIFEST_BYTES} bytes, not a manifest"
                ))
            })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            StoreError::InvalidArgument(format!("{digest} ({}): {e}", desc.media_type))
        })
    }

    /// Go's `WriteJSON`: the old descriptor with the new blob's digest and size, and the
    /// new blob's CID (`put`).
    async fn rewritten(
        &mut self,
        old: &Descriptor,
        json: Vec<u8>,
    ) -> Result<(Descriptor, String), StoreError> {
        let (digest, cid) = self.put(&json).await?;
        let desc = Descriptor {
            digest: digest.to_string(),
            size: json.len() as i64,
            ..old.clone()
        };
        Ok((desc, cid))
    }

    /// Stores `bytes` as a blob and returns its digest and CID, which an anonymous pin holds in the
    /// backend, as `nerdctl push ipfs://` pins what it adds. No image in containerd refers
    /// to these JSON blobs, so containerd's next garbage collection deletes them from this
    /// store (it removes every blob its metadata does not name), possibly before their
    /// import after the commit has run; the export must outlive that. A Delete leaves a
    /// pin that is not this store's, and the import after the commit does not take it over.
    async fn put(&mut self, bytes: &[u8]) -> Result<(Digest, String), StoreError> {
        let digest = self.store_bytes(bytes).await?;
        let backend = self.store.backend();
        let ctx = || format!("adding the export's {digest} to ipfs");
        let cid = backend
            .add_record(bytes.to_vec())
            .await
            .map_err(StoreError::ipfs(ctx()))?;
        self.pins_added += 1;
        Ok((digest, cid.to_string()))
    }

    async fn store_bytes(&mut self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let mut h = Digester::new(Algorithm::Sha256);
        h.update(bytes);
        let digest = h.digest();
        if self.store.contains(&digest).await? {
            return Ok(digest);
        }
        let ingest_ref = format!("ipcs-ipfs-push-{digest}");
        let mut w = self
            .store
            .writer(&ingest_ref, bytes.len() as i64, Some(digest.clone()))
            .await?;
        let commit = WriteRequest {
            action: WriteAction::Commit,
            total: bytes.len() as i64,
            expected: Some(digest.clone()),
            offset: 0,
            data: bytes::Bytes::copy_from_slice(bytes),
            labels: BTreeMap::new(),
        };
        match w.handle(commit).await {
            Ok(_) => self.written.push(digest.clone()),
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(digest)
    }
}

fn parse_digest(s: &str) -> Result<Digest, StoreError> {
    s.parse()
        .map_err(|e| StoreError::InvalidArgument(format!("descriptor digest {s:?}: {e}")))
}

#[cfg(test)]
mod tests;
