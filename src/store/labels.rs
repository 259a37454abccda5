//! Label rules shared by Commit and Update: containerd's own limit of 4096 bytes for a
//! key and its value together, non-empty keys, and the configured total of one blob's
//! labels (`max_label_bytes`).
use crate::store::error::StoreError;
use std::collections::BTreeMap;

pub const MAX_LABEL_BYTES: usize = crate::config::MAX_ONE_LABEL_BYTES;

/// Refuses a label set whose keys and values together exceed `max_total` bytes. Sums
/// saturate: a client cannot wrap the count with absurd sizes.
pub fn validate_total(
    labels: &BTreeMap<String, String>,
    max_total: usize,
) -> Result<(), StoreError> {
    let total = labels.iter().fold(0usize, |n, (k, v)| {
        n.saturating_add(k.len()).saturating_add(v.len())
    });
    if total > max_total {
        return Err(StoreError::InvalidArgument(format!(
            "labels total {total} bytes ({} labels), more than max_label_bytes = {max_total}",
            labels.len()
        )));
    }
    Ok(())
}

pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), StoreError> {
    for (k, v) in labels {
        if k.is_empty() {
            return Err(StoreError::InvalidArgument(
                "label key must not be empty".into(),
            ));
        }
        if k.len() + v.len() > MAX_LABEL_BYTES {
            return Err(StoreError::InvalidArgument(format!(
                "label key and value length ({} bytes) greater than maximum size ({MAX_LABEL_BYTES} bytes), key: {}",
                k.len() + v.len(),
                k.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Applies Update field paths to `current`: none or `labels` replaces all labels,
/// `labels.KEY` sets KEY (an empty value deletes it), anything else is refused.
pub fn apply_update(
    current: &BTreeMap<String, String>,
    given: &BTreeMap<String, String>,
    paths: &[String],
    max_total: usize,
) -> Result<BTreeMap<String, String>, StoreError> {
    if paths.is_empty() || paths.iter().any(|p| p == "labels") {
        for p in paths {
            if p != "labels" && !p.starts_with("labels.") {
                return Err(unknown_path(p));
            }
        }
        let all: BTreeMap<_, _> = given
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        validate_labels(&all)?;
        validate_total(&all, max_total)?;
        return Ok(all);
    }
    let mut out = current.clone();
    for p in paths {
        let key = p.strip_prefix("labels.").ok_or_else(|| unknown_path(p))?;
        match given.get(key).filter(|v| !v.is_empty()) {
            Some(v) => {
                out.insert(key.to_string(), v.clone());
            }
            None => {
                out.remove(key);
            }
        }
    }
    validate_labels(&out)?;
    validate_total(&out, max_total)?;
    Ok(out)
}

fn unknown_path(p: &str) -> StoreError {
    StoreError::InvalidArgument(format!("cannot update {p:?} field on content info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_paths_or_labels_replaces_everything() {
        let cur = m(&[("a", "1"), ("b", "2")]);
        let given = m(&[("c", "3")]);
        assert_eq!(apply_update(&cur, &given, &[], MAX).unwrap(), given);
        assert_eq!(
            apply_update(&cur, &given, &["labels".into()], MAX).unwrap(),
            given
        );
    }

    #[test]
    fn label_paths_set_and_delete_single_keys() {
        let cur = m(&[("a", "1"), ("b", "2")]);
        let given = m(&[("a", "9"), ("b", "")]);
        let out = apply_update(&cur, &given, &["labels.a".into(), "labels.b".into()], MAX).unwrap();
        assert_eq!(out, m(&[("a", "9")]));
        let out = apply_update(&cur, &m(&[]), &["labels.a".into()], MAX).unwrap();
        assert_eq!(out, m(&[("b", "2")]));
    }

    #[test]
    fn other_paths_are_invalid() {
        let cur = m(&[]);
        for p in ["size", "digest", "labelsx", ""] {
            assert!(matches!(
                apply_update(&cur, &cur, &[p.into()], MAX),
                Err(StoreError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn oversized_labels_are_invalid() {
        let big = "x".repeat(MAX_LABEL_BYTES);
        assert!(validate_labels(&m(&[("k", &big)])).is_err());
        assert!(validate_labels(&m(&[("", "v")])).is_err());
        assert!(validate_labels(&m(&[("k", "v")])).is_ok());
    }

    #[test]
    fn total_label_bytes_are_bounded() {
        let l = m(&[("a", &"x".repeat(4000)), ("b", &"y".repeat(4000))]);
        validate_labels(&l).unwrap();
        validate_total(&l, 8002).unwrap();
        let e = validate_total(&l, 8001).unwrap_err();
        assert!(matches!(e, StoreError::InvalidArgument(_)));
        assert!(e.to_string().contains("max_label_bytes = 8001"), "{e}");
        // Update checks the merged result, not only what was sent.
        let cur = m(&[("a", &"x".repeat(4000))]);
        let add = m(&[("b", &"y".repeat(4000))]);
        assert!(apply_update(&cur, &add, &["labels.b".into()], 8001).is_err());
        assert!(apply_update(&cur, &add, &["labels.b".into()], 8002).is_ok());
    }
}
