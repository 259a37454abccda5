//! Export: the images' blobs (found by `walk`), an index block naming them
//! (`format::CarIndex`, stored with `dag put`), and the CAR of that root from `dag export`,
//! streamed as Kubo writes it. Every blob's DAG is pinned by the store, so no block can
//! vanish mid-export; the index block is tiny and written just before.
use crate::car::format::CarIndex;
use crate::car::walk::{walk, Blob, ImageRef};
use crate::car::Archive;
use crate::ipfs::KuboError;
use crate::store::StoreError;
use bytes::Bytes;
use futures::Stream;
use std::pin::Pin;

pub type CarStream = Pin<Box<dyn Stream<Item = Result<Bytes, KuboError>> + Send>>;

/// An export under way: what it holds, and the CAR's bytes.
pub struct Exported {
    pub root: String,
    pub blobs: Vec<Blob>,
    pub blob_bytes: u64,
    pub car: CarStream,
}

impl Archive {
    pub async fn export(&self, images: &[ImageRef]) -> Result<Exported, StoreError> {
        if images.is_empty() {
            return Err(StoreError::InvalidArgument("export of no image".into()));
        }
        let blobs = walk(&self.store, images).await?;
        let blob_bytes = blobs.iter().map(|b| b.desc.size).sum();
        let doc = CarIndex::new(images, &blobs).to_dag_json();
        let root = self
            .kubo
            .dag_put_json(doc)
            .await
            .map_err(StoreError::ipfs("storing the CAR index"))?;
        let car = self
            .kubo
            .dag_export(&root, blob_bytes)
            .await
            .map_err(StoreError::ipfs(format!("exporting {root}")))?;
        tracing::info!(%root, blobs = blobs.len(), blob_bytes, images = images.len(), "exporting a CAR");
        Ok(Exported {
            root,
            blobs,
            blob_bytes,
            car: Box::pin(car),
        })
    }
}
