//! Label rules shared by Commit and Update: containerd's own limit of 4096 bytes for a
//! key and its value together, and non-empty keys.
use crate::store::error::StoreError;
use std::collections::BTreeMap;

pub const MAX_LABEL_BYTES: usize = 4096;

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
    Ok(out)
}

fn unknown_path(p: &str) -> StoreError {
    StoreError::InvalidArgument(format!("cannot update {p:?} field on content info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_paths_or_labels_replaces_everything() {
        let cur = m(&[("a", "1"), ("b", "2")]);
        let given = m(&[("c", "3")]);
        assert_eq!(apply_update(&cur, &given, &[]).unwrap(), given);
        assert_eq!(
            apply_update(&cur, &given, &["labels".into()]).unwrap(),
            given
        );
    }

    #[test]
    fn label_paths_set_and_delete_single_keys() {
        let cur = m(&[("a", "1"), ("b", "2")]);
        let given = m(&[("a", "9"), ("b", "")]);
        let out = apply_update(&cur, &given, &["labels.a".into(), "labels.b".into()]).unwrap();
        assert_eq!(out, m(&[("a", "9")]));
        let out = apply_update(&cur, &m(&[]), &["labels.a".into()]).unwrap();
        assert_eq!(out, m(&[("b", "2")]));
    }

    #[test]
    fn other_paths_are_invalid() {
        let cur = m(&[]);
        for p in ["size", "digest", "labelsx", ""] {
            assert!(matches!(
                apply_update(&cur, &cur, &[p.into()]),
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
}
