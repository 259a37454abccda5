//! The bytes of an inner file node, as boxo writes them (dag-pb through go-codec-dagpb,
//! UnixFS Data through proto2 Go protobuf). Any difference in a byte changes every CID
//! above it, so each field and its order follows what Kubo emits, checked on real blocks.
//!
//! PBNode: every link (field 2) first, then Data (field 1).
//! PBLink: Hash (1, binary CID), Name (2) written even though empty, Tsize (3).
//! Data (UnixFS): Type (1) = File (2), filesize (3), then one blocksizes (4) per child,
//! unpacked (proto2 default); no Data (2) field, the leaves are raw blocks.
use super::link::{Link, CID_BYTES};

const FILE: u8 = 2;

fn varint_len(v: u64) -> usize {
    // 7 bits per byte; a zero still takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Protobuf key byte: field number and wire type (0 varint, 2 length-delimited).
const fn key(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}

/// Writes the block of a UnixFS File node over `links` into `out` (cleared first).
pub(super) fn encode_file_node(links: &[Link], out: &mut Vec<u8>) {
    out.clear();
    let filesize: u64 = links.iter().map(|l| l.filesize).sum();
    for l in links {
        // Hash (key, length, CID) + empty Name (key, zero length) + Tsize (key, varint).
        let body = 2 + CID_BYTES + 2 + 1 + varint_len(l.tsize);
        out.push(key(2, 2));
        put_varint(out, body as u64);
        out.push(key(1, 2));
        put_varint(out, CID_BYTES as u64);
        out.extend_from_slice(&l.cid_bytes());
        out.push(key(2, 2));
        out.push(0);
        out.push(key(3, 0));
        put_varint(out, l.tsize);
    }
    let data_len = 2
        + 1
        + varint_len(filesize)
        + links
            .iter()
            .map(|l| 1 + varint_len(l.filesize))
            .sum::<usize>();
    out.push(key(1, 2));
    put_varint(out, data_len as u64);
    out.push(key(1, 0));
    out.push(FILE);
    out.push(key(3, 0));
    put_varint(out, filesize);
    for l in links {
        out.push(key(4, 0));
        put_varint(out, l.filesize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
        let mut b = Vec::new();
        put_varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
    }

    /// A node Kubo 0.42 wrote (`ipfs block get`, chunker size-1024): the last inner node
    /// of a 4100-byte file, over two raw leaves of 1024 and 4 bytes.
    #[test]
    fn kubo_node_bytes() {
        let kubo = concat!(
            "122b0a2401551220",
            "dcdcd28269d48b6e0116e9f26298c99d9feffebc84304bc80ec51867c6b9e36d",
            "120018800812",
            "2a0a2401551220",
            "a04f5715180586263d0096716ac51a0855b8dbe00372df43791f94d3bba66a6b",
            "12001804",
            "0a0a08021884082080082004",
        );
        let digest = |at: usize| -> [u8; 32] {
            hex::decode(&kubo[at..at + 64]).unwrap().try_into().unwrap()
        };
        let links = [
            Link::raw_leaf(digest(16), 1024),
            Link::raw_leaf(digest(16 + 64 + 12 + 14), 4),
        ];
        let mut out = Vec::new();
        encode_file_node(&links, &mut out);
        assert_eq!(hex::encode(&out), kubo);
    }
}
