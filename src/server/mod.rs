//! The gRPC face of ipcs: containerd.services.content.v1.Content,
//! containerd.services.diff.v1.Diff (`diff`) and ipcs's own admin service over one unix
//! socket.
//! Handlers are thin: convert, call the store, convert back; errors become codes in
//! `status::to_status` only.
pub mod activation;
mod admin;
pub mod admin_client;
mod archive;
pub mod client;
pub mod containerd;
mod convert;
mod diff;
mod diff_convert;
mod listen;
pub mod proto;
mod rpc;
pub mod shutdown;
mod status;
mod write;

pub use listen::{bind_socket, listener, serve};

use crate::store::ContentStore;
use futures::{Stream, StreamExt};
use proto::content_server::Content;
use status::to_status;
use std::pin::Pin;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Turns the store's batches of records into a response stream, one message per batch.
fn batches<T: Send + 'static, M: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<Result<Vec<T>, crate::store::StoreError>>,
    to_message: fn(Vec<T>) -> M,
) -> ResponseStream<M> {
    Box::pin(ReceiverStream::new(rx).map(move |batch| batch.map(to_message).map_err(to_status)))
}

pub struct ContentService {
    store: ContentStore,
}

impl ContentService {
    pub fn new(store: ContentStore) -> ContentService {
        ContentService { store }
    }
}

#[tonic::async_trait]
impl Content for ContentService {
    async fn info(
        &self,
        req: Request<proto::InfoRequest>,
    ) -> Result<Response<proto::InfoResponse>, Status> {
        let d = convert::digest(&req.into_inner().digest).map_err(to_status)?;
        rpc::record_digest(&d.to_string());
        let info = self.store.info(&d).await.map_err(to_status)?;
        Ok(Response::new(proto::InfoResponse {
            info: Some(convert::info(info)),
        }))
    }

    async fn update(
        &self,
        req: Request<proto::UpdateRequest>,
    ) -> Result<Response<proto::UpdateResponse>, Status> {
        let req = req.into_inner();
        let info = req
            .info
            .ok_or_else(|| Status::invalid_argument("update without info"))?;
        let d = convert::digest(&info.digest).map_err(to_status)?;
        rpc::record_digest(&d.to_string());
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let updated = self
            .store
            .update(&d, info.labels.into_iter().collect(), paths)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::UpdateResponse {
            info: Some(convert::info(updated)),
        }))
    }

    type ListStream = ResponseStream<proto::ListContentResponse>;

    async fn list(
        &self,
        req: Request<proto::ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let rx = self
            .store
            .list(&req.into_inner().filters)
            .map_err(to_status)?;
        Ok(Response::new(batches(rx, |infos| {
            proto::ListContentResponse {
                info: infos.into_iter().map(convert::info).collect(),
            }
        })))
    }

    async fn delete(
        &self,
        req: Request<proto::DeleteContentRequest>,
    ) -> Result<Response<()>, Status> {
        let d = convert::digest(&req.into_inner().digest).map_err(to_status)?;
        rpc::record_digest(&d.to_string());
        self.store.delete(&d).await.map_err(to_status)?;
        Ok(Response::new(()))
    }

    type ReadStream = ResponseStream<proto::ReadContentResponse>;

    async fn read(
        &self,
        req: Request<proto::ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let req = req.into_inner();
        let d = convert::digest(&req.digest).map_err(to_status)?;
        rpc::record_digest(&d.to_string());
        let blob = self
            .store
            .read(&d, req.offset, req.size)
            .await
            .map_err(to_status)?;
        let stream = blob.map(|chunk| {
            chunk
                .map(|(offset, data)| proto::ReadContentResponse {
                    offset: offset as i64,
                    data: data.to_vec(),
                })
                .map_err(to_status)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn status(
        &self,
        req: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let r = req.into_inner().r#ref;
        rpc::record_ref(&r);
        let st = self.store.status(&r).await.map_err(to_status)?;
        Ok(Response::new(proto::StatusResponse {
            status: Some(convert::status(st)),
        }))
    }

    async fn list_statuses(
        &self,
        req: Request<proto::ListStatusesRequest>,
    ) -> Result<Response<proto::ListStatusesResponse>, Status> {
        let statuses = self
            .store
            .list_statuses(&req.into_inner().filters)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::ListStatusesResponse {
            statuses: statuses.into_iter().map(convert::status).collect(),
        }))
    }

    type WriteStream = ResponseStream<proto::WriteContentResponse>;

    async fn write(
        &self,
        req: Request<Streaming<proto::WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        // The session outlives this call: it keeps the RPC's span (write.rs names the ref).
        tokio::spawn(
            write::run(self.store.clone(), req.into_inner(), tx)
                .instrument(tracing::Span::current()),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn abort(&self, req: Request<proto::AbortRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner().r#ref;
        rpc::record_ref(&r);
        self.store.abort(&r).await.map_err(to_status)?;
        Ok(Response::new(()))
    }
}
