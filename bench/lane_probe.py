"""EVALSHA calls per second, 32 concurrent callers: redis-py's client vs PinnedConnections.

Run: .venv/bin/python -m bench.lane_probe  (Redis on 127.0.0.1:6379, db 15)
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
import uvloop

from sipdata.cache.client import Cache

CALLS, CALLERS = 20_000, 32


async def rate(call: object) -> float:
    async def caller() -> None:
        for _ in range(CALLS // CALLERS):
            await call()  # type: ignore[operator]

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    return CALLS / (time.perf_counter() - started)


async def main() -> None:
    cache = Cache(aioredis.Redis.from_url("redis://127.0.0.1:6379/15"))
    script = cache.client.register_script("return 1")
    await cache.client.script_load(script.script)
    try:
        client = await rate(lambda: script(keys=[], args=[]))
        lane = await rate(lambda: cache.pinned.script(script, [], []))
    finally:
        await cache.close()
    print(f"client {client:.0f}/s  lane {lane:.0f}/s  ({lane / client:.2f}x)")


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
