//! The unix socket: passed by the service manager (socket activation, see
//! `activation.rs`), or else created with mode 0660 in a directory that is not
//! world-writable, replacing a stale socket left by a crash but never any other file.
use crate::car::Archive;
use crate::differ::Differ;
use crate::server::admin::AdminService;
use crate::server::diff::DiffService;
use crate::server::proto::admin::admin_server::AdminServer;
use crate::server::proto::containerd::services::diff::v1::diff_server::DiffServer;
use crate::server::proto::content_server::ContentServer;
use crate::server::ContentService;
use crate::store::ContentStore;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("socket {path}: {msg}")]
    Refused { path: String, msg: String },
    #[error("socket {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub fn bind_socket(path: &Path) -> Result<UnixListener, ListenError> {
    let shown = path.display().to_string();
    let io = |source| ListenError::Io {
        path: shown.clone(),
        source,
    };
    let refused = |msg: &str| ListenError::Refused {
        path: shown.clone(),
        msg: msg.to_string(),
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.exists() {
        std::fs::create_dir_all(parent).map_err(io)?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o750)).map_err(io)?;
    }
    let mode = std::fs::metadata(parent).map_err(io)?.permissions().mode();
    if mode & 0o002 != 0 {
        return Err(refused(
            "its directory is world-writable; anyone could replace the socket (use a private directory such as /run/ipcs)",
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(io)?,
        Ok(_) => return Err(refused("exists and is not a socket")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    Ok(listener)
}

/// The listener to serve on: the inherited one if the service manager passed it (never
/// unlinked or re-created: it belongs to the socket unit), else a socket of our own.
pub fn listener(
    path: &Path,
    inherited: Option<std::os::unix::net::UnixListener>,
) -> Result<UnixListener, ListenError> {
    let Some(l) = inherited else {
        return bind_socket(path);
    };
    let at = crate::server::activation::bound_path(&l);
    match &at {
        Some(p) if p == path => {}
        // containerd dials `address` from its own config; a socket unit listening
        // elsewhere is most likely a mistake, but the unit is what containerd reaches.
        _ => tracing::warn!(
            inherited = ?at,
            configured = %path.display(),
            "the socket passed by the service manager is not the configured `socket`; serving on the passed one"
        ),
    }
    UnixListener::from_std(l).map_err(|source| ListenError::Io {
        path: format!("{} (inherited fd 3)", at.unwrap_or_default().display()),
        source,
    })
}

/// Serves the content and admin APIs on `listener`. When `shutdown` completes it stops
/// accepting (dropping the listener: an inherited socket stays open in the service
/// manager, so new connections queue in its backlog for the next process) and resolves
/// once every connection has finished its streams; callers bound that wait.
pub async fn serve(
    store: ContentStore,
    differ: Differ,
    archive: Arc<Archive>,
    listener: UnixListener,
    max_message_bytes: usize,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ListenError> {
    let content = ContentServer::new(ContentService::new(store.clone()))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let diff = DiffServer::new(DiffService::new(differ))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    tonic::transport::Server::builder()
        .layer(super::rpc::RpcLayer::new(store.metrics().clone()))
        .add_service(content)
        .add_service(diff)
        .add_service(
            AdminServer::new(AdminService::new(store, archive))
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn socket_is_0660_and_parent_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("run/ipcs/ipcs.sock");
        let _l = bind_socket(&sock).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let pmode = std::fs::metadata(sock.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(pmode, 0o750);
    }

    #[tokio::test]
    async fn refuses_world_writable_dirs_and_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            bind_socket(&open.join("s.sock")),
            Err(ListenError::Refused { .. })
        ));
        let file = dir.path().join("file.sock");
        std::fs::write(&file, b"precious").unwrap();
        assert!(matches!(
            bind_socket(&file),
            Err(ListenError::Refused { .. })
        ));
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    }
}
