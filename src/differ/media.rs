//! Which layer media types this differ applies and how their bytes are decoded, following
//! containerd's `images.DiffCompression` and its default stream processor. A type that
//! containerd would hand to another stream processor (encrypted or otherwise wrapped
//! layers) or does not know is UNIMPLEMENTED here, so containerd's diff service moves on
//! to its next differ.
use super::error::DiffError;

/// How the layer's bytes become a tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    /// The bytes are the tar (OCI `…layer.v1.tar`): no detection, like containerd.
    Plain,
    /// gzip, zstd or plain by the magic bytes (containerd's `DecompressStream`), for
    /// every media type that says or may be compressed.
    Detect,
}

const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const DOCKER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_NONDISTRIBUTABLE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";

/// The media type containerd's applier reports for what it applied.
pub const APPLIED_MEDIA_TYPE: &str = OCI_LAYER;

pub fn decoding(media_type: &str) -> Result<Decoding, DiffError> {
    let (base, ext) = match media_type.split_once('+') {
        Some((b, e)) => (b, Some(e)),
        None => (media_type, None),
    };
    let unimplemented = || {
        Err(DiffError::Unimplemented(format!(
            "ipcs-diff applies gzip, zstd and plain tar layers only, not {media_type:?} (needs a stream processor)"
        )))
    };
    match (base, ext) {
        (DOCKER_LAYER | DOCKER_FOREIGN, None) => Ok(Decoding::Detect),
        (DOCKER_GZIP | DOCKER_FOREIGN_GZIP | DOCKER_ZSTD, None) => Ok(Decoding::Detect),
        (OCI_LAYER | OCI_NONDISTRIBUTABLE, None) => Ok(Decoding::Plain),
        (OCI_LAYER | OCI_NONDISTRIBUTABLE, Some("gzip" | "zstd")) => Ok(Decoding::Detect),
        _ => unimplemented(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(
            decoding("application/vnd.oci.image.layer.v1.tar+gzip").unwrap(),
            Decoding::Detect
        );
        assert_eq!(
            decoding("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Decoding::Detect
        );
        assert_eq!(decoding(OCI_LAYER).unwrap(), Decoding::Plain);
        assert_eq!(decoding(DOCKER_LAYER).unwrap(), Decoding::Detect);
        assert_eq!(decoding(DOCKER_GZIP).unwrap(), Decoding::Detect);
        for t in [
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "application/vnd.oci.image.layer.v1.tar+encrypted",
            "application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted",
            "application/vnd.erofs.layer.v1",
            "application/octet-stream",
            "",
        ] {
            assert!(
                matches!(decoding(t), Err(DiffError::Unimplemented(_))),
                "{t}"
            );
        }
    }
}
