"""A TCP proxy in front of the real PostgreSQL that a test can cut and restore (the one
state the real server cannot be put in here without stopping it for everyone), and the
app started behind one."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

from sipdata.settings import Settings

from .conftest import Api, free_port, start_api


class CuttableProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Accept and forward (again)."""
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Refuse new connections and drop every open one, like a database that went away."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.links):
            writer.transport.abort()
        self.links.clear()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.links.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links.difference_update({writer, up_writer})


async def api_behind(proxy: CuttableProxy, settings: Settings) -> Api:
    """The app with its database reached through `proxy` (started here), so a test can
    cut the database away from it alone."""
    await proxy.start()
    db = settings.database_url.rsplit("/", 1)[1]
    return await start_api(
        replace(settings, database_url=f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}")
    )
