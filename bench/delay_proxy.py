#!/usr/bin/env python3
"""A TCP proxy that adds a fixed delay to each direction.

    python3 bench/delay_proxy.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT [--delay-ms 20]

Every chunk read from one side is held for --delay-ms before it is written to
the other side; order is preserved (one FIFO per direction). A bound on the
bytes queued per direction (--max-queued-mib) gives back-pressure, so the proxy
does not become an unbounded buffer. Round-trip time through the proxy is
2 x delay. Prints "listening PORT" on stdout once it accepts connections (PORT 0
picks a free port). Stops on SIGTERM/SIGINT.

Two threads per direction with blocking sockets and 1 MiB reads: an asyncio
version with 64 KiB reads topped out near 120 MB/s, below what the tools being
measured can do at 40 ms RTT, so it measured itself.
"""

import argparse
import collections
import signal
import socket
import sys
import threading
import time

CHUNK = 1024 * 1024


class Pipe:
    """One direction: a reader thread queues (due, bytes); a writer thread sends them when due."""

    def __init__(self, src, dst, delay, max_queued):
        self.src, self.dst, self.delay, self.max_queued = src, dst, delay, max_queued
        self.queue = collections.deque()
        self.queued = 0
        self.cond = threading.Condition()

    def read_side(self):
        try:
            while True:
                data = self.src.recv(CHUNK)
                with self.cond:
                    while self.queued >= self.max_queued:
                        self.cond.wait()
                    self.queue.append((time.monotonic() + self.delay, data))
                    self.queued += len(data)
                    self.cond.notify_all()
                if not data:
                    return
        except OSError:
            with self.cond:
                self.queue.append((time.monotonic() + self.delay, b""))
                self.cond.notify_all()

    def write_side(self):
        try:
            while True:
                with self.cond:
                    while not self.queue:
                        self.cond.wait()
                    due, data = self.queue.popleft()
                    self.queued -= len(data)
                    self.cond.notify_all()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    try:
                        self.dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                self.dst.sendall(data)
        except OSError:
            try:
                self.src.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def start(self):
        threads = [threading.Thread(target=f, daemon=True) for f in (self.read_side, self.write_side)]
        for t in threads:
            t.start()
        return threads


def handle(client, target, delay, max_queued):
    try:
        server = socket.create_connection(target)
    except OSError as e:
        print(f"delay_proxy: cannot connect to {target[0]}:{target[1]}: {e}", file=sys.stderr)
        client.close()
        return
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threads = Pipe(client, server, delay, max_queued).start() + Pipe(server, client, delay, max_queued).start()
    for t in threads:
        t.join()
    client.close()
    server.close()


def hostport(s):
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=hostport, default=("127.0.0.1", 0))
    ap.add_argument("--target", type=hostport, required=True)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--max-queued-mib", type=int, default=64, help="bytes in flight per direction, MiB")
    a = ap.parse_args()
    delay = a.delay_ms / 1000.0
    listener = socket.create_server(a.listen)
    print(f"listening {listener.getsockname()[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            client, _ = listener.accept()
            threading.Thread(
                target=handle, args=(client, a.target, delay, a.max_queued_mib << 20), daemon=True
            ).start()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
