//! The dedup arithmetic, apart from any IO: given each image's blobs and each blob's
//! data blocks with their sizes, how many bytes are unique, shared as whole layers
//! (the same blob digest), and shared only at the block level (the same 256 KiB chunk in
//! different blobs). Sets, not sums: a block is counted once however many blobs, layers
//! or images hold it (the 2019 tool added up cumulative node sizes and so counted shared
//! bytes twice).
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// One image as the report sees it.
#[derive(Debug, Clone)]
pub struct ImageBlocks {
    pub name: String,
    pub digest: String,
    /// (blob digest, blob size, the blob's data blocks)
    pub blobs: Vec<(String, u64, Vec<String>)>,
}

/// Per image. `stored` = `unique` + `shared_layers` + `shared_blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRow {
    pub name: String,
    pub digest: String,
    pub blobs: u64,
    /// Sum of the sizes of its blobs (each blob once).
    pub bytes: u64,
    /// Bytes of its distinct data blocks: what IPFS stores for it alone.
    pub stored: u64,
    /// `bytes` − `stored`: blocks repeated inside the image itself.
    pub repeated_within: u64,
    /// Bytes in blocks no other compared image holds.
    pub unique: u64,
    /// Bytes of blobs another compared image holds whole (same digest).
    pub shared_layers: u64,
    /// Bytes of the other blocks another compared image also holds.
    pub shared_blocks: u64,
}

/// Per pair of images. For each side, `stored` = `unique_*` + `shared_layers` +
/// `shared_blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRow {
    pub a: String,
    pub b: String,
    /// Bytes of the blobs both hold whole.
    pub shared_layers: u64,
    /// Bytes of the other blocks both hold.
    pub shared_blocks: u64,
    /// Bytes of A's blocks that B lacks, and B's that A lacks.
    pub unique_a: u64,
    pub unique_b: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub images: Vec<ImageRow>,
    pub pairs: Vec<PairRow>,
    /// Bytes of the distinct blocks of all images together.
    pub stored_total: u64,
}

struct Sets<'a> {
    blobs: BTreeSet<&'a str>,
    blocks: BTreeSet<&'a str>,
    bytes: u64,
}

fn sets(img: &ImageBlocks) -> Sets<'_> {
    let mut s = Sets {
        blobs: BTreeSet::new(),
        blocks: BTreeSet::new(),
        bytes: 0,
    };
    for (digest, size, blocks) in &img.blobs {
        if s.blobs.insert(digest.as_str()) {
            s.bytes += size;
        }
        s.blocks.extend(blocks.iter().map(String::as_str));
    }
    s
}

fn bytes_of<'a>(blocks: impl Iterator<Item = &'a str>, sizes: &HashMap<String, u64>) -> u64 {
    blocks.map(|b| sizes.get(b).copied().unwrap_or(0)).sum()
}

/// The blocks of the blobs whose digests are in `digests`.
fn blocks_of_blobs<'a>(images: &'a [ImageBlocks], digests: &BTreeSet<&str>) -> BTreeSet<&'a str> {
    images
        .iter()
        .flat_map(|i| &i.blobs)
        .filter(|(d, _, _)| digests.contains(d.as_str()))
        .flat_map(|(_, _, blocks)| blocks.iter().map(String::as_str))
        .collect()
}

pub fn compute(images: &[ImageBlocks], sizes: &HashMap<String, u64>) -> Report {
    let all: Vec<Sets> = images.iter().map(sets).collect();
    let mut rows = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let me = &all[i];
        let mut other_blobs = BTreeSet::new();
        let mut other_blocks = BTreeSet::new();
        for (j, o) in all.iter().enumerate() {
            if j != i {
                other_blobs.extend(o.blobs.iter().copied());
                other_blocks.extend(o.blocks.iter().copied());
            }
        }
        let whole: BTreeSet<&str> = me.blobs.intersection(&other_blobs).copied().collect();
        let whole_blocks = blocks_of_blobs(std::slice::from_ref(img), &whole);
        let stored = bytes_of(me.blocks.iter().copied(), sizes);
        let shared_blocks = me
            .blocks
            .iter()
            .filter(|b| other_blocks.contains(*b) && !whole_blocks.contains(*b))
            .copied();
        let unique = me
            .blocks
            .iter()
            .filter(|b| !other_blocks.contains(*b))
            .copied();
        rows.push(ImageRow {
            name: img.name.clone(),
            digest: img.digest.clone(),
            blobs: me.blobs.len() as u64,
            bytes: me.bytes,
            stored,
            repeated_within: me.bytes.saturating_sub(stored),
            unique: bytes_of(unique, sizes),
            shared_layers: bytes_of(whole_blocks.iter().copied(), sizes),
            shared_blocks: bytes_of(shared_blocks, sizes),
        });
    }
    let mut pairs = Vec::new();
    for i in 0..images.len() {
        for j in i + 1..images.len() {
            let (a, b) = (&all[i], &all[j]);
            let whole: BTreeSet<&str> = a.blobs.intersection(&b.blobs).copied().collect();
            let whole_blocks = blocks_of_blobs(&images[i..=i], &whole);
            let both: BTreeSet<&str> = a.blocks.intersection(&b.blocks).copied().collect();
            pairs.push(PairRow {
                a: images[i].name.clone(),
                b: images[j].name.clone(),
                shared_layers: bytes_of(whole_blocks.iter().copied(), sizes),
                shared_blocks: bytes_of(both.difference(&whole_blocks).copied(), sizes),
                unique_a: bytes_of(a.blocks.difference(&b.blocks).copied(), sizes),
                unique_b: bytes_of(b.blocks.difference(&a.blocks).copied(), sizes),
            });
        }
    }
    let every: BTreeSet<&str> = all.iter().flat_map(|s| s.blocks.iter().copied()).collect();
    Report {
        images: rows,
        pairs,
        stored_total: bytes_of(every.into_iter(), sizes),
    }
}

/// The report as a terminal table.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let w = r
        .images
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "{:<w$} {:>6} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14}\n",
        "IMAGE", "BLOBS", "BYTES", "STORED", "WITHIN", "UNIQUE", "SHARED-LAYERS", "SHARED-BLOCKS"
    ));
    for i in &r.images {
        out.push_str(&format!(
            "{:<w$} {:>6} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14}\n",
            i.name,
            i.blobs,
            i.bytes,
            i.stored,
            i.repeated_within,
            i.unique,
            i.shared_layers,
            i.shared_blocks
        ));
    }
    if !r.pairs.is_empty() {
        let wa = r.pairs.iter().map(|p| p.a.len()).max().unwrap_or(1).max(7);
        let wb = r.pairs.iter().map(|p| p.b.len()).max().unwrap_or(1).max(7);
        out.push('\n');
        out.push_str(&format!(
            "{:<wa$} {:<wb$} {:>14} {:>14} {:>14} {:>14}\n",
            "IMAGE A", "IMAGE B", "SHARED-LAYERS", "SHARED-BLOCKS", "UNIQUE-A", "UNIQUE-B"
        ));
        for p in &r.pairs {
            out.push_str(&format!(
                "{:<wa$} {:<wb$} {:>14} {:>14} {:>14} {:>14}\n",
                p.a, p.b, p.shared_layers, p.shared_blocks, p.unique_a, p.unique_b
            ));
        }
    }
    out.push_str(&format!(
        "\nall images together: {} bytes in distinct blocks\n",
        r.stored_total
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 262_144;

    fn img(name: &str, blobs: &[(&str, &[&str])], sizes: &HashMap<String, u64>) -> ImageBlocks {
        ImageBlocks {
            name: name.into(),
            digest: format!("sha256:{name}"),
            blobs: blobs
                .iter()
                .map(|(d, bl)| {
                    let size = bl.iter().map(|b| sizes[*b]).sum();
                    (
                        d.to_string(),
                        size,
                        bl.iter().map(|b| b.to_string()).collect(),
                    )
                })
                .collect(),
        }
    }

    fn sizes(list: &[(&str, u64)]) -> HashMap<String, u64> {
        list.iter().map(|(b, s)| (b.to_string(), *s)).collect()
    }

    #[test]
    fn appended_tail_shares_exactly_the_common_full_chunks() {
        // Layer A: chunks a1 a2 a3 (partial last). Layer B = A's first two chunks, then
        // chunks that differ because B goes on where A ended.
        let s = sizes(&[("a1", K), ("a2", K), ("a3", 1000), ("b3", K), ("b4", 77)]);
        let x = img("x", &[("base", &["a1", "a2", "a3"])], &s);
        let y = img("y", &[("tail", &["a1", "a2", "b3", "b4"])], &s);
        let r = compute(&[x, y], &s);
        let p = &r.pairs[0];
        assert_eq!(p.shared_layers, 0);
        assert_eq!(p.shared_blocks, 2 * K);
        assert_eq!(p.unique_a, 1000);
        assert_eq!(p.unique_b, K + 77);
        assert_eq!(r.images[0].shared_blocks, 2 * K);
        assert_eq!(r.images[1].unique, K + 77);
        assert_eq!(r.stored_total, 3 * K + 1077);
    }

    #[test]
    fn whole_layers_and_blocks_are_each_counted_once() {
        let s = sizes(&[("c1", K), ("c2", 10), ("d1", K), ("e1", 5)]);
        // Both hold layer "common"; x also repeats c1 inside a second layer of its own.
        let x = img(
            "x",
            &[("common", &["c1", "c2"]), ("dup", &["c1", "d1"])],
            &s,
        );
        let y = img("y", &[("common", &["c1", "c2"]), ("own", &["e1"])], &s);
        let r = compute(&[x, y], &s);
        let (rx, ry) = (&r.images[0], &r.images[1]);
        assert_eq!(rx.bytes, K + 10 + 2 * K);
        assert_eq!(rx.stored, 2 * K + 10);
        assert_eq!(rx.repeated_within, K);
        assert_eq!(rx.shared_layers, K + 10);
        assert_eq!(rx.shared_blocks, 0, "c1 is shared through the whole layer");
        assert_eq!(rx.unique, K);
        assert_eq!(ry.unique, 5);
        for row in &r.images {
            assert_eq!(
                row.stored,
                row.unique + row.shared_layers + row.shared_blocks
            );
        }
        let p = &r.pairs[0];
        assert_eq!((p.shared_layers, p.shared_blocks), (K + 10, 0));
        assert_eq!((p.unique_a, p.unique_b), (K, 5));
    }

    #[test]
    fn three_images_pairwise() {
        let s = sizes(&[("p", 100), ("q", 200), ("r", 400)]);
        let a = img("a", &[("l1", &["p", "q"])], &s);
        let b = img("b", &[("l2", &["q", "r"])], &s);
        let c = img("c", &[("l3", &["r"])], &s);
        let r = compute(&[a, b, c], &s);
        assert_eq!(r.pairs.len(), 3);
        assert_eq!(r.images[1].unique, 0);
        assert_eq!(r.images[1].shared_blocks, 600);
        assert_eq!(r.pairs[2].shared_layers, 0);
        assert_eq!(r.pairs[2].shared_blocks, 400);
        assert_eq!(r.stored_total, 700);
        assert!(table(&r).contains("SHARED-BLOCKS"));
    }
}
