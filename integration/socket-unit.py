#!/usr/bin/env python3
"""A stand-in for a systemd .socket unit and its .service, for machines without systemd.

    socket-unit.py --listen PATH --run DIR -- COMMAND [ARGS...]

What systemd does with plugin-config/ipcs.socket + ipcs.service, and how this models it:
  - The socket unit creates the listening AF_UNIX stream socket once (DirectoryMode=0750,
    SocketMode=0660, Backlog=SOMAXCONN) and keeps it open for as long as the unit is up,
    across every stop, crash and restart of the service. Here: this process creates it
    the same way and holds it until it is itself stopped.
  - Each start of the service gets that socket as fd 3 with LISTEN_PID/LISTEN_FDS/
    LISTEN_FDNAMES. Here: each start forks, puts the socket on fd 3 and execs Debian's
    `systemd-socket-activate` with LISTEN_PID = the child's pid and LISTEN_FDS=1; that is
    systemd's own code: it takes the fd with sd_listen_fds() and passes it on ("file
    descriptors from sd_listen_fds() will be passed through"), setting the variables for
    COMMAND exactly as the service manager does, then execs COMMAND in place (same pid).
    systemd-socket-activate execs only once the socket has a connection waiting, which is
    how systemd starts a socket-activated service that is down; an explicit restart starts
    it at once instead, a difference no client can see: either way connections wait in
    the backlog, never refused, until the new process accepts them.
  - Restart=always: when the service exits (SIGTERM drain, crash, kill -9) it is started
    again at once. Every exit is appended to DIR/exits ("<unix ms> pid <pid> exit <code>"
    or "... signal <n>"); the running service's pid is in DIR/service.pid, its start
    count in DIR/starts.
  - Stopping the units (SIGTERM or SIGINT to this process): the service gets SIGTERM and
    up to 60 s to exit (then SIGKILL), the socket is closed and its path removed.
"""
import argparse
import os
import signal
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--fdname", default="ipcs.socket")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("no COMMAND")
    activate = "/usr/bin/systemd-socket-activate"
    if not os.access(activate, os.X_OK):
        sys.exit(f"socket-unit: {activate} is missing (Debian package systemd)")

    parent = os.path.dirname(os.path.abspath(a.listen))
    if not os.path.isdir(parent):
        os.makedirs(parent)
        os.chmod(parent, 0o750)
    if os.path.exists(a.listen):
        os.unlink(a.listen)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(a.listen)
    os.chmod(a.listen, 0o660)
    sock.listen(socket.SOMAXCONN)
    os.makedirs(a.run, exist_ok=True)

    stopping = False
    child = 0

    def on_stop(_sig, _frame):
        nonlocal stopping
        stopping = True
        if child:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    def note(path, text, mode="w"):
        with open(os.path.join(a.run, path), mode) as f:
            f.write(text)

    starts = 0
    quick_failures = 0
    while not stopping:
        started = time.monotonic()
        child = os.fork()
        if child == 0:
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                if sock.fileno() != 3:
                    os.dup2(sock.fileno(), 3)
                os.set_inheritable(3, True)  # Python's sockets are close-on-exec
                env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS="1",
                           LISTEN_FDNAMES=a.fdname)
                os.execve(activate, [activate, "--fdname=" + a.fdname] + cmd, env)
            finally:
                os._exit(127)
        starts += 1
        note("service.pid", f"{child}\n")
        note("starts", f"{starts}\n")
        deadline = None
        while True:
            try:
                pid, status = os.waitpid(child, os.WNOHANG if stopping else 0)
            except InterruptedError:
                continue
            if pid == child:
                break
            if stopping:
                deadline = deadline or time.monotonic() + 60
                if time.monotonic() > deadline:
                    os.kill(child, signal.SIGKILL)
                time.sleep(0.05)
        how = (f"exit {os.WEXITSTATUS(status)}" if os.WIFEXITED(status)
               else f"signal {os.WTERMSIG(status)}")
        note("exits", f"{int(time.time() * 1000)} pid {child} {how}\n", "a")
        child = 0
        # StartLimitBurst=5 in StartLimitIntervalSec=10 (systemd's defaults), roughly:
        # a service failing at start-up is not restarted forever.
        if how.startswith("exit ") and how != "exit 0" and time.monotonic() - started < 2:
            quick_failures += 1
            if quick_failures >= 5:
                print("socket-unit: the service failed 5 times in a row within 2 s of its "
                      "start; not restarting it", file=sys.stderr)
                stopping = True
            time.sleep(0.2)
        else:
            quick_failures = 0
    sock.close()
    try:
        os.unlink(a.listen)
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    main()
