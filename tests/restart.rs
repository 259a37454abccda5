//! Restarts without failed requests: socket activation (systemd's LISTEN_FDS protocol,
//! fd 3) and the graceful stop on SIGTERM, against the real `ipcs serve` binary.
mod common;

use common::*;
use ipcs::server::client;
use ipcs::server::proto::admin::admin_client::AdminClient;
use ipcs::server::proto::admin::StatsRequest;
use ipcs::server::proto::content_client::ContentClient;
use ipcs::server::proto::ReadContentRequest;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How fd 3 and the protocol's variables are set up for the child.
enum Fd3 {
    None,
    Socket(std::os::unix::net::UnixListener),
    File(std::fs::File),
}

struct Proc {
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Proc {
    /// `ipcs serve` with its own socket path `run/ipcs.sock` in a fresh dir. `listen_env`
    /// (LISTEN_PID is set to the child's own pid by `sh` unless given) goes through
    /// `sh -c '... exec ipcs'`, which keeps the pid, as systemd's exec does.
    fn spawn(fd3: Fd3, listen_env: &[(&str, &str)], extra: &[&str]) -> Proc {
        let dir = tempfile::Builder::new()
            .prefix("ipcs-restart-")
            .tempdir()
            .unwrap();
        Self::spawn_in(dir, fd3, listen_env, extra)
    }

    fn spawn_in(
        dir: tempfile::TempDir,
        fd3: Fd3,
        listen_env: &[(&str, &str)],
        extra: &[&str],
    ) -> Proc {
        let log = dir.path().join("ipcs.log");
        let mut script = String::new();
        for (k, v) in listen_env {
            script.push_str(&format!("export {k}={v}; "));
        }
        script.push_str("exec \"$0\" \"$@\"");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_ipcs"))
            .arg("serve")
            .arg("--socket")
            .arg(dir.path().join("run/ipcs.sock"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--kubo-api")
            .arg(kubo_api())
            .args(extra)
            .env_remove("IPCS_CONFIG")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let raw = match &fd3 {
            Fd3::None => None,
            Fd3::Socket(l) => Some(l.as_raw_fd()),
            Fd3::File(f) => Some(f.as_raw_fd()),
        };
        if let Some(raw) = raw {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::dup2(raw, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap();
        drop(fd3);
        Proc { child, dir, log }
    }

    fn own_socket(&self) -> PathBuf {
        self.dir.path().join("run/ipcs.sock")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits up to `limit` for the exit.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    async fn wait_listening(&mut self, path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Bounded: a socket nobody serves (fd 3 ignored) accepts but never answers.
            if path.exists()
                && tokio::time::timeout(Duration::from_secs(3), stats(path))
                    .await
                    .is_ok_and(|ok| ok)
            {
                return;
            }
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("ipcs exited with {s}: {}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "ipcs did not answer on {} within 30 s: {}",
            path.display(),
            self.log_text()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- ipcs log ---\n{}", self.log_text());
        }
    }
}

async fn stats(path: &Path) -> bool {
    match client::connect(path).await {
        Ok(ch) => AdminClient::new(ch).stats(StatsRequest {}).await.is_ok(),
        Err(_) => false,
    }
}

async fn stats_ok(path: &Path) {
    let ok = tokio::time::timeout(Duration::from_secs(20), stats(path))
        .await
        .expect("Stats timed out");
    assert!(ok, "Stats failed on {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_the_inherited_socket_and_leaves_it_to_the_manager() {
    let sockdir = tempfile::tempdir().unwrap();
    let passed = sockdir.path().join("passed.sock");
    let listener = std::os::unix::net::UnixListener::bind(&passed).unwrap();
    // The manager keeps its own copy, as systemd's socket unit does.
    let keep = listener.try_clone().unwrap();
    let env = [
        ("LISTEN_PID", "$$"),
        ("LISTEN_FDS", "1"),
        ("LISTEN_FDNAMES", "ipcs.socket"),
    ];
    let mut p = Proc::spawn(Fd3::Socket(listener), &env, &[]);
    p.wait_listening(&passed).await;
    stats_ok(&passed).await;
    assert!(
        !p.own_socket().exists(),
        "ipcs created a socket of its own instead of using fd 3: {}",
        p.log_text()
    );

    p.signal(libc::SIGTERM);
    let st = p
        .wait_exit(Duration::from_secs(20))
        .expect("no exit after SIGTERM");
    assert!(st.success(), "exit {st}: {}", p.log_text());
    // The socket outlives ipcs: the path is still there, and a client connecting now waits
    // in the backlog for the next ipcs instead of being refused.
    assert!(passed.exists(), "ipcs removed the manager's socket");
    let queued = std::os::unix::net::UnixStream::connect(&passed);
    assert!(
        queued.is_ok(),
        "connection refused after the stop: {queued:?}"
    );

    // The next ipcs takes the same socket and answers the connection made meanwhile.
    let mut next = Proc::spawn(Fd3::Socket(keep), &env, &[]);
    next.wait_listening(&passed).await;
    stats_ok(&passed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_socket_fd_3_is_a_clear_error() {
    let f = std::fs::File::open("/dev/null").unwrap();
    let env = [
        ("LISTEN_PID", "$$"),
        ("LISTEN_FDS", "1"),
        ("LISTEN_FDNAMES", "ipcs.socket"),
    ];
    let mut p = Proc::spawn(Fd3::File(f), &env, &[]);
    let st = p
        .wait_exit(Duration::from_secs(20))
        .expect("ipcs kept running");
    assert!(!st.success());
    let log = p.log_text();
    assert!(
        log.contains("socket activation: fd 3 (ipcs.socket) is not a socket"),
        "{log}"
    );
    assert!(!p.own_socket().exists(), "fell back to a socket of its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_for_another_pid_or_no_fds_are_ignored() {
    for (env, why) in [
        (
            [("LISTEN_PID", "1"), ("LISTEN_FDS", "1")],
            "LISTEN_PID 1 is not this process",
        ),
        (
            [("LISTEN_PID", "$$"), ("LISTEN_FDS", "0")],
            "LISTEN_FDS is 0",
        ),
    ] {
        let mut p = Proc::spawn(Fd3::None, &env, &[]);
        let own = p.own_socket();
        p.wait_listening(&own).await;
        stats_ok(&own).await;
        let log = p.log_text();
        assert!(log.contains(why), "{log}");
        assert!(log.contains("socket_activation=false"), "{log}");
    }
}

/// Writes a blob big enough that its Read stream cannot be buffered away by HTTP/2 flow
/// control, and opens a Read stream of it that has delivered its first message.
async fn read_in_flight(
    p: &mut Proc,
) -> (
    Vec<u8>,
    tonic::Streaming<ipcs::server::proto::ReadContentResponse>,
    Vec<u8>,
) {
    let own = p.own_socket();
    p.wait_listening(&own).await;
    let mut c = ContentClient::new(client::connect(&own).await.unwrap())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let data = random_bytes(48 << 20, 16);
    let d = put_blob(&mut c, "drain-test", &data).await.unwrap();
    let mut s = c
        .read(ReadContentRequest {
            digest: d,
            offset: 0,
            size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let first = s.message().await.unwrap().unwrap();
    assert_eq!(first.offset, 0);
    (data, s, first.data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_a_read_stream_in_flight_finish_then_exits_0() {
    let mut p = Proc::spawn(Fd3::None, &[], &[]);
    let (data, mut s, mut got) = read_in_flight(&mut p).await;
    p.signal(libc::SIGTERM);
    // Slower than a drain-less stop would take, so the stop has to wait for us.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "ipcs exited with a Read stream in flight: {}",
        p.log_text()
    );
    // No new connections: the listener is closed (ipcs made this socket itself, so a
    // connect is refused; under socket activation it would wait in the manager's backlog).
    assert!(
        std::os::unix::net::UnixStream::connect(p.own_socket()).is_err(),
        "still accepting during the drain"
    );
    while let Some(m) = s.message().await.unwrap() {
        assert_eq!(m.offset as usize, got.len());
        got.extend_from_slice(&m.data);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(got == data, "the drained stream's bytes differ");
    let st = p
        .wait_exit(Duration::from_secs(20))
        .expect("no exit after the drain");
    assert!(st.success(), "exit {st}: {}", p.log_text());
    assert!(
        p.log_text().contains("every request in flight finished"),
        "{}",
        p.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_sigterm_stops_at_once() {
    let mut p = Proc::spawn(Fd3::None, &[], &[]);
    let (_data, mut s, _) = read_in_flight(&mut p).await;
    p.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "exited before the second signal"
    );
    let t = Instant::now();
    p.signal(libc::SIGTERM);
    let st = p
        .wait_exit(Duration::from_secs(5))
        .expect("still running 5 s after the second SIGTERM");
    assert!(!st.success(), "a cut drain must not exit 0");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        p.log_text().contains("stopped at once by a second SIGTERM"),
        "{}",
        p.log_text()
    );
    // The stream was cut, not completed.
    let mut cut = false;
    loop {
        match s.message().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(
        cut,
        "the stream completed although ipcs was stopped at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_drain_deadline_ends_a_stalled_stream() {
    let mut p = Proc::spawn(Fd3::None, &[], &["--drain-secs", "2"]);
    let (_data, _s, _) = read_in_flight(&mut p).await;
    let t = Instant::now();
    p.signal(libc::SIGTERM);
    // The reader stalls: only the deadline can end the drain.
    let st = p
        .wait_exit(Duration::from_secs(15))
        .expect("no exit after the deadline");
    let took = t.elapsed();
    assert!(!st.success());
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(
        p.log_text().contains("drain deadline (2 s, drain_secs)"),
        "{}",
        p.log_text()
    );
}
