#!/usr/bin/env python3
"""A TCP proxy that adds a fixed delay to each direction.

    python3 bench/delay_proxy.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT [--delay-ms 20]

Every chunk read from one side is held for --delay-ms before it is written to
the other side; order is preserved (one FIFO per direction). A bounded queue
per direction (--max-queued chunks) gives back-pressure, so the proxy does not
become an unbounded buffer. Round-trip time through the proxy is 2 x delay.
Prints "listening PORT" on stdout once it accepts connections (PORT 0 picks a
free port). Stops on SIGTERM/SIGINT.
"""

import argparse
import asyncio
import signal
import sys

CHUNK = 64 * 1024


async def pump(reader, writer, delay, max_queued):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(maxsize=max_queued)

    async def read_side():
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time() + delay, b""))

    async def write_side():
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    await asyncio.gather(read_side(), write_side())


async def handle(client_reader, client_writer, target, delay, max_queued):
    host, port = target
    try:
        server_reader, server_writer = await asyncio.open_connection(host, port)
    except OSError as e:
        print(f"delay_proxy: cannot connect to {host}:{port}: {e}", file=sys.stderr)
        client_writer.close()
        return
    try:
        await asyncio.gather(
            pump(client_reader, server_writer, delay, max_queued),
            pump(server_reader, client_writer, delay, max_queued),
        )
    finally:
        for w in (client_writer, server_writer):
            try:
                w.close()
            except Exception:
                pass


def hostport(s):
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=hostport, default=("127.0.0.1", 0))
    ap.add_argument("--target", type=hostport, required=True)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--max-queued", type=int, default=256, help="chunks of up to 64 KiB per direction")
    a = ap.parse_args()
    delay = a.delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, a.target, delay, a.max_queued), a.listen[0], a.listen[1]
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
