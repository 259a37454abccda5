#!/usr/bin/env python3
"""Forwards a free 127.0.0.1 TCP port to a unix socket, for a test's lifetime.

    tcp-unix-bridge.py SOCKET PORTFILE

Kubo's RPC API is a unix socket here (scripts/kubo-node.sh), but nerdctl's IPFS client
dials only host:port. The tests give nerdctl this loopback bridge (integration/lib.sh,
kubo_tcp_bridge); it writes the port it bound to PORTFILE and serves until killed.
"""
import os
import socket
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    target, portfile = sys.argv[1], sys.argv[2]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    while True:
        client, _ = srv.accept()
        upstream = socket.socket(socket.AF_UNIX)
        try:
            upstream.connect(target)
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    main()
