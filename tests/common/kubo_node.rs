//! A Kubo node of a test's own (scripts/kubo-node.sh, offline), for tests that stop,
//! stall or garbage-collect it without disturbing the shared node of `with-kubo.sh`.
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct KuboNode {
    pub dir: PathBuf,
    pub api: String,
    _tmp: tempfile::TempDir,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kubo-node.sh")
}

impl KuboNode {
    /// Inits and starts a node with its API on a unix socket in its repo, a path that a
    /// restart keeps.
    pub fn start() -> KuboNode {
        let tmp = tempfile::Builder::new()
            .prefix("ipcs-kubo-own-")
            .tempdir()
            .unwrap();
        // The repo is the temp dir itself, so that Kubo's filestore root (the repo's
        // parent, /tmp) holds the tests' ipcs data dirs: ipcs keeps blobs once there.
        let dir = tmp.path().to_path_buf();
        let mut me = KuboNode {
            api: String::new(),
            dir: dir.clone(),
            _tmp: tmp,
        };
        me.run_start();
        assert_eq!(me.api, format!("unix://{}", dir.join("api.sock").display()));
        me
    }

    fn run_start(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg("start")
            .arg(&self.dir)
            .arg("--offline");
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "kubo start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.api = String::from_utf8(out.stdout).unwrap().trim().to_string();
    }

    pub fn pid(&self) -> i32 {
        std::fs::read_to_string(self.dir.join("ipcs-kubo.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn stop(&self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    /// Starts the stopped node again on the same API socket.
    pub fn restart(&mut self) {
        self.run_start();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} kubo");
    }

    /// Runs the `ipfs` CLI against this node; stdout on success, stderr on failure.
    pub fn ipfs(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(super::ipfs_bin())
            .arg("--api")
            .arg(super::kubo_multiaddr(&self.api))
            .args(args)
            .env("IPFS_TELEMETRY", "off")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// Adds a file's bytes with ipcs's import options, pinned (unnamed) or not.
    pub fn add(&self, path: &Path, pin: bool) -> String {
        let pin_arg = format!("--pin={pin}");
        self.ipfs(&[
            "add",
            "-Q",
            "--cid-version=1",
            "--raw-leaves",
            &pin_arg,
            path.to_str().unwrap(),
        ])
        .unwrap()
        .trim()
        .to_string()
    }

    pub fn recursive_pins(&self) -> String {
        self.ipfs(&["pin", "ls", "--type=recursive", "--names"])
            .unwrap()
    }
}

impl Drop for KuboNode {
    fn drop(&mut self) {
        // A stalled node must be continued, or `stop` waits for a SIGTERM it cannot act on.
        let pid = self.pid_or_zero();
        if pid > 0 {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(pid.to_string())
                .status();
        }
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

impl KuboNode {
    fn pid_or_zero(&self) -> i32 {
        std::fs::read_to_string(self.dir.join("ipcs-kubo.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}
