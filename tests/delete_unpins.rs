//! Delete of a committed blob unpins its DAG in Kubo and forgets it.
mod common;

use common::*;
use ipcs::server::proto::{DeleteContentRequest, InfoRequest};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_unpins_in_kubo() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let data = random_bytes(600_000, 99);
    let d = put_blob(&mut c, "delete-me", &data).await.unwrap();
    let cid = ipcs.cids().await.remove(&d).unwrap();
    let pins =
        String::from_utf8(ipfs(&["pin", "ls", "--type", "recursive"], None).unwrap()).unwrap();
    assert!(pins.contains(&cid), "{cid} should be pinned");

    c.delete(DeleteContentRequest { digest: d.clone() })
        .await
        .unwrap();

    let pins =
        String::from_utf8(ipfs(&["pin", "ls", "--type", "recursive"], None).unwrap()).unwrap();
    assert!(
        !pins.contains(&cid),
        "{cid} still pinned after Delete: {pins}"
    );
    assert_eq!(
        c.info(InfoRequest { digest: d.clone() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        read_range(&mut c, &d, 0, 0).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        c.delete(DeleteContentRequest { digest: d.clone() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert!(ipcs.cids().await.is_empty());
    // Written again, it is pinned again.
    put_blob(&mut c, "delete-me-again", &data).await.unwrap();
    ipcs.settled().await;
    let pins =
        String::from_utf8(ipfs(&["pin", "ls", "--type", "recursive"], None).unwrap()).unwrap();
    assert!(pins.contains(&cid));
}

/// `nerdctl push ipfs://` adds each blob again with `pin=true`: Kubo then holds one
/// unnamed recursive pin for a CID ipcs had pinned under its own name. When containerd's
/// GC deletes the blob from ipcs, that pin is somebody else's and must stay (ipcs used to
/// remove it, so the pushed image lost its manifest right after the push).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_leaves_a_pin_someone_else_took_over() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let data = random_bytes(300_000, 7);
    let d = put_blob(&mut c, "shared-pin", &data).await.unwrap();
    let cid = ipcs.cids().await.remove(&d).unwrap();
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &data).unwrap();
    // What nerdctl's client sends: add with cid-version=1 and pin=true (Kubo's defaults
    // otherwise, which equal ipcs's import options).
    let added = ipfs(
        &["add", "-Q", "--cid-version", "1", "--pin=true"],
        Some(tmp.path()),
    )
    .unwrap();
    assert_eq!(String::from_utf8(added).unwrap().trim(), cid);
    let names = || {
        String::from_utf8(ipfs(&["pin", "ls", "--type", "recursive", "--names"], None).unwrap())
            .unwrap()
    };
    let line = names()
        .lines()
        .find(|l| l.starts_with(&cid))
        .map(String::from);
    assert!(
        line.as_deref().is_some_and(|l| !l.contains("ipcs:")),
        "the re-add should leave an unnamed pin: {line:?}"
    );

    c.delete(DeleteContentRequest { digest: d.clone() })
        .await
        .unwrap();
    assert_eq!(
        c.info(InfoRequest { digest: d.clone() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert!(
        names().contains(&cid),
        "{cid}, pinned by someone else, was unpinned by Delete"
    );
    ipfs(&["pin", "rm", &cid], None).unwrap();
}
