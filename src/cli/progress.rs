//! Progress bars on stderr (indicatif), drawn only when stderr is a terminal, so
//! scripts and logs get the summary lines alone.
//!
//! A bar is drawn as soon as it is made (its empty state), then as it moves (indicatif
//! redraws at most 20 times a second), and it ends with `done` or `stopped`, which draw
//! its last state whatever the rate limit and leave it on the terminal: a short run
//! still shows what was moved, and a failed one where it stopped.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};

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

/// The work is done: the bar is drawn full and left on the terminal. Only the first end
/// draws; another would draw over whatever came after the bar.
pub fn done(pb: &ProgressBar) {
    if !pb.is_finished() {
        pb.finish();
    }
}

/// The work failed: the bar is drawn where it stopped and left, above the error.
pub fn stopped(pb: &ProgressBar) {
    if !pb.is_finished() {
        pb.abandon();
    }
}

/// A bytes bar made on the first `set`, once the total is known, so no empty bar of
/// unknown size is drawn before the work starts (or at all, when it never does).
#[derive(Clone)]
pub struct LazyBytes {
    what: &'static str,
    bar: Arc<OnceLock<ProgressBar>>,
}

impl LazyBytes {
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            bar: Arc::default(),
        }
    }

    pub fn set(&self, done: u64, total: u64) {
        let pb = self.bar.get_or_init(|| bytes(self.what, total));
        pb.set_length(total);
        pb.set_position(done);
    }

    /// `done` when `ok`, else `stopped`; nothing if the bar was never made.
    pub fn end(&self, ok: bool) {
        if let Some(pb) = self.bar.get() {
            if ok {
                done(pb)
            } else {
                stopped(pb)
            }
        }
    }
}
