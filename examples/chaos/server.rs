//! The `ipcs serve` under test: started, SIGKILLed at random moments, checked with
//! `ipcs fsck` while down, restarted. Its pid is written to a file so that the calling
//! script's trap can kill it even if this driver dies first.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub bin: PathBuf,
    pub socket: PathBuf,
    pub data: PathBuf,
    pub kubo_api: String,
    pub log: PathBuf,
    pub pidfile: PathBuf,
    child: Option<Child>,
    /// Highest VmHWM (peak RSS) seen over every incarnation, in KiB.
    pub peak_rss_kib: u64,
    pub slowest_start: Duration,
}

/// What one `ipcs fsck` run printed in its summary line.
#[derive(Debug, Default, Clone)]
pub struct FsckSummary {
    pub code: i32,
    pub found: u64,
    pub remaining: u64,
    pub unexpected: u64,
    pub kinds: Vec<(String, u64)>,
    pub output: String,
}

impl Server {
    pub fn new(bin: PathBuf, work: &Path, kubo_api: String) -> Server {
        Server {
            bin,
            socket: work.join("ipcs.sock"),
            data: work.join("data"),
            kubo_api,
            log: work.join("ipcs.log"),
            pidfile: work.join("ipcs.pid"),
            child: None,
            peak_rss_kib: 0,
            slowest_start: Duration::ZERO,
        }
    }

    pub async fn start(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--kubo-api")
            .arg(&self.kubo_api)
            .env_remove("IPCS_CONFIG")
            .env("IPCS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning ipcs: {e}"))?;
        std::fs::write(&self.pidfile, child.id().to_string()).map_err(|e| e.to_string())?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.socket.exists() && ipcs::server::client::connect(&self.socket).await.is_ok() {
                self.slowest_start = self.slowest_start.max(t0.elapsed());
                return Ok(());
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "ipcs exited with {st} at start; see {}",
                    self.log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err("ipcs did not listen within 60s".into())
    }

    fn note_rss(&mut self) {
        let Some(c) = &self.child else { return };
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", c.id())).unwrap_or_default();
        for line in status.lines() {
            if let Some(v) = line.strip_prefix("VmHWM:") {
                let kib = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                self.peak_rss_kib = self.peak_rss_kib.max(kib);
            }
        }
    }

    /// SIGKILL: no shutdown code runs, as in a crash or an OOM kill.
    pub fn kill9(&mut self) {
        self.note_rss();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.pidfile);
    }

    /// SIGTERM and wait: the orderly stop before the final fsck.
    pub fn stop(&mut self) {
        self.note_rss();
        if let Some(mut c) = self.child.take() {
            sigterm(c.id());
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.pidfile);
    }

    pub fn fsck(&self, args: &[&str]) -> FsckSummary {
        let out = Command::new(&self.bin)
            .arg("fsck")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--kubo-api")
            .arg(&self.kubo_api)
            .args(args)
            .env_remove("IPCS_CONFIG")
            .env("IPCS_LOG", "warn")
            .output();
        let mut s = FsckSummary {
            code: -1,
            ..Default::default()
        };
        let Ok(out) = out else { return s };
        s.code = out.status.code().unwrap_or(-1);
        s.output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(line) = s.output.lines().find(|l| l.starts_with("fsck: ")) {
            for field in line.split_whitespace() {
                let Some((k, v)) = field.split_once('=') else {
                    continue;
                };
                match k {
                    "found" => s.found = v.parse().unwrap_or(0),
                    "remaining" => s.remaining = v.parse().unwrap_or(0),
                    "unexpected" => s.unexpected = v.parse().unwrap_or(0),
                    "kinds" if v != "-" => {
                        s.kinds = v
                            .split(',')
                            .filter_map(|kv| kv.rsplit_once('='))
                            .map(|(k, n)| (k.to_string(), n.parse().unwrap_or(0)))
                            .collect()
                    }
                    _ => {}
                }
            }
        }
        s
    }
}

/// SIGTERM through `kill(1)`, which keeps this driver free of `unsafe`.
fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
