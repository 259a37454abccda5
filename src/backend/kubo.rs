//! The production backend: a Kubo node through `ipfs::KuboClient`, importing with this
//! store's `ImportOptions` given explicitly on every add, so Kubo's own Import settings
//! never change a CID.
use crate::backend::{BackendError, BlobBackend, BodyStream, BoxFut, ByteStream, PinEntry, Reach};
use crate::cid::Cid;
use crate::config::ImportOptions;
use crate::ipfs::KuboClient;
use futures::StreamExt;
use std::path::Path;
use std::time::Duration;

#[derive(Clone)]
pub struct KuboBackend {
    kubo: KuboClient,
    import: ImportOptions,
    pin_name: String,
}

impl KuboBackend {
    /// `kubo` must name its pins (`KuboClient::with_pin_name`) `pin_name`.
    pub fn new(kubo: KuboClient, import: ImportOptions) -> KuboBackend {
        let pin_name = kubo.pin_name().unwrap_or_default().to_string();
        KuboBackend {
            kubo,
            import,
            pin_name,
        }
    }

    fn cid(&self, op: &'static str, s: String) -> Result<Cid, BackendError> {
        s.parse().map_err(|e| BackendError::Api {
            addr: self.kubo.address().to_string(),
            op,
            message: format!("{e}"),
        })
    }

    /// The name of `cid`'s recursive pin in the whole pinset: asked only after a call on
    /// `cid` alone failed, so that "not pinned" is decided by the pinset, never by the
    /// wording of Kubo's error.
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
            let added = self.kubo.add_file(path, size, &self.import).await?;
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
}
