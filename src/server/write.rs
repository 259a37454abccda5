//! The Write stream: the first message names the ref and opens (locks) the ingest; each
//! message is applied in order and answered. The ingest stays resumable when the client
//! goes away, and its lock is released with the stream.
use crate::server::convert;
use crate::server::proto::{WriteContentRequest, WriteContentResponse};
use crate::server::status::to_status;
use crate::store::ContentStore;
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

pub async fn run(
    store: ContentStore,
    mut incoming: Streaming<WriteContentRequest>,
    out: mpsc::Sender<Result<WriteContentResponse, Status>>,
) {
    let first = match incoming.next().await {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            let _ = out.send(Err(e)).await;
            return;
        }
        None => return,
    };
    if let Err(status) = session(store, first, &mut incoming, &out).await {
        let _ = out.send(Err(status)).await;
    }
}

async fn session(
    store: ContentStore,
    first: WriteContentRequest,
    incoming: &mut Streaming<WriteContentRequest>,
    out: &mpsc::Sender<Result<WriteContentResponse, Status>>,
) -> Result<(), Status> {
    crate::server::rpc::record_ref(&first.r#ref);
    if first.r#ref.is_empty() {
        return Err(Status::invalid_argument(
            "first message must have a reference",
        ));
    }
    let expected = convert::optional_digest(&first.expected).map_err(to_status)?;
    let mut writer = store
        .writer(&first.r#ref, first.total, expected)
        .await
        .map_err(to_status)?;
    let mut msg = first;
    loop {
        let action = msg.action;
        let req = convert::write_request(msg).map_err(to_status)?;
        let state = writer.handle(req).await.map_err(to_status)?;
        if out
            .send(Ok(convert::write_response(action, state)))
            .await
            .is_err()
        {
            return Ok(());
        }
        msg = match incoming.next().await {
            Some(Ok(m)) => m,
            // Client finished: the ingest stays for a later resume.
            None => return Ok(()),
            // A message tonic refused (e.g. over max_message_bytes) or a client that went
            // away: the ingest stays either way, and a client still listening learns why
            // its stream ended instead of seeing a silent OK.
            Some(Err(e)) => return Err(e),
        };
    }
}
