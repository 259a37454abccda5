//! The gRPC face of the differ: containerd.services.diff.v1.Diff on the same socket as
//! the content service. Thin: convert, call the differ, convert back; errors become codes
//! in `status::diff_status` only.
use crate::differ::Differ;
use crate::server::diff_convert;
use crate::server::proto::containerd::services::diff::v1 as proto;
use crate::server::status::diff_status;
use tonic::{Request, Response, Status};

pub struct DiffService {
    differ: Differ,
}

impl DiffService {
    pub fn new(differ: Differ) -> DiffService {
        DiffService { differ }
    }
}

#[tonic::async_trait]
impl proto::diff_server::Diff for DiffService {
    async fn apply(
        &self,
        req: Request<proto::ApplyRequest>,
    ) -> Result<Response<proto::ApplyResponse>, Status> {
        let req = diff_convert::apply_request(req.into_inner()).map_err(diff_status)?;
        crate::server::rpc::record_digest(&req.layer.digest);
        let applied = self.differ.apply(req).await.map_err(diff_status)?;
        Ok(Response::new(diff_convert::applied(applied)))
    }

    /// Creating diffs is left to containerd's walking differ, which its diff service
    /// tries next on UNIMPLEMENTED.
    async fn diff(
        &self,
        _req: Request<proto::DiffRequest>,
    ) -> Result<Response<proto::DiffResponse>, Status> {
        Err(Status::unimplemented(
            "ipcs-diff does not create diffs; containerd's next differ does",
        ))
    }
}
