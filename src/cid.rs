//! Content identifiers of DAGs in the blob backend. ipcs never decodes a CID: it checks
//! that one is a plausible token (so a hostile hint cannot smuggle query syntax or
//! whitespace into a backend call) and carries it. The one CID ipcs computes itself is a
//! file's under its import options (`unixfs::FileCid`), and it comes out as this type too.
use std::fmt;

/// Longest CID accepted; real CIDv1 base32 sha2-256 ones are 59 characters.
const MAX_CID_LEN: usize = 256;

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Cid(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid CID {0:?}")]
pub struct CidError(pub String);

impl Cid {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Cid {
    type Error = CidError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let ok =
            !s.is_empty() && s.len() <= MAX_CID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if ok {
            Ok(Cid(s))
        } else {
            Err(CidError(s.chars().take(80).collect()))
        }
    }
}

impl std::str::FromStr for Cid {
    type Err = CidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cid::try_from(s.to_string())
    }
}

impl From<Cid> for String {
    fn from(c: Cid) -> String {
        c.0
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_tokens_only() {
        assert!(
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
                .parse::<Cid>()
                .is_ok()
        );
        for bad in ["", "a b", "a&arg=x", "x\n", &"a".repeat(300)] {
            assert!(bad.parse::<Cid>().is_err(), "{bad:?}");
        }
    }
}
