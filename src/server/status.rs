//! The one place where store errors become gRPC codes, following containerd's contract.
//! UNAVAILABLE is reserved for a locked ref: containerd retries it forever, so an IPFS
//! outage must surface as something else.
use crate::backend::BackendError as KuboError;
use crate::differ::DiffError;
use crate::store::StoreError;
use tonic::{Code, Status};

/// The code containerd expects for a store error.
fn store_code(e: &StoreError) -> Code {
    match e {
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
    }
}

pub fn to_status(e: StoreError) -> Status {
    let code = store_code(&e);
    if matches!(e, StoreError::LimitExceeded(_)) {
        // Expected under load and possibly frequent: not an error of ipcs itself.
        tracing::warn!(error = %e, "request refused");
    } else if matches!(
        code,
        Code::Internal | Code::DeadlineExceeded | Code::DataLoss | Code::ResourceExhausted
    ) {
        tracing::error!(error = %e, "request failed");
    }
    Status::new(code, bounded(e.to_string()))
}

/// The differ's errors. UNIMPLEMENTED makes containerd's diff service try its next
/// differ; everything else fails the Apply, and containerd then removes the snapshot.
pub fn diff_status(e: DiffError) -> Status {
    let code = match &e {
        DiffError::Unimplemented(_) => Code::Unimplemented,
        DiffError::InvalidArgument(_) => Code::InvalidArgument,
        DiffError::Store { source, .. } => {
            let code = store_code(source);
            // Not UNAVAILABLE for a layer: containerd would take it for a locked ref.
            if code == Code::Unavailable {
                Code::Internal
            } else {
                code
            }
        }
        DiffError::Archive(_) => Code::InvalidArgument,
        DiffError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
            Code::ResourceExhausted
        }
        DiffError::Io { .. } => Code::Unknown,
        DiffError::DataLoss(_) => Code::DataLoss,
        DiffError::Cancelled => Code::Cancelled,
        DiffError::Internal(_) => Code::Internal,
    };
    if code == Code::Unimplemented {
        tracing::info!(error = %e, "apply left to the next differ");
    } else {
        tracing::error!(error = %e, "apply failed");
    }
    Status::new(code, bounded(e.to_string()))
}

/// Longest error message sent. Messages quote client input (digests, filters, refs), and
/// the message travels as the `grpc-message` trailer: an unbounded one exceeds the
/// client's header list limit, and the client then drops the whole HTTP/2 connection,
/// failing every other request on it (found by integration/adversarial.sh).
const MAX_MESSAGE_BYTES: usize = 1024;

fn bounded(mut m: String) -> String {
    if m.len() <= MAX_MESSAGE_BYTES {
        return m;
    }
    let full = m.len();
    let mut cut = MAX_MESSAGE_BYTES;
    while !m.is_char_boundary(cut) {
        cut -= 1;
    }
    m.truncate(cut);
    m.push_str(&format!("… ({} more bytes)", full - cut));
    m
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

    #[test]
    fn messages_quoting_client_input_are_bounded() {
        let s = to_status(StoreError::InvalidArgument(format!(
            "bad filter {}",
            "é".repeat(100_000)
        )));
        assert!(s.message().len() < MAX_MESSAGE_BYTES + 64);
        assert!(s.message().starts_with("bad filter é"));
        assert!(s.message().ends_with("more bytes)"));
        let short = to_status(StoreError::NotFound("x".into()));
        assert_eq!(short.message(), "x: not found");
    }
}
