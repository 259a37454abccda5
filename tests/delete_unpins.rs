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
    let pins =
        String::from_utf8(ipfs(&["pin", "ls", "--type", "recursive"], None).unwrap()).unwrap();
    assert!(pins.contains(&cid));
}
