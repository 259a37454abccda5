//! Where an HTTP API ipcs calls (Kubo's RPC, IPFS Cluster's REST API) lives: a URL
//! (`http://127.0.0.1:5001`) or a unix socket (`unix:///run/kubo/api.sock`). A socket is
//! the default for both because file permissions are the only access control these APIs
//! share: Kubo's RPC and the cluster REST API give whoever reaches them full control, and
//! loopback TCP is reachable by every local account (see README, Security).
use std::path::PathBuf;

/// A parsed API address and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As configured: what error messages name.
    pub display: String,
    /// Prefix of request URLs (for a socket, a fixed host: only the path matters).
    pub url: String,
    /// The unix socket every connection goes to, if any.
    pub socket: Option<PathBuf>,
}

impl Endpoint {
    /// Accepts `http://…`, `https://…` and `unix:///absolute/path`.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let display = s.trim_end_matches('/').to_string();
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: a unix:// address needs an absolute path"));
            }
            return Ok(Endpoint {
                display: s.to_string(),
                url: "http://localhost".to_string(),
                socket: Some(PathBuf::from(path)),
            });
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Endpoint {
                url: display.clone(),
                display,
                socket: None,
            });
        }
        Err(format!(
            "{s:?} must be unix:///path/to.sock or an http:// or https:// URL"
        ))
    }

    /// Points `b` at the socket (reqwest keeps pooling connections to it); a URL
    /// endpoint leaves `b` as it is.
    pub fn configure(&self, b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        match &self.socket {
            Some(path) => b.unix_socket(path.as_path()),
            None => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sockets_and_urls() {
        let e = Endpoint::parse("unix:///run/kubo/api.sock").unwrap();
        assert_eq!(
            e.socket.as_deref(),
            Some(std::path::Path::new("/run/kubo/api.sock"))
        );
        assert_eq!(e.url, "http://localhost");
        assert_eq!(e.display, "unix:///run/kubo/api.sock");
        let e = Endpoint::parse("http://127.0.0.1:5001/").unwrap();
        assert_eq!((e.url.as_str(), e.socket), ("http://127.0.0.1:5001", None));
        assert!(Endpoint::parse("unix://relative.sock").is_err());
        assert!(Endpoint::parse("127.0.0.1:5001").is_err());
    }
}
