//! Graceful stop. The first SIGTERM (or SIGINT) stops accepting and lets what is in flight
//! finish: Read streams, Write streams and their commits. That wait is bounded by
//! `drain_secs`; a second signal or the deadline ends it at once. Open ingests need no
//! care: their data and index records are on disk, and containerd resumes them.
use std::future::Future;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Stop requests, one per signal received.
pub struct StopRequests(mpsc::UnboundedReceiver<&'static str>);

impl StopRequests {
    /// Listens for SIGTERM (systemd's stop, `KillSignal=`) and SIGINT (Ctrl-C).
    pub fn from_signals() -> std::io::Result<StopRequests> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    Some(()) = term.recv() => "SIGTERM",
                    Some(()) = int.recv() => "SIGINT",
                    else => return,
                };
                if tx.send(name).is_err() {
                    return;
                }
            }
        });
        Ok(StopRequests(rx))
    }

    /// Requests fed by hand (tests).
    pub fn channel() -> (mpsc::UnboundedSender<&'static str>, StopRequests) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, StopRequests(rx))
    }

    /// The next request; never resolves once no sender is left.
    pub async fn next(&mut self) -> &'static str {
        match self.0.recv().await {
            Some(name) => name,
            None => std::future::pending().await,
        }
    }
}

/// How the drain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Everything in flight finished.
    Drained,
    /// `drain` passed with requests still in flight; they were cut.
    DeadlineExceeded(Duration),
    /// Another stop request arrived during the drain (its signal's name).
    Interrupted(&'static str),
}

/// Waits for `in_flight` (the servers' graceful shutdowns, already begun) for at most
/// `deadline`, or until the next stop request.
pub async fn drain(
    in_flight: impl Future<Output = ()>,
    deadline: Duration,
    stops: &mut StopRequests,
) -> Stopped {
    tokio::select! {
        () = in_flight => Stopped::Drained,
        () = tokio::time::sleep(deadline) => Stopped::DeadlineExceeded(deadline),
        name = stops.next() => Stopped::Interrupted(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_work_then_deadline_then_second_signal() {
        let (tx, mut stops) = StopRequests::channel();
        let done = drain(
            tokio::time::sleep(Duration::from_millis(50)),
            Duration::from_secs(10),
            &mut stops,
        )
        .await;
        assert_eq!(done, Stopped::Drained);

        let t = std::time::Instant::now();
        let late = drain(
            std::future::pending(),
            Duration::from_millis(200),
            &mut stops,
        )
        .await;
        assert_eq!(late, Stopped::DeadlineExceeded(Duration::from_millis(200)));
        assert!(t.elapsed() < Duration::from_secs(5));

        tx.send("SIGTERM").unwrap();
        let t = std::time::Instant::now();
        let cut = drain(std::future::pending(), Duration::from_secs(60), &mut stops).await;
        assert_eq!(cut, Stopped::Interrupted("SIGTERM"));
        assert!(t.elapsed() < Duration::from_secs(5));

        // No sender left: only the work or the deadline can end the drain.
        drop(tx);
        let late = drain(
            std::future::pending(),
            Duration::from_millis(50),
            &mut stops,
        )
        .await;
        assert_eq!(late, Stopped::DeadlineExceeded(Duration::from_millis(50)));
    }
}
