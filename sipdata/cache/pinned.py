"""Connections of the client's pool pinned to the hot path: one script call at a time each.

redis-py's client call costs as much CPU again as the command itself (the
pool's lock, a health-check read on every checkout, the retry wrapper): twice
the calls per second over these connections in a probe here
(`bench/lane_probe.py`). A connection whose reply did not arrive in full (an
error, a cancellation) is closed by redis-py and never reused, so no caller
reads another's reply. Commands are packed by hiredis (C) rather than by the
asyncio connection's Python packer: 2.6 against 8.5 microseconds for an EVALSHA
of 18 arguments (timeit, docs/benchmarks.md), about 3 % of a decision's CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, ResponseError

# What hiredis packs as redis-py would (the same bytes, tests/unit/test_pinned_pack.py);
# anything else (a float, a bool, None) goes through redis-py's encoder, which
# formats or refuses it as every other command does. `type(x) in`, not
# isinstance: a bool is an int, and redis-py refuses bools.
_NATIVE = (bytes, str, int)


def pack(conn: AbstractConnection, *args: Any) -> bytes:
    """One command in the Redis protocol."""
    encode = conn.encoder.encode
    native = tuple(a if type(a) in _NATIVE else encode(a) for a in args)  # type: ignore[no-untyped-call]
    packed: bytes = hiredis.pack_command(native)
    return packed


async def send(conn: AbstractConnection, *args: Any) -> None:
    await conn.send_packed_command(pack(conn, *args))


class ShortOfReplicas(RedisError):
    """The write is on the primary, but fewer replicas than asked confirmed it."""


class PinnedConnections:
    def __init__(self, client: aioredis.Redis, idle_max: int = 64) -> None:
        self.pool = client.connection_pool
        self.idle_max = idle_max
        self._idle: list[AbstractConnection] = []

    async def script(
        self,
        script: AsyncScript,
        keys: Sequence[Any],
        args: Sequence[Any],
        replicas: int = 0,
        wait_ms: int = 0,
    ) -> Any:
        """EVALSHA over a pinned connection; the raw reply (the caller decodes it). With
        `replicas`, WAIT on the same connection (WAIT covers that connection's writes)
        for that many replicas, at most `wait_ms`: ShortOfReplicas when fewer confirm."""
        conn = self._idle.pop() if self._idle else self.pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            if not conn.is_connected:
                # inside the try: a connect that fails half-way (a sentinel naming a
                # primary that refuses, a handshake cut) leaves a socket to close
                await conn.connect()
            await send(conn, "EVALSHA", script.sha, len(keys), *keys, *args)
            try:
                reply = await conn.read_response()
            except NoScriptError:  # a restarted Redis: load it, ask again
                await send(conn, "SCRIPT", "LOAD", script.script)
                await conn.read_response()
                await send(conn, "EVALSHA", script.sha, len(keys), *keys, *args)
                reply = await conn.read_response()
            if replicas:
                await send(conn, "WAIT", replicas, wait_ms)
                confirmed = await conn.read_response()
                if int(confirmed) < replicas:
                    await self._keep(conn)
                    raise ShortOfReplicas(f"{confirmed} of {replicas} replicas confirmed")
        except ShortOfReplicas:
            raise
        except ResponseError:
            await self._keep(conn)  # an error reply is a whole reply: the connection is fine
            raise
        except (OSError, RedisError):
            # A broken connection (Redis restarted?): the idle ones are as old as
            # this one, so drop them all rather than fail the next calls one by one.
            await conn.disconnect(nowait=True)
            await self.close()
            raise
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        await self._keep(conn)
        return reply

    async def _keep(self, conn: AbstractConnection) -> None:
        if conn.is_connected and len(self._idle) < self.idle_max:
            self._idle.append(conn)
        else:
            await conn.disconnect(nowait=True)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect(nowait=True)
