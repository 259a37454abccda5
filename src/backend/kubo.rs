//! The production backend: a Kubo node through `ipfs::KuboClient`, importing with this
//! store's `ImportOptions` given explicitly on every add, so Kubo's own Import settings
//! never change a CID.
use crate::backend::{
    BackendError, BlobBackend, BodyStream, BoxFut, BrokenReference, ByReference, ByteStream,
    DagLayout, LeafFile, PinEntry, Reach,
};
use crate::cid::Cid;
use crate::config::ImportOptions;
use crate::ipfs::KuboClient;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

#[derive(Clone)]
pub struct KuboBackend {
    kubo: KuboClient,
    import: ImportOptions,
    pin_name: String,
    /// Set by `use_filestore`: blobs are kept by reference to the store's files.
    filestore: Option<Filestore>,
}

/// What keeping blobs by reference needs to know of Kubo's filestore.
#[derive(Clone)]
struct Filestore {
    /// The store's data dir, where the probe file is written.
    data_root: PathBuf,
    /// Kubo's filestore root (the paths it reports are relative to it), learnt by the
    /// probe: at startup, or at the first import if Kubo was unreachable then.
    root: Arc<OnceCell<PathBuf>>,
}

impl KuboBackend {
    /// `kubo` must name its pins (`KuboClient::with_pin_name`) `pin_name`.
    pub fn new(kubo: KuboClient, import: ImportOptions) -> KuboBackend {
        let pin_name = kubo.pin_name().unwrap_or_default().to_string();
        KuboBackend {
            kubo,
            import,
            pin_name,
            filestore: None,
        }
    }

    /// Switches to keeping blobs by reference (Kubo's filestore, `add --nocopy`) after
    /// checking that this Kubo can: its filestore is enabled, `data_root` lies under its
    /// filestore root (the repo's parent directory), and it reads back what it references
    /// there. Raw leaves are required: `--nocopy` implies them, so without them the CIDs
    /// would change. A Kubo that is down now is asked at the first import instead.
    pub async fn use_filestore(&mut self, data_root: &Path) -> Result<(), BackendError> {
        if !self.import.raw_leaves {
            return Err(BackendError::Api {
                addr: self.kubo.address().to_string(),
                op: "filestore probe",
                message: "blobs kept once (filestore) need import.raw_leaves = true".into(),
            });
        }
        self.filestore = Some(Filestore {
            data_root: data_root.to_path_buf(),
            root: Arc::new(OnceCell::new()),
        });
        match self.filestore_root().await {
            Err(e @ (BackendError::Unreachable { .. } | BackendError::Timeout { .. })) => {
                tracing::warn!(error = %e, "kubo unreachable: the filestore probe waits for the first import");
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// Kubo's filestore root, probing once: a small file in the data dir is imported by
    /// reference, verified by Kubo and removed again.
    async fn filestore_root(&self) -> Result<PathBuf, BackendError> {
        let Some(fs) = &self.filestore else {
            return Ok(PathBuf::from("/"));
        };
        fs.root
            .get_or_try_init(|| async {
                let probe = fs.data_root.join("filestore-probe");
                let content = format!("ipcs filestore probe {}\n", self.pin_name);
                let p = probe.clone();
                tokio::task::spawn_blocking(move || std::fs::write(&p, content))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
                    .map_err(|source| BackendError::Local {
                        path: probe.display().to_string(),
                        op: "filestore probe",
                        source,
                    })?;
                self.kubo.probe_filestore(&probe, &self.import).await
            })
            .await
            .cloned()
    }

    fn cid(&self, op: &'static str, s: String) -> Result<Cid, BackendError> {
        s.parse().map_err(|e| BackendError::Api {
            addr: self.kubo.address().to_string(),
            op,
            message: format!("{e}"),
        })
    }

    /// The name of `cid`'s recursive pin in the whole pinset: asked only after a call on
    /// `cid` alone failed with another error than Kubo's "not pinned" answer
    /// (`KuboClient::recursive_pin_name`), so that an error worded otherwise (another
    /// Kubo release) is decided by the pinset.
    async fn pin_in_pinset(&self, cid: &Cid) -> Result<Option<String>, BackendError> {
        let mut found = None;
        self.kubo
            .pin_ls_recursive(|p| {
                if p.cid == cid.as_str() {
                    found = Some(p.name);
                }
            })
            .await?;
        Ok(found)
    }
}

impl BlobBackend for KuboBackend {
    fn address(&self) -> &str {
        self.kubo.address()
    }

    fn pin_name(&self) -> &str {
        &self.pin_name
    }

    fn transfer_timeout(&self, bytes: u64) -> Duration {
        self.kubo.transfer_timeout(bytes)
    }

    fn version(&self) -> BoxFut<'_, String> {
        Box::pin(self.kubo.version())
    }

    fn add_file<'a>(&'a self, path: &'a Path, size: u64) -> BoxFut<'a, Cid> {
        Box::pin(async move {
            let added = self.kubo.add_file(path, size, &self.import, None).await?;
            self.cid("add", added.cid)
        })
    }

    fn hash_file<'a>(&'a self, path: &'a Path, size: u64) -> BoxFut<'a, Cid> {
        Box::pin(async move {
            let cid = self.kubo.hash_file(path, size, &self.import).await?;
            self.cid("add", cid)
        })
    }

    fn add_stream(&self, body: BodyStream) -> BoxFut<'static, Cid> {
        let me = self.clone();
        Box::pin(async move {
            let cid = me.kubo.add_stream(body, &me.import).await?;
            me.cid("add", cid)
        })
    }

    fn add_record(&self, data: Vec<u8>) -> BoxFut<'_, Cid> {
        Box::pin(async move {
            let added = self.kubo.add_bytes(data, &self.import).await?;
            self.cid("add", added.cid)
        })
    }

    fn cat<'a>(
        &'a self,
        cid: &'a Cid,
        offset: u64,
        length: u64,
        reach: Reach,
    ) -> BoxFut<'a, ByteStream> {
        Box::pin(async move {
            let s: ByteStream = match reach {
                Reach::Network => self.kubo.cat(cid.as_str(), offset, length).await?.boxed(),
                Reach::Local => self
                    .kubo
                    .cat_local(cid.as_str(), offset, length)
                    .await?
                    .boxed(),
            };
            Ok(s)
        })
    }

    fn pin<'a>(&'a self, cid: &'a Cid, size: u64, reach: Reach) -> BoxFut<'a, ()> {
        Box::pin(async move {
            match reach {
                Reach::Network => self.kubo.pin_add(cid.as_str(), size).await,
                Reach::Local => self.kubo.pin_add_local(cid.as_str()).await,
            }
        })
    }

    fn unpin<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, ()> {
        Box::pin(async move {
            match self.kubo.pin_rm(cid.as_str()).await {
                Err(e @ BackendError::Api { .. }) => match self.pin_in_pinset(cid).await {
                    Ok(None) => Ok(()),
                    _ => Err(e),
                },
                other => other,
            }
        })
    }

    fn pinned_as<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, Option<String>> {
        Box::pin(async move {
            match self.kubo.recursive_pin_name(cid.as_str()).await {
                Err(e @ BackendError::Api { .. }) => self.pin_in_pinset(cid).await.map_err(|_| e),
                other => other,
            }
        })
    }

    fn stat<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, u64> {
        Box::pin(self.kubo.file_size(cid.as_str()))
    }

    fn fetch<'a>(&'a self, cid: &'a Cid, size: u64) -> BoxFut<'a, u64> {
        Box::pin(self.kubo.fetch_dag(cid.as_str(), size))
    }

    fn pins(&self) -> BoxFut<'_, Vec<PinEntry>> {
        Box::pin(async move {
            let mut out = Vec::new();
            self.kubo
                .pin_ls_recursive(|p| {
                    // A pin Kubo reports under an implausible CID is nobody's blob of ours.
                    if let Ok(cid) = p.cid.parse() {
                        out.push(PinEntry { cid, name: p.name });
                    }
                })
                .await?;
            Ok(out)
        })
    }

    fn disk_usage(&self) -> BoxFut<'_, u64> {
        Box::pin(self.kubo.repo_size())
    }

    fn by_reference(&self) -> Option<&dyn ByReference> {
        self.filestore.as_ref().map(|_| self as &dyn ByReference)
    }
}

impl ByReference for KuboBackend {
    fn layout(&self) -> Option<DagLayout> {
        // Every option that shapes the DAG is sent with each add (`ipfs::kubo`), so these
        // three decide it alone.
        (self.import.cid_version == 1 && self.import.raw_leaves).then_some(DagLayout {
            chunk_size: self.import.chunk_size,
            max_links: crate::ipfs::UNIXFS_FILE_MAX_LINKS,
        })
    }

    fn keep_file<'a>(&'a self, path: &'a Path, size: u64) -> BoxFut<'a, Cid> {
        Box::pin(async move {
            self.filestore_root().await?;
            let added = self
                .kubo
                .add_file(path, size, &self.import, Some(path))
                .await?;
            self.cid("add", added.cid)
        })
    }

    fn leaf_files<'a>(&'a self, cid: &'a Cid, size: u64) -> BoxFut<'a, Vec<LeafFile>> {
        Box::pin(async move {
            let base = self.filestore_root().await?;
            let leaves = self.kubo.file_leaves(cid.as_str(), size).await?;
            let mut out = Vec::new();
            self.kubo
                .filestore_ls_of(&leaves, self.kubo.transfer_timeout(size), |e| {
                    // A leaf kept as a copy is no reference: Kubo answers "not found" (30)
                    // with no path. A reference comes with its path, also when Kubo
                    // found its file missing (11) or changed (12): the caller checks.
                    if !e.file_path.is_empty() {
                        out.push(LeafFile {
                            leaf: e.cid(),
                            file: base.join(&e.file_path),
                        });
                    }
                })
                .await?;
            Ok(out)
        })
    }

    fn drop_blocks<'a>(&'a self, cids: &'a [String]) -> BoxFut<'a, ()> {
        Box::pin(self.kubo.block_rm(cids))
    }

    fn broken_references<'a>(
        &'a self,
        root: &'a Path,
        deadline: Duration,
    ) -> BoxFut<'a, Vec<BrokenReference>> {
        Box::pin(async move {
            let base = self.filestore_root().await?;
            let mut out = Vec::new();
            self.kubo
                .filestore_verify(deadline, |e| {
                    let path = base.join(&e.file_path);
                    if e.status != 0 && path.starts_with(root) {
                        out.push(BrokenReference {
                            cid: e.cid(),
                            path: path.display().to_string(),
                            offset: e.offset,
                            problem: match e.status {
                                11 => "file not found".to_string(),
                                12 => "file changed".to_string(),
                                s => format!("status {s}: {}", e.error),
                            },
                        });
                    }
                })
                .await?;
            Ok(out)
        })
    }
}
