"""A TCP relay that delays what the server sends by a random delay per chunk, in order.

Stands in for `tc netem delay D J` where the kernel has no netem: each chunk read from
the upstream is released at max(previous release, arrival + normal(D, J)), so data arrives
unevenly but in order, as over a jittery link. Usage:
`python -m tests.jitter_relay LISTEN_HOST:PORT UPSTREAM_HOST:PORT DELAY_MS JITTER_MS`.
"""

from __future__ import annotations

import random
import socket
import sys
import threading
import time
from collections import deque


def relay(client: socket.socket, upstream: socket.socket, delay: float, jitter: float) -> None:
    chunks: deque[tuple[float, bytes]] = deque()
    ready = threading.Condition()

    def read() -> None:
        last = 0.0
        while data := upstream.recv(4096):
            last = max(last, time.monotonic() + max(0.0, random.gauss(delay, jitter)))
            with ready:
                chunks.append((last, data))
                ready.notify()
        with ready:
            chunks.append((0.0, b""))
            ready.notify()

    threading.Thread(target=read, daemon=True).start()
    while True:
        with ready:
            while not chunks:
                ready.wait()
            due, data = chunks.popleft()
        if not data:
            return
        time.sleep(max(0.0, due - time.monotonic()))
        client.sendall(data)


def main() -> None:
    listen, upstream_addr = (a.rsplit(":", 1) for a in sys.argv[1:3])
    delay, jitter = float(sys.argv[3]) / 1000, float(sys.argv[4]) / 1000
    server = socket.create_server((listen[0], int(listen[1])))
    client, _ = server.accept()
    upstream = socket.create_connection((upstream_addr[0], int(upstream_addr[1])))
    threading.Thread(target=lambda: [upstream.sendall(d) for d in iter(
        lambda: client.recv(4096), b"")], daemon=True).start()
    relay(client, upstream, delay, jitter)


if __name__ == "__main__":
    main()
