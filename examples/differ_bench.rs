//! Measures the differ on a real layer file.
//!
//!   differ_bench decode LAYER [REPS]     gzip decode (flate2 on zlib-rs, as the differ
//!                                        decodes), best of REPS: MB/s of output, wall and CPU
//!   differ_bench apply LAYER MEDIA DIR   applies LAYER (media type MEDIA) into DIR as for a
//!                                        bind mount: time, entries, diffID
//!   differ_bench apply-overlay LAYER MEDIA UPPER [LOWER...]
//!                                        as into an overlay upperdir (whiteouts converted,
//!                                        new parents from the lowerdirs)
//!
//! `make bench` and docs/differ.md use it; LAYER is a blob file, e.g. from
//! ~/.cache/ipcs-images/big/blobs/sha256/.
use ipcs::digest::{Algorithm, Digester};
use std::io::Read;
use std::time::Instant;

fn cpu_secs() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("decode") => decode(
            &args[2],
            args.get(3).map(|s| s.parse().unwrap()).unwrap_or(5),
        ),
        Some("apply") => apply(&args[2], &args[3], &args[4], false, &[]),
        Some("apply-overlay") => apply(&args[2], &args[3], &args[4], true, &args[5..]),
        _ => {
            eprintln!("usage: differ_bench decode LAYER [REPS] | apply LAYER MEDIA DIR");
            std::process::exit(2);
        }
    }
}

fn decode(path: &str, reps: usize) {
    let data = std::fs::read(path).expect("reading layer");
    let mut buf = vec![0u8; 1 << 18];
    let (mut best_wall, mut best_cpu, mut out) = (f64::MAX, f64::MAX, 0u64);
    for _ in 0..reps {
        let (t, c) = (Instant::now(), cpu_secs());
        let mut d = flate2::bufread::MultiGzDecoder::new(std::io::BufReader::with_capacity(
            1 << 18,
            &data[..],
        ));
        let mut n = 0u64;
        loop {
            let k = d.read(&mut buf).expect("decoding");
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        best_wall = best_wall.min(t.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(cpu_secs() - c);
        out = n;
    }
    println!(
        "flate2/zlib-rs\t{} -> {} bytes\t{:.0} MB/s wall\t{:.0} MB/s cpu",
        data.len(),
        out,
        out as f64 / best_wall / 1e6,
        out as f64 / best_cpu / 1e6
    );
}

fn apply(path: &str, media: &str, dir: &str, overlay: bool, lowers: &[String]) {
    let file = std::fs::File::open(path).expect("opening layer");
    let size = file.metadata().expect("stat").len();
    let mut h = Digester::new(Algorithm::Sha256);
    let data = std::fs::read(path).expect("reading layer");
    h.update(&data);
    let digest = h.digest();
    let blob = ipcs::store::VerifiedBlob { file, size };
    let (t, c) = (Instant::now(), cpu_secs());
    let target = ipcs::differ::Target {
        root: dir.as_bytes().to_vec(),
        parents: lowers.iter().map(|l| l.as_bytes().to_vec()).collect(),
        whiteouts: if overlay {
            ipcs::differ::WhiteoutMode::Overlay
        } else {
            ipcs::differ::WhiteoutMode::Apply
        },
        skip_devices: false,
    };
    let (applied, stats) = match ipcs::differ::apply_file(blob, &digest, media, &target) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "applied {} entries, {} bytes in {:.3} s wall, {:.3} s cpu; diffID {}",
        stats.entries,
        applied.size,
        t.elapsed().as_secs_f64(),
        cpu_secs() - c,
        applied.diff_id
    );
}
