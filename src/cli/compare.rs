//! `ipcs compare`: the dedup report of some images, as a table or JSON.
use crate::cli::{resolve, Endpoints};
use crate::dedup::report::table;
use crate::server::admin_client::Admin;
use crate::server::containerd::Containerd;

pub async fn compare(ep: &Endpoints, names: &[String], json: bool) -> Result<(), String> {
    let ctr = Containerd::connect(&ep.containerd, &ep.namespace).await?;
    let images = resolve(&ctr, names).await?;
    let mut admin = Admin::connect(&ep.socket).await?;
    let report = admin.compare(&images).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}
