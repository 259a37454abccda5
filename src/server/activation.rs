//! Socket activation: systemd's `LISTEN_FDS` protocol (sd_listen_fds(3)), implemented on
//! libc so that no daemon library is needed. With `ipcs.socket`, systemd (or anything
//! speaking the protocol, such as `systemd-socket-activate`) owns the listening socket and
//! passes it as fd 3. The socket outlives ipcs: while ipcs restarts, containerd's
//! connections wait in the socket's backlog instead of being refused.
//!
//! Taken once, before the async runtime starts: the variables are removed from the
//! environment (children must not think the fds are theirs), which is only sound while no
//! other thread reads the environment.
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;

/// The first passed fd (SD_LISTEN_FDS_START).
pub const LISTEN_FDS_START: RawFd = 3;

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("socket activation: {0}")]
    Invalid(String),
    #[error("socket activation: fd {fd} ({name}) {what}")]
    BadFd {
        fd: RawFd,
        name: String,
        what: String,
    },
}

/// What the environment says, before any fd is touched.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// No `LISTEN_PID`/`LISTEN_FDS`: ipcs creates its own socket.
    Absent,
    /// The variables are for another process (inherited through a parent) or pass no fd;
    /// ipcs creates its own socket and says why.
    Ignored(String),
    /// Use fd 3 (of `count` passed), named `name` (`LISTEN_FDNAMES`, or "unknown").
    Use { count: usize, name: String },
}

/// Reads the protocol's variables as sd_listen_fds(3) does. Malformed values are errors
/// (a unit file mistake must not silently become a second socket).
pub fn plan(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    our_pid: u32,
) -> Result<Plan, ActivationError> {
    let (pid, fds) = match (pid, fds) {
        (None, None) => return Ok(Plan::Absent),
        (Some(_), None) => {
            return Err(ActivationError::Invalid(
                "LISTEN_PID is set but LISTEN_FDS is not".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(ActivationError::Invalid(
                "LISTEN_FDS is set but LISTEN_PID is not".into(),
            ))
        }
        (Some(p), Some(f)) => (p, f),
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| ActivationError::Invalid(format!("LISTEN_PID {pid:?} is not a process id")))?;
    let count: usize = fds
        .trim()
        .parse()
        .map_err(|_| ActivationError::Invalid(format!("LISTEN_FDS {fds:?} is not a number")))?;
    if pid != our_pid {
        return Ok(Plan::Ignored(format!(
            "LISTEN_PID {pid} is not this process ({our_pid}); the fds belong to another process"
        )));
    }
    if count == 0 {
        return Ok(Plan::Ignored("LISTEN_FDS is 0".into()));
    }
    // Far more than any unit passes; a huge value would make us walk the fd table.
    if count > 64 {
        return Err(ActivationError::Invalid(format!(
            "LISTEN_FDS {count} is implausible (more than 64)"
        )));
    }
    let name = names
        .and_then(|n| n.split(':').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("unknown")
        .to_string();
    Ok(Plan::Use { count, name })
}

fn sockopt(fd: RawFd, opt: libc::c_int) -> std::io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(v)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Checks that `fd` is a listening AF_UNIX stream socket; the error says what it is instead.
pub fn check_listening_unix(fd: RawFd) -> Result<(), String> {
    // SAFETY: fstat writes only into st.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(format!("is not open ({})", std::io::Error::last_os_error()));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err("is not a socket".into());
    }
    let domain = sockopt(fd, libc::SO_DOMAIN).map_err(|e| format!("SO_DOMAIN: {e}"))?;
    if domain != libc::AF_UNIX {
        return Err(format!("is not a unix socket (address family {domain})"));
    }
    if sockopt(fd, libc::SO_TYPE).map_err(|e| format!("SO_TYPE: {e}"))? != libc::SOCK_STREAM {
        return Err("is not a stream socket (ListenStream= is needed)".into());
    }
    if sockopt(fd, libc::SO_ACCEPTCONN).map_err(|e| format!("SO_ACCEPTCONN: {e}"))? == 0 {
        return Err("is not listening (Accept=no is needed)".into());
    }
    Ok(())
}

fn set_flags(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: plain fcntl calls on an fd we were given.
    unsafe {
        let fdf = libc::fcntl(fd, libc::F_GETFD);
        if fdf < 0 || libc::fcntl(fd, libc::F_SETFD, fdf | libc::FD_CLOEXEC) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The path a unix listener is bound to, for the log (None for abstract or unnamed ones).
pub fn bound_path(l: &UnixListener) -> Option<std::path::PathBuf> {
    l.local_addr().ok()?.as_pathname().map(|p| p.to_path_buf())
}

/// Takes the listening socket passed by the service manager, if any, and removes the
/// protocol's variables from the environment. Ok(None) with the reason when there is none
/// for us. Call before any other thread exists.
pub fn take() -> Result<(Option<UnixListener>, Option<String>), ActivationError> {
    let get = |k| std::env::var(k).ok();
    let (pid, fds, names) = (get("LISTEN_PID"), get("LISTEN_FDS"), get("LISTEN_FDNAMES"));
    let plan = plan(
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
        std::process::id(),
    );
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(k);
    }
    let (count, name) = match plan? {
        Plan::Absent => return Ok((None, None)),
        Plan::Ignored(why) => return Ok((None, Some(why))),
        Plan::Use { count, name } => (count, name),
    };
    let fd = LISTEN_FDS_START;
    check_listening_unix(fd).map_err(|what| ActivationError::BadFd {
        fd,
        name: name.clone(),
        what,
    })?;
    let bad = |e: std::io::Error| ActivationError::BadFd {
        fd,
        name: name.clone(),
        what: e.to_string(),
    };
    set_flags(fd).map_err(bad)?;
    // Extra fds are not ours to use; keep them from leaking into children.
    for extra in fd + 1..fd + count as RawFd {
        // SAFETY: FD_CLOEXEC on an fd the manager passed; errors (closed fd) are harmless.
        unsafe { libc::fcntl(extra, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: fd 3 is an open listening socket (checked above) that nothing else owns:
    // the manager passed it to this process and the variables naming it are gone.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    let note = (count > 1).then(|| format!("{count} fds passed; only fd 3 ({name}) is used"));
    Ok((Some(listener), note))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn plan_follows_sd_listen_fds() {
        assert_eq!(plan(None, None, None, 7).unwrap(), Plan::Absent);
        assert_eq!(
            plan(Some("7"), Some("1"), Some("ipcs.socket"), 7).unwrap(),
            Plan::Use {
                count: 1,
                name: "ipcs.socket".into()
            }
        );
        assert_eq!(
            plan(Some("7"), Some("2"), None, 7).unwrap(),
            Plan::Use {
                count: 2,
                name: "unknown".into()
            }
        );
        // Wrong pid: the variables leaked from a parent; not ours.
        match plan(Some("8"), Some("1"), None, 7).unwrap() {
            Plan::Ignored(why) => assert!(
                why.contains("LISTEN_PID 8 is not this process (7)"),
                "{why}"
            ),
            p => panic!("{p:?}"),
        }
        match plan(Some("7"), Some("0"), None, 7).unwrap() {
            Plan::Ignored(why) => assert!(why.contains("LISTEN_FDS is 0"), "{why}"),
            p => panic!("{p:?}"),
        }
        for (pid, fds, want) in [
            (Some("x"), Some("1"), "LISTEN_PID \"x\" is not a process id"),
            (Some("7"), Some("-1"), "LISTEN_FDS \"-1\" is not a number"),
            (Some("7"), None, "LISTEN_FDS is not"),
            (None, Some("1"), "LISTEN_PID is not"),
            (Some("7"), Some("65"), "implausible"),
        ] {
            let e = plan(pid, fds, None, 7).unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn only_listening_unix_stream_sockets_pass() {
        let dir = tempfile::tempdir().unwrap();
        let l = UnixListener::bind(dir.path().join("s")).unwrap();
        check_listening_unix(l.as_raw_fd()).unwrap();

        let f = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(
            check_listening_unix(f.as_raw_fd()).unwrap_err(),
            "is not a socket"
        );
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(check_listening_unix(a.as_raw_fd())
            .unwrap_err()
            .contains("not listening"));
        let d = std::os::unix::net::UnixDatagram::unbound().unwrap();
        assert!(check_listening_unix(d.as_raw_fd())
            .unwrap_err()
            .contains("not a stream socket"));
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(check_listening_unix(t.as_raw_fd())
            .unwrap_err()
            .contains("not a unix socket"));
    }
}
