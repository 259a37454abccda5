//! `ipcs export` and `ipcs import`.
//!
//! Export writes the CAR to `OUT.partial` beside `OUT` and renames it only once the last
//! byte arrived and was synced, so a failed export leaves no CAR that looks whole.
//! Import streams the file to `ipcs serve`, which verifies and adopts every blob (or
//! nothing), then creates the image records in containerd and registers each blob in
//! the namespace, parents first, with the GC labels that keep children alive.
use crate::cli::{progress, resolve, Endpoints};
use crate::server::admin_client::{Admin, ImportEvent};
use crate::server::containerd::Containerd;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Size of the pieces the CAR file is read and sent in.
const READ_CHUNK: usize = 1 << 20;

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

pub async fn export(ep: &Endpoints, names: &[String], out: &Path) -> Result<(), String> {
    let ctr = Containerd::connect(&ep.containerd, &ep.namespace).await?;
    let images = resolve(&ctr, names).await?;
    let mut admin = Admin::connect(&ep.socket).await?;
    let (summary, mut chunks) = admin.export(&images).await?;
    let tmp = partial_path(out);
    let shown = tmp.display().to_string();
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| format!("creating {shown}: {e}"))?;
    // The CAR is the blobs plus a fraction of a percent of CIDs and DAG nodes.
    let pb = progress::bytes("export", summary.blob_bytes);
    let written = async {
        let mut n = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("writing {shown}: {e}"))?;
            n += chunk.len() as u64;
            pb.set_length(n.max(summary.blob_bytes));
            pb.set_position(n);
        }
        file.sync_all()
            .await
            .map_err(|e| format!("syncing {shown}: {e}"))?;
        Ok::<u64, String>(n)
    }
    .await;
    let n = match written {
        Ok(n) => {
            // The bar's length was a guess (the blobs' bytes); it ends at what was written.
            pb.set_length(n);
            pb.set_position(n);
            progress::done(&pb);
            n
        }
        Err(e) => {
            progress::stopped(&pb);
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(format!("export failed, no CAR written: {e}"));
        }
    };
    tokio::fs::rename(&tmp, out)
        .await
        .map_err(|e| format!("renaming {shown} to {}: {e}", out.display()))?;
    for i in &images {
        println!("image {} {}", i.name, i.target.digest);
    }
    println!(
        "export: images={} blobs={} blob_bytes={} car_bytes={n} root={} file={}",
        images.len(),
        summary.blobs,
        summary.blob_bytes,
        summary.root,
        out.display()
    );
    Ok(())
}

pub async fn import(ep: &Endpoints, car: &Path) -> Result<(), String> {
    let shown = car.display().to_string();
    let file = tokio::fs::File::open(car)
        .await
        .map_err(|e| format!("opening {shown}: {e}"))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| format!("{shown}: {e}"))?
        .len();
    // Reach containerd first: a CAR adopted into ipcs but never registered is wasted work.
    let ctr = Containerd::connect(&ep.containerd, &ep.namespace).await?;
    let mut admin = Admin::connect(&ep.socket).await?;
    let sent = progress::bytes("send", size);
    let pb = sent.clone();
    let body = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK)
        .take_while(|r| {
            if let Err(e) = r {
                eprintln!("ipcs: reading the CAR: {e}");
            }
            std::future::ready(r.is_ok())
        })
        .filter_map(|r| std::future::ready(r.ok()))
        .inspect(move |b| {
            if !pb.is_finished() {
                pb.inc(b.len() as u64)
            }
        });
    let mut events = admin.import(size, body).await?;
    let mut verify: Option<indicatif::ProgressBar> = None;
    let mut done = None;
    while let Some(ev) = events.next().await {
        match ev {
            Err(e) => {
                progress::stopped(&sent);
                if let Some(v) = &verify {
                    progress::stopped(v);
                }
                return Err(format!(
                    "import of {shown} failed, nothing was imported: {e}"
                ));
            }
            Ok(ImportEvent::Progress(p)) => {
                // ipcs verifies once it has the whole file.
                progress::done(&sent);
                let v = verify.get_or_insert_with(|| progress::bytes("verify", p.total_bytes));
                v.set_position(p.verified_bytes);
            }
            Ok(ImportEvent::Done(d)) => done = Some(d),
        }
    }
    progress::done(&sent);
    if let Some(v) = verify {
        progress::done(&v);
    }
    let done = done.ok_or("ipcs ended the import without a result")?;
    let mut existed = Vec::new();
    for i in &done.images {
        existed.push(ctr.image(&i.name).await.is_ok());
    }
    let registered = async {
        for i in &done.images {
            ctr.put_image(i).await?;
        }
        let pb = progress::items("register", done.blobs.len() as u64);
        for (b, _) in &done.blobs {
            if let Err(e) = ctr.register_blob(&b.desc, &b.gc_labels).await {
                progress::stopped(&pb);
                return Err(e);
            }
            pb.inc(1);
        }
        progress::done(&pb);
        Ok::<(), String>(())
    }
    .await;
    if let Err(e) = registered {
        for (i, had) in done.images.iter().zip(existed) {
            if !had {
                let _ = ctr.delete_image(&i.name).await;
            }
        }
        return Err(format!(
            "the blobs are in ipcs, but registering the images in containerd failed: {e}"
        ));
    }
    let adopted = done.blobs.iter().filter(|(_, new)| *new).count();
    for i in &done.images {
        println!("image {} {}", i.name, i.target.digest);
    }
    println!(
        "import: images={} blobs={} adopted={adopted} car_blocks={} car_block_bytes={} root={}",
        done.images.len(),
        done.blobs.len(),
        done.car_blocks,
        done.car_block_bytes,
        done.root
    );
    Ok(())
}
