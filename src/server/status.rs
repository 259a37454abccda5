//! The one place where store errors become gRPC codes, following containerd's contract.
//! UNAVAILABLE is reserved for a locked ref: containerd retries it forever, so an IPFS
//! outage must surface as something else.
use crate::ipfs::KuboError;
use crate::store::StoreError;
use tonic::{Code, Status};

pub fn to_status(e: StoreError) -> Status {
    let code = match &e {
        StoreError::NotFound(_) => Code::NotFound,
        StoreError::AlreadyExists(_) => Code::AlreadyExists,
        StoreError::InvalidArgument(_) => Code::InvalidArgument,
        StoreError::FailedPrecondition(_) => Code::FailedPrecondition,
        StoreError::OutOfRange(_) => Code::OutOfRange,
        StoreError::Locked { .. } => Code::Unavailable,
        // Not UNAVAILABLE: containerd would retry that forever as "locked".
        StoreError::LimitExceeded(_) => Code::ResourceExhausted,
        StoreError::Ipfs {
            source: KuboError::Timeout { .. },
            ..
        } => Code::DeadlineExceeded,
        StoreError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
            Code::ResourceExhausted
        }
        StoreError::DataLoss(_) => Code::DataLoss,
        StoreError::Ipfs { .. }
        | StoreError::Index(_)
        | StoreError::Io { .. }
        | StoreError::Internal(_) => Code::Internal,
    };
    if matches!(e, StoreError::LimitExceeded(_)) {
        // Expected under load and possibly frequent: not an error of ipcs itself.
        tracing::warn!(error = %e, "request refused");
    } else if matches!(
        code,
        Code::Internal | Code::DeadlineExceeded | Code::DataLoss | Code::ResourceExhausted
    ) {
        tracing::error!(error = %e, "request failed");
    }
    Status::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_a_locked_ref_is_unavailable() {
        let locked = StoreError::Locked {
            ingest_ref: "r".into(),
            held_for: Duration::from_secs(1),
        };
        assert_eq!(to_status(locked).code(), Code::Unavailable);
        let down = StoreError::Ipfs {
            context: "publishing".into(),
            source: KuboError::Unreachable {
                addr: "http://127.0.0.1:5001".into(),
                op: "add",
                reason: "connection refused".into(),
            },
        };
        let s = to_status(down);
        assert_eq!(s.code(), Code::Internal);
        assert!(s.message().contains("127.0.0.1:5001"));
    }

    #[test]
    fn contract_codes() {
        let cases = [
            (StoreError::NotFound("x".into()), Code::NotFound),
            (StoreError::AlreadyExists("x".into()), Code::AlreadyExists),
            (
                StoreError::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (
                StoreError::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (StoreError::OutOfRange("x".into()), Code::OutOfRange),
            (StoreError::DataLoss("x".into()), Code::DataLoss),
            (
                StoreError::LimitExceeded("x".into()),
                Code::ResourceExhausted,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(to_status(e).code(), code);
        }
    }
}
