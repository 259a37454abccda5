//! Streams a byte range of a cached blob file in chunks of at most 1 MiB, each read
//! done with `pread` on a blocking thread.
use crate::store::error::{blocking, StoreError};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;

const CHUNK: u64 = 1 << 20;

/// A chunk of a blob and the offset it starts at.
pub type Chunk = Result<(u64, Bytes), StoreError>;

pub struct BlobStream {
    inner: Pin<Box<dyn Stream<Item = Chunk> + Send>>,
}

impl BlobStream {
    pub fn empty() -> BlobStream {
        BlobStream {
            inner: Box::pin(futures::stream::empty()),
        }
    }

    /// Opens `path` and reads the first chunk in one blocking step (most of containerd's
    /// Reads are a single 32 KiB chunk); `None` if the file is gone (evicted meanwhile).
    pub async fn open_cached(
        path: std::path::PathBuf,
        offset: u64,
        end: u64,
    ) -> Result<Option<BlobStream>, StoreError> {
        let len = (end - offset).min(CHUNK) as usize;
        let opened = blocking(move || {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(StoreError::io(format!("opening {}", path.display()))(e)),
            };
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset)
                .map_err(StoreError::io(format!("reading cached blob at {offset}")))?;
            Ok(Some((file, Bytes::from(buf))))
        })
        .await?;
        Ok(opened.map(|(file, first)| {
            let next = offset + len as u64;
            let head = futures::stream::once(async move { Ok((offset, first)) });
            let rest = BlobStream::new(file, next, end);
            BlobStream {
                inner: Box::pin(head.chain(rest)),
            }
        }))
    }

    pub fn new(file: File, offset: u64, end: u64) -> BlobStream {
        let file = Arc::new(file);
        let s = futures::stream::try_unfold(offset, move |pos| {
            let file = file.clone();
            async move {
                if pos >= end {
                    return Ok(None);
                }
                let len = (end - pos).min(CHUNK) as usize;
                let data = blocking(move || {
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, pos)
                        .map_err(StoreError::io(format!("reading cached blob at {pos}")))?;
                    Ok(buf)
                })
                .await?;
                Ok(Some(((pos, Bytes::from(data)), pos + len as u64)))
            }
        });
        BlobStream { inner: Box::pin(s) }
    }
}

impl Stream for BlobStream {
    type Item = Chunk;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
