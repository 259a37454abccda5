#!/usr/bin/env python3
"""Runs a command with its stderr on a pseudo-terminal and records what it drew there.

    pty-run.py OUT -- CMD [ARGS...]

CMD's stdin is /dev/null and its stdout is this script's stdout (redirect it as you like);
its stderr is the slave of a fresh pty of 30 rows x 120 columns, so
`std::io::stderr().is_terminal()` is true in CMD. Every byte CMD writes to stderr is
saved to OUT exactly as written: the slave's output processing (OPOST, which would turn
"\\n" into "\\r\\n") is off, so a carriage return in OUT is one CMD wrote itself. TERM is
passed on unchanged (indicatif draws nothing when it is unset or "dumb"). Exits with CMD's
exit status (128 + N if killed by signal N); gives up after PTY_RUN_TIMEOUT seconds (600).
"""
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: pty-run.py OUT -- CMD [ARGS...]")
    out_path, cmd = sys.argv[1], sys.argv[3:]
    limit = float(os.environ.get("PTY_RUN_TIMEOUT", "600"))
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    deadline = time.monotonic() + limit
    got = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            child.kill()
            child.wait()
            sys.stderr.write(f"pty-run: {cmd[0]} still running after {limit:.0f} s, killed\n")
            break
        ready, _, _ = select.select([master], [], [], min(left, 1.0))
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every holder of the slave has closed it
            break
        if not chunk:
            break
        got += chunk
    os.close(master)
    with open(out_path, "wb") as f:
        f.write(got)
    rc = child.wait()
    sys.exit(128 - rc if rc < 0 else rc)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
