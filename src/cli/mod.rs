//! The client side of `ipcs export`, `ipcs import`, `ipcs compare` and `ipcs ipfs-push`: resolve image
//! names through containerd, ask the running `ipcs serve` (which alone writes its index)
//! over its admin API, write or read the CAR file, register imported images in
//! containerd, show progress on stderr when it is a terminal.
pub mod car;
pub mod compare;
pub mod ipfs_push;
pub mod progress;

use crate::car::ImageRef;
use crate::server::containerd::Containerd;
use std::path::PathBuf;

/// Where the CLI finds ipcs and containerd.
#[derive(clap::Args, Debug, Clone)]
pub struct Endpoints {
    /// Socket of a running `ipcs serve`.
    #[arg(long, env = "IPCS_SOCKET", default_value = "/run/ipcs/ipcs.sock")]
    pub socket: PathBuf,
    /// containerd's gRPC socket.
    #[arg(
        long = "containerd-socket",
        env = "CONTAINERD_ADDRESS",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub containerd: PathBuf,
    /// containerd namespace of the images.
    #[arg(
        short = 'n',
        long,
        env = "CONTAINERD_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,
}

/// The image records of `names` (each once, in the order given).
pub async fn resolve(c: &Containerd, names: &[String]) -> Result<Vec<ImageRef>, String> {
    let mut out: Vec<ImageRef> = Vec::new();
    for n in names {
        if out.iter().any(|i| &i.name == n) {
            continue;
        }
        out.push(c.image(n).await?);
    }
    Ok(out)
}
