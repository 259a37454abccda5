//! Conversions between the generated diff-service types and the differ's types.
use crate::differ::{Applied, ApplyRequest, DiffError, Layer, Mount, APPLIED_MEDIA_TYPE};
use crate::server::proto::containerd::services::diff::v1 as diff;
use crate::server::proto::containerd::types;

pub fn apply_request(req: diff::ApplyRequest) -> Result<ApplyRequest, DiffError> {
    let d = req
        .diff
        .ok_or_else(|| DiffError::InvalidArgument("apply without a diff descriptor".into()))?;
    let mut payload_ids: Vec<String> = req.payloads.into_keys().collect();
    payload_ids.sort();
    Ok(ApplyRequest {
        layer: Layer {
            media_type: d.media_type,
            digest: d.digest,
            size: d.size,
        },
        mounts: req.mounts.into_iter().map(mount).collect(),
        payload_ids,
        sync_fs: req.sync_fs,
    })
}

fn mount(m: types::Mount) -> Mount {
    Mount {
        kind: m.r#type,
        source: m.source,
        target: m.target,
        options: m.options,
    }
}

pub fn applied(a: Applied) -> diff::ApplyResponse {
    diff::ApplyResponse {
        applied: Some(types::Descriptor {
            media_type: APPLIED_MEDIA_TYPE.to_string(),
            digest: a.diff_id.to_string(),
            size: a.size as i64,
            annotations: Default::default(),
        }),
    }
}
