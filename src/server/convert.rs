//! Conversions between generated protobuf types and store types.
use crate::digest::Digest;
use crate::index::UnixNanos;
use crate::server::proto;
use crate::store::{Info, IngestStatus, StoreError, WriteAction, WriteRequest, WriteState};
use std::collections::BTreeMap;

pub fn timestamp(t: UnixNanos) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.seconds(),
        nanos: t.subsec_nanos(),
    }
}

pub fn digest(s: &str) -> Result<Digest, StoreError> {
    Ok(s.parse::<Digest>()?)
}

pub fn optional_digest(s: &str) -> Result<Option<Digest>, StoreError> {
    if s.is_empty() {
        Ok(None)
    } else {
        digest(s).map(Some)
    }
}

pub fn info(i: Info) -> proto::Info {
    proto::Info {
        digest: i.digest.to_string(),
        size: i.size as i64,
        created_at: Some(timestamp(i.created_at)),
        updated_at: Some(timestamp(i.updated_at)),
        labels: i.labels.into_iter().collect(),
    }
}

pub fn status(s: IngestStatus) -> proto::Status {
    proto::Status {
        started_at: Some(timestamp(s.started_at)),
        updated_at: Some(timestamp(s.updated_at)),
        r#ref: s.ingest_ref,
        offset: s.offset as i64,
        total: s.total as i64,
        expected: s.expected.map(|d| d.to_string()).unwrap_or_default(),
    }
}

pub fn write_request(m: proto::WriteContentRequest) -> Result<WriteRequest, StoreError> {
    let action = match proto::WriteAction::try_from(m.action) {
        Ok(proto::WriteAction::Stat) => WriteAction::Stat,
        Ok(proto::WriteAction::Write) => WriteAction::Write,
        Ok(proto::WriteAction::Commit) => WriteAction::Commit,
        Err(_) => {
            return Err(StoreError::InvalidArgument(format!(
                "unknown write action {}",
                m.action
            )))
        }
    };
    Ok(WriteRequest {
        action,
        total: m.total,
        expected: optional_digest(&m.expected)?,
        offset: m.offset,
        data: m.data.into(),
        labels: m.labels.into_iter().collect::<BTreeMap<_, _>>(),
    })
}

pub fn write_response(action: i32, s: WriteState) -> proto::WriteContentResponse {
    proto::WriteContentResponse {
        action,
        started_at: Some(timestamp(s.started_at)),
        updated_at: Some(timestamp(s.updated_at)),
        offset: s.offset as i64,
        total: s.total as i64,
        digest: s.digest.to_string(),
    }
}
