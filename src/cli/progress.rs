//! Progress bars on stderr (indicatif), drawn only when stderr is a terminal, so
//! scripts and logs get the summary lines alone.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar of `total` bytes.
pub fn bytes(what: &str, total: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), target());
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// A counter of bytes whose total is not known in advance.
pub fn bytes_open(what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target());
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} {spinner} {bytes} {bytes_per_sec}")
            .expect("static template"),
    );
    pb.set_message(what.to_string());
    pb
}

/// A bar of `total` items (blobs, records).
pub fn items(what: &str, total: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), target());
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:32}] {pos}/{len} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
