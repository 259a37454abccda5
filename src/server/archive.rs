//! The admin service's Export, Import and Compare: conversions between the admin
//! protocol and `car` / `dedup`, and the streams. A CAR crosses the socket in messages of
//! at most `CHUNK` bytes.
use crate::car::{Archive, Descriptor, ImageRef, ImportProgress};
use crate::server::proto::admin;
use crate::server::status::to_status;
use crate::server::ResponseStream;
use crate::store::StoreError;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// Largest CAR piece per message, far below the message limit.
pub const CHUNK: usize = 1 << 20;

pub fn image_ref(t: admin::ImageTarget) -> Result<ImageRef, Status> {
    let digest = t
        .digest
        .parse()
        .map_err(|e| to_status(StoreError::from(e)))?;
    if t.size < 0 || t.name.is_empty() {
        return Err(Status::invalid_argument(format!(
            "image {:?}: empty name or negative size",
            t.name
        )));
    }
    Ok(ImageRef {
        name: t.name,
        target: Descriptor {
            media_type: t.media_type,
            digest,
            size: t.size as u64,
        },
    })
}

pub fn image_target(i: &ImageRef) -> admin::ImageTarget {
    admin::ImageTarget {
        name: i.name.clone(),
        digest: i.target.digest.to_string(),
        media_type: i.target.media_type.clone(),
        size: i.target.size as i64,
    }
}

fn pieces(b: Bytes) -> impl Iterator<Item = Bytes> {
    let n = b.len().div_ceil(CHUNK);
    (0..n).map(move |i| b.slice(i * CHUNK..((i + 1) * CHUNK).min(b.len())))
}

pub async fn export(
    archive: &Archive,
    req: admin::ExportRequest,
) -> Result<ResponseStream<admin::ExportResponse>, Status> {
    let images = req
        .images
        .into_iter()
        .map(image_ref)
        .collect::<Result<Vec<_>, _>>()?;
    let ex = archive.export(&images).await.map_err(to_status)?;
    let summary = admin::ExportResponse {
        data: Vec::new(),
        summary: Some(admin::ExportSummary {
            root: ex.root.clone(),
            blobs: ex.blobs.len() as u64,
            blob_bytes: ex.blob_bytes,
        }),
    };
    let root = ex.root.clone();
    let body = ex.car.flat_map(move |r| {
        let items: Vec<Result<admin::ExportResponse, Status>> = match r {
            Ok(b) => pieces(b)
                .map(|p| {
                    Ok(admin::ExportResponse {
                        data: p.to_vec(),
                        summary: None,
                    })
                })
                .collect(),
            Err(e) => vec![Err(to_status(StoreError::ipfs(format!(
                "exporting {root}"
            ))(e)))],
        };
        futures::stream::iter(items)
    });
    Ok(Box::pin(
        futures::stream::once(async { Ok(summary) }).chain(body),
    ))
}

pub async fn import(
    archive: Arc<Archive>,
    mut req: Streaming<admin::ImportRequest>,
) -> Result<ResponseStream<admin::ImportResponse>, Status> {
    let first = req
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("import without a CAR"))?;
    let car_size = first.car_size;
    let head = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(first.data.into()) });
    let rest = req.map(|m| {
        m.map(|m| Bytes::from(m.data)).map_err(|s| {
            std::io::Error::other(format!("CAR stream from the client: {}", s.message()))
        })
    });
    let body: crate::backend::BodyStream = Box::pin(head.chain(rest));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let ptx = tx.clone();
        let r = archive
            .import(body, car_size, move |p: ImportProgress| {
                let _ = ptx.try_send(Ok(admin::ImportResponse {
                    verified_blobs: p.verified_blobs,
                    verified_bytes: p.verified_bytes,
                    total_blobs: p.total_blobs,
                    total_bytes: p.total_bytes,
                    done: None,
                }));
            })
            .await;
        let last = r.map_err(to_status).map(|im| admin::ImportResponse {
            done: Some(admin::ImportDone {
                root: im.root,
                images: im.images.iter().map(image_target).collect(),
                blobs: im
                    .blobs
                    .iter()
                    .map(|(b, adopted)| admin::ImportedBlob {
                        digest: b.desc.digest.to_string(),
                        media_type: b.desc.media_type.clone(),
                        size: b.desc.size as i64,
                        cid: b.cid.to_string(),
                        labels: b.gc_labels.clone().into_iter().collect(),
                        adopted: *adopted,
                    })
                    .collect(),
                car_blocks: im.car_blocks,
                car_block_bytes: im.car_block_bytes,
            }),
            ..Default::default()
        });
        let _ = tx.send(last).await;
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

pub async fn compare(
    archive: &Archive,
    req: admin::CompareRequest,
) -> Result<admin::CompareResponse, Status> {
    let images = req
        .images
        .into_iter()
        .map(image_ref)
        .collect::<Result<Vec<_>, _>>()?;
    let report = crate::dedup::compare(archive.store(), archive.kubo(), &images)
        .await
        .map_err(to_status)?;
    Ok(admin::CompareResponse {
        report_json: serde_json::to_string(&report).map_err(|e| Status::internal(e.to_string()))?,
    })
}
