//! The CLI's side of the admin service's Export, Import, Compare, IpfsPush and the wait
//! for pending imports, in domain
//! types (`car`, `dedup`, `ipfs_push`), so that the CLI never touches generated protobuf
//! types.
use crate::car::{Blob, Descriptor, ImageRef, ImportProgress, Imported};
use crate::dedup::report::Report;
use crate::server::archive::{image_target, CHUNK};
use crate::server::client;
use crate::server::proto::admin::{self, admin_client::AdminClient};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::path::Path;
use std::pin::Pin;
use tonic::transport::Channel;

pub type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// What an export holds, sent before its CAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub root: String,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// What `ipcs ipfs-push` got back.
#[derive(Debug, Clone)]
pub struct IpfsPushed {
    pub cid: String,
    pub root_json: String,
    pub written: u32,
}

/// One message of an import's answer.
pub enum ImportEvent {
    Progress(ImportProgress),
    Done(Imported),
}

pub struct Admin {
    c: AdminClient<Channel>,
}

fn msg(s: tonic::Status) -> String {
    s.message().to_string()
}

fn image_ref(t: admin::ImageTarget) -> Result<ImageRef, String> {
    crate::server::archive::image_ref(t).map_err(msg)
}

impl Admin {
    /// nerdctl's `ipfs://` format of the image whose target is `root_json`.
    pub async fn ipfs_push(
        &mut self,
        root_json: String,
        platforms: Vec<String>,
        all_platforms: bool,
    ) -> Result<IpfsPushed, String> {
        let r = self
            .c
            .ipfs_push(admin::IpfsPushRequest {
                root_descriptor_json: root_json,
                platforms,
                all_platforms,
            })
            .await
            .map_err(msg)?
            .into_inner();
        Ok(IpfsPushed {
            cid: r.cid,
            root_json: r.root_descriptor_json,
            written: r.written,
        })
    }

    /// Waits until no committed blob's import into Kubo is pending (commits answer before
    /// Kubo's import finishes), at most `limit`; an error names how many still are.
    pub async fn settle(&mut self, limit: std::time::Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let s = self.c.stats(admin::StatsRequest {}).await.map_err(msg)?;
            let pending = s.into_inner().pending_imports;
            if pending == 0 {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "{pending} imports into kubo still pending after {limit:?}"
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn connect(socket: &Path) -> Result<Admin, String> {
        let channel = client::connect(socket)
            .await
            .map_err(|e| format!("cannot reach ipcs at {}: {e}", socket.display()))?;
        // A CAR piece is at most CHUNK bytes; leave room for the envelope.
        let limit = CHUNK * 4;
        Ok(Admin {
            c: AdminClient::new(channel)
                .max_decoding_message_size(limit.max(64 << 20))
                .max_encoding_message_size(limit),
        })
    }

    pub async fn export(&mut self, images: &[ImageRef]) -> Result<(ExportSummary, Chunks), String> {
        let mut s = self
            .c
            .export(admin::ExportRequest {
                images: images.iter().map(image_target).collect(),
            })
            .await
            .map_err(msg)?
            .into_inner();
        let first = s
            .message()
            .await
            .map_err(msg)?
            .and_then(|m| m.summary)
            .ok_or("ipcs answered the export without a summary")?;
        let summary = ExportSummary {
            root: first.root,
            blobs: first.blobs,
            blob_bytes: first.blob_bytes,
        };
        let chunks = s.map(|m| m.map(|m| Bytes::from(m.data)).map_err(msg));
        Ok((summary, Box::pin(chunks)))
    }

    /// Sends the CAR (`size` bytes in `car`) and yields the answers as they come.
    pub async fn import(
        &mut self,
        size: u64,
        car: impl Stream<Item = Bytes> + Send + 'static,
    ) -> Result<Pin<Box<dyn Stream<Item = Result<ImportEvent, String>> + Send>>, String> {
        let mut first = true;
        let reqs = car.map(move |data| {
            let car_size = if first { size } else { 0 };
            first = false;
            admin::ImportRequest {
                data: data.to_vec(),
                car_size,
            }
        });
        let s = self.c.import(reqs).await.map_err(msg)?.into_inner();
        Ok(Box::pin(s.map(|m| {
            let m = m.map_err(msg)?;
            match m.done {
                None => Ok(ImportEvent::Progress(ImportProgress {
                    verified_blobs: m.verified_blobs,
                    verified_bytes: m.verified_bytes,
                    total_blobs: m.total_blobs,
                    total_bytes: m.total_bytes,
                })),
                Some(d) => {
                    let images = d
                        .images
                        .into_iter()
                        .map(image_ref)
                        .collect::<Result<_, _>>()?;
                    let mut blobs = Vec::with_capacity(d.blobs.len());
                    for b in d.blobs {
                        let blob = Blob {
                            desc: Descriptor {
                                media_type: b.media_type,
                                digest: b.digest.parse().map_err(|e| format!("{e}"))?,
                                size: b.size.max(0) as u64,
                            },
                            cid: b.cid.parse().map_err(|e| format!("{e}"))?,
                            is_layer: false,
                            gc_labels: b.labels.into_iter().collect(),
                        };
                        blobs.push((blob, b.adopted));
                    }
                    Ok(ImportEvent::Done(Imported {
                        root: d.root,
                        images,
                        blobs,
                        car_blocks: d.car_blocks,
                        car_block_bytes: d.car_block_bytes,
                    }))
                }
            }
        })))
    }

    pub async fn compare(&mut self, images: &[ImageRef]) -> Result<Report, String> {
        let r = self
            .c
            .compare(admin::CompareRequest {
                images: images.iter().map(image_target).collect(),
            })
            .await
            .map_err(msg)?
            .into_inner();
        serde_json::from_str(&r.report_json).map_err(|e| format!("ipcs's report: {e}"))
    }
}
