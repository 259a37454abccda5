//! A client of containerd's own API on its socket, for the CLI: image records (the
//! images service: Get, Create/Update, Delete) and registering blobs the content store
//! (ipcs) already holds in a namespace (the content service), every call in that
//! namespace (`containerd-namespace` metadata).
//!
//! containerd only sees content that its metadata database lists for the namespace.
//! A Write for a digest the backing store already has is, with containerd's default
//! "shared" content policy, an ingest already complete; committing it records the blob
//! without any byte crossing: that is how a blob imported into ipcs becomes visible. Labels
//! `containerd.io/gc.ref.content.*` then tie manifests to their children, as a pull does,
//! so containerd's garbage collector keeps the image's blobs.
use crate::car::{Descriptor, ImageRef};
use crate::server::client;
use crate::server::proto::containerd::services::images::v1 as images;
use crate::server::proto::containerd::types;
use crate::server::proto::{self as content, content_client::ContentClient};
use images::images_client::ImagesClient;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// Deadline of each call to containerd (none moves blob bytes).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Containerd {
    channel: Channel,
    namespace: String,
}

fn message(what: &str, s: tonic::Status) -> String {
    format!("containerd: {what}: {} ({:?})", s.message(), s.code())
}

impl Containerd {
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Containerd, String> {
        let channel = client::connect(socket)
            .await
            .map_err(|e| format!("cannot reach containerd at {}: {e}", socket.display()))?;
        Ok(Containerd {
            channel,
            namespace: namespace.to_string(),
        })
    }

    fn req<T>(&self, m: T) -> Result<Request<T>, String> {
        let mut r = Request::new(m);
        r.set_timeout(CALL_TIMEOUT);
        let ns = self
            .namespace
            .parse()
            .map_err(|_| format!("namespace {:?} is not a valid header value", self.namespace))?;
        r.metadata_mut().insert("containerd-namespace", ns);
        Ok(r)
    }

    /// The target descriptor of the image record `name`, as containerd holds it.
    async fn target(&self, name: &str) -> Result<types::Descriptor, String> {
        let mut c = ImagesClient::new(self.channel.clone());
        let got = c
            .get(self.req(images::GetImageRequest {
                name: name.to_string(),
            })?)
            .await
            .map_err(|s| message(&format!("image {name}"), s))?
            .into_inner();
        got.image
            .and_then(|i| i.target)
            .ok_or_else(|| format!("containerd: image {name} has no target"))
    }

    /// The image's target as OCI descriptor JSON, annotations included (what
    /// `nerdctl push ipfs://` starts its conversion from).
    pub async fn target_json(&self, name: &str) -> Result<String, String> {
        let t = self.target(name).await?;
        let mut v = serde_json::json!({
            "mediaType": t.media_type,
            "digest": t.digest,
            "size": t.size,
        });
        if !t.annotations.is_empty() {
            v["annotations"] = serde_json::json!(t.annotations);
        }
        Ok(v.to_string())
    }

    /// The image record `name`.
    pub async fn image(&self, name: &str) -> Result<ImageRef, String> {
        let target = self.target(name).await?;
        let digest = target
            .digest
            .parse()
            .map_err(|e| format!("containerd: image {name}: {e}"))?;
        Ok(ImageRef {
            name: name.to_string(),
            target: Descriptor {
                media_type: target.media_type,
                digest,
                size: target.size.max(0) as u64,
            },
        })
    }

    /// Creates the image record, or points an existing one at this target.
    pub async fn put_image(&self, img: &ImageRef) -> Result<(), String> {
        let mut c = ImagesClient::new(self.channel.clone());
        let image = images::Image {
            name: img.name.clone(),
            target: Some(types::Descriptor {
                media_type: img.target.media_type.clone(),
                digest: img.target.digest.to_string(),
                size: img.target.size as i64,
                annotations: Default::default(),
            }),
            ..Default::default()
        };
        let what = format!("creating image {}", img.name);
        match c
            .create(self.req(images::CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            })?)
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => c
                .update(self.req(images::UpdateImageRequest {
                    image: Some(image),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".into()],
                    }),
                    source_date_epoch: None,
                })?)
                .await
                .map(|_| ())
                .map_err(|s| message(&what, s)),
            Err(s) => Err(message(&what, s)),
        }
    }

    pub async fn delete_image(&self, name: &str) -> Result<(), String> {
        let mut c = ImagesClient::new(self.channel.clone());
        c.delete(self.req(images::DeleteImageRequest {
            name: name.to_string(),
            sync: false,
            target: None,
        })?)
        .await
        .map(|_| ())
        .map_err(|s| message(&format!("deleting image {name}"), s))
    }

    /// Makes a blob the content store holds visible in the namespace, with `labels`:
    /// a Write with the expected digest finds it in the content store (containerd
    /// answers with a "shared" ingest already at its full size) and a Commit with no
    /// data records it. One already in the namespace only gets the labels.
    pub async fn register_blob(
        &self,
        d: &Descriptor,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let mut c = ContentClient::new(self.channel.clone());
        let r#ref = format!("ipcs-import-{}", d.digest);
        let what = format!("registering {}", d.digest);
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let _ = tx
            .send(content::WriteContentRequest {
                action: content::WriteAction::Stat as i32,
                r#ref: r#ref.clone(),
                total: d.size as i64,
                expected: d.digest.to_string(),
                ..Default::default()
            })
            .await;
        let outcome = async {
            let mut stream = match c
                .write(self.req(tokio_stream::wrappers::ReceiverStream::new(rx))?)
                .await
            {
                Ok(s) => s.into_inner(),
                Err(s) if s.code() == Code::AlreadyExists => return Ok(false),
                Err(s) => return Err(message(&what, s)),
            };
            let st = match stream.message().await {
                Err(s) if s.code() == Code::AlreadyExists => return Ok(false),
                Err(s) => return Err(message(&what, s)),
                Ok(None) => return Err(format!("containerd: {what}: no answer")),
                Ok(Some(st)) => st,
            };
            if st.offset != d.size as i64 || st.total != d.size as i64 {
                return Err(format!(
                    "containerd: {what}: the content store does not hold it (containerd opened an ingest at offset {})",
                    st.offset
                ));
            }
            let _ = tx
                .send(content::WriteContentRequest {
                    action: content::WriteAction::Commit as i32,
                    r#ref: r#ref.clone(),
                    total: d.size as i64,
                    expected: d.digest.to_string(),
                    offset: d.size as i64,
                    labels: labels.clone().into_iter().collect(),
                    ..Default::default()
                })
                .await;
            match stream.message().await {
                Ok(_) => Ok(true),
                Err(s) if s.code() == Code::AlreadyExists => Ok(false),
                Err(s) => Err(message(&what, s)),
            }
        }
        .await;
        let labelled = match outcome {
            Ok(l) => l,
            Err(e) => {
                let _ = c.abort(self.req(content::AbortRequest { r#ref })?).await;
                return Err(e);
            }
        };
        if labelled || labels.is_empty() {
            return Ok(());
        }
        c.update(self.req(content::UpdateRequest {
            info: Some(content::Info {
                digest: d.digest.to_string(),
                labels: labels.clone().into_iter().collect(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: labels.keys().map(|k| format!("labels.{k}")).collect(),
            }),
        })?)
        .await
        .map(|_| ())
        .map_err(|s| message(&format!("labelling {}", d.digest), s))
    }
}
