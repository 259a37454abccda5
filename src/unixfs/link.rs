//! A link to one block of a file's DAG, and the CIDv1 that names the block.
use crate::cid::Cid;

/// Multicodec of a raw leaf: the block is the file's bytes themselves.
pub(super) const RAW: u8 = 0x55;
/// Multicodec of an inner node: a dag-pb block carrying UnixFS Data.
pub(super) const DAG_PB: u8 = 0x70;

/// Binary CIDv1 length: version, codec, multihash code and length (each a one-byte
/// varint for these values), then the sha2-256 digest.
pub(super) const CID_BYTES: usize = 4 + 32;

/// What a parent needs of a child: its CID's parts, its Tsize (the child's block plus
/// every block under it, which dag-pb links carry) and the file bytes under it (which
/// UnixFS blocksizes carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Link {
    pub codec: u8,
    pub digest: [u8; 32],
    pub tsize: u64,
    pub filesize: u64,
}

impl Link {
    pub fn raw_leaf(digest: [u8; 32], len: u64) -> Link {
        Link {
            codec: RAW,
            digest,
            tsize: len,
            filesize: len,
        }
    }

    /// The binary CID, as a dag-pb link's Hash holds it.
    pub fn cid_bytes(&self) -> [u8; CID_BYTES] {
        let mut b = [0u8; CID_BYTES];
        // CIDv1, the codec, sha2-256 (0x12) of 32 bytes (0x20).
        b[..4].copy_from_slice(&[0x01, self.codec, 0x12, 0x20]);
        b[4..].copy_from_slice(&self.digest);
        b
    }

    /// The text CID Kubo prints for CIDv1: multibase 'b', base32 lowercase.
    pub fn cid(&self) -> Cid {
        let mut s = String::with_capacity(1 + CID_BYTES.div_ceil(5) * 8);
        s.push('b');
        super::base32::encode_into(&self.cid_bytes(), &mut s);
        Cid::try_from(s).expect("multibase base32 text is alphanumeric")
    }
}
