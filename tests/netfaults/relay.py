"""A TCP relay between network namespaces that can add latency, as toxiproxy's latency toxic.

    python -m tests.netfaults.relay --netns NS --listen IP:PORT --upstream IP:PORT --control FILE

The listening socket is made inside namespace NS (pyroute2's create_socket); the
upstream connections leave from the namespace the relay runs in. The extra
one-way latency, in ms, is read from FILE (absent or empty: none) and applies
to both directions, order kept. This kernel has no netem (the test machine is a
Firecracker guest without sch_netem), so latency is added here; loss, partitions
and black holes are real packet drops (iptables in the namespaces: net.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import time
from pathlib import Path

from pyroute2 import netns

CHUNK = 65536


class Latency:
    """The extra one-way delay, re-read from its file at most every 50 ms."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value_s = 0.0
        self.read_at = 0.0

    def __call__(self) -> float:
        now = time.monotonic()
        if now - self.read_at > 0.05:
            self.read_at = now
            try:
                text = self.path.read_text().strip()
                self.value_s = float(text) / 1000 if text else 0.0
            except (OSError, ValueError):
                self.value_s = 0.0
        return self.value_s


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: Latency) -> None:
    """Forward one direction, each chunk held until `delay` after it arrived."""
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def receive() -> None:
        try:
            while data := await reader.read(CHUNK):
                queue.put_nowait((time.monotonic(), data))
        finally:
            queue.put_nowait(None)

    receiving = asyncio.create_task(receive())
    try:
        while (item := await queue.get()) is not None:
            arrived, data = item
            wait = arrived + delay() - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        receiving.cancel()
        with contextlib.suppress(BaseException):
            await receiving
        writer.close()


async def serve(args: argparse.Namespace) -> None:
    delay = Latency(Path(args.control))
    up_host, up_port = args.upstream.rsplit(":", 1)
    host, port = args.listen.rsplit(":", 1)
    listener = netns.create_socket(args.netns) if args.netns else socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(1024)
    listener.setblocking(False)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(up_host, int(up_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer, delay), pipe(up_reader, writer, delay))

    server = await asyncio.start_server(handle, sock=listener)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--netns", default="")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--control", required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
