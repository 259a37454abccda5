//! ipcs's admin service: digest → CID listings, store statistics and nerdctl-format
//! exports (`ipfs_push`) for the CLI, and CAR export/import and the dedup report
//! (`archive.rs`).
use crate::car::Archive;
use crate::ipfs_push::{self, PlatformMatch};
use crate::server::archive;
use crate::server::proto::admin::{self, admin_server::Admin};
use crate::server::status::to_status;
use crate::server::{batches, ResponseStream};
use crate::store::{ContentStore, StoreError};
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

pub struct AdminService {
    store: ContentStore,
    archive: Arc<Archive>,
}

impl AdminService {
    pub fn new(store: ContentStore, archive: Arc<Archive>) -> AdminService {
        AdminService { store, archive }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    type BlobsStream = ResponseStream<admin::BlobsResponse>;

    async fn blobs(
        &self,
        req: Request<admin::BlobsRequest>,
    ) -> Result<Response<Self::BlobsStream>, Status> {
        let rx = self
            .store
            .list(&req.into_inner().filters)
            .map_err(to_status)?;
        Ok(Response::new(batches(rx, |recs| admin::BlobsResponse {
            blobs: recs
                .into_iter()
                .map(|r| admin::Blob {
                    digest: r.digest.to_string(),
                    cid: r.cid.to_string(),
                    size: r.size as i64,
                })
                .collect(),
        })))
    }

    async fn stats(
        &self,
        _req: Request<admin::StatsRequest>,
    ) -> Result<Response<admin::StatsResponse>, Status> {
        let s = self.store.stats().await.map_err(to_status)?;
        let backend = self.store.backend();
        let (kubo_version, kubo_error) = match backend.version().await {
            Ok(v) => (v, String::new()),
            Err(e) => (String::new(), e.to_string()),
        };
        let kubo_repo_bytes = match kubo_error.is_empty() {
            true => backend.disk_usage().await.unwrap_or(0),
            false => 0,
        };
        Ok(Response::new(admin::StatsResponse {
            blobs: s.blobs,
            blob_bytes: s.blob_bytes,
            ingests: s.ingests,
            cache_bytes: s.cache_bytes,
            kubo_api: self.store.backend().address().to_string(),
            kubo_version,
            kubo_error,
            index_bytes: s.index_bytes,
            ingest_bytes: s.ingest_bytes,
            stored_bytes: s.stored_bytes,
            stored_blobs: s.stored_blobs,
            kubo_repo_bytes,
            kept_once: backend.by_reference().is_some(),
            pending_imports: self.store.pending_imports() as u64,
        }))
    }

    type ExportStream = ResponseStream<admin::ExportResponse>;

    async fn export(
        &self,
        req: Request<admin::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        Ok(Response::new(
            archive::export(&self.archive, req.into_inner()).await?,
        ))
    }

    type ImportStream = ResponseStream<admin::ImportResponse>;

    async fn import(
        &self,
        req: Request<Streaming<admin::ImportRequest>>,
    ) -> Result<Response<Self::ImportStream>, Status> {
        Ok(Response::new(
            archive::import(self.archive.clone(), req.into_inner()).await?,
        ))
    }

    async fn compare(
        &self,
        req: Request<admin::CompareRequest>,
    ) -> Result<Response<admin::CompareResponse>, Status> {
        Ok(Response::new(
            archive::compare(&self.archive, req.into_inner()).await?,
        ))
    }

    async fn ipfs_push(
        &self,
        req: Request<admin::IpfsPushRequest>,
    ) -> Result<Response<admin::IpfsPushResponse>, Status> {
        let r = req.into_inner();
        let platforms = PlatformMatch::new(r.all_platforms, &r.platforms)
            .map_err(|e| to_status(StoreError::InvalidArgument(e)))?;
        let out = ipfs_push::push(&self.store, r.root_descriptor_json.as_bytes(), &platforms)
            .await
            .map_err(to_status)?;
        Ok(Response::new(admin::IpfsPushResponse {
            cid: out.cid,
            root_descriptor_json: String::from_utf8_lossy(&out.root_json).into_owned(),
            written: out.written as u32,
        }))
    }
}
