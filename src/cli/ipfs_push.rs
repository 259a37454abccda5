//! `ipcs ipfs-push`: an image containerd holds, written by the running ipcs in nerdctl's
//! `ipfs://` format; prints the CID for `nerdctl pull ipfs://`.
use crate::cli::Endpoints;
use crate::server::admin_client::Admin;
use crate::server::containerd::Containerd;

pub async fn ipfs_push(
    ep: &Endpoints,
    image: &str,
    platforms: &[String],
    all_platforms: bool,
) -> Result<(), String> {
    let ctr = Containerd::connect(&ep.containerd, &ep.namespace).await?;
    let root = ctr.target_json(image).await?;
    let mut admin = Admin::connect(&ep.socket).await?;
    let out = admin
        .ipfs_push(root, platforms.to_vec(), all_platforms)
        .await
        .map_err(|e| format!("ipfs-push {image}: {e}"))?;
    eprintln!(
        "{image}: root descriptor {} ({} new blobs stored)",
        out.root_json, out.written
    );
    println!("{}", out.cid);
    Ok(())
}
