"""Cancelling a task mid-Redis-command must cancel it: the decision deadline depends on it."""

from __future__ import annotations

import asyncio

from sipdata.cache.client import Cache


async def test_cancellation_is_never_swallowed_by_the_redis_client(cache: Cache) -> None:
    """redis-py 8.0/8.1 lose some cancellations; the pinned client must lose none."""

    async def busy() -> None:
        while True:
            await cache.current_generation()
            await asyncio.sleep(0)

    lost = 0
    for _ in range(60):
        task = asyncio.create_task(busy())
        await asyncio.sleep(0.005)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.5)
        if not done:
            lost += 1
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.2)
    assert lost == 0


async def test_deadline_cuts_a_slow_redis_call(cache: Cache) -> None:
    """asyncio.timeout around a blocked command ends on time with TimeoutError."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(0.2):
            await cache.client.execute_command("BLPOP", "sipdata:test:never", 5)
    except TimeoutError:
        pass
    else:
        raise AssertionError("BLPOP returned although nothing was pushed")
    assert loop.time() - started < 2.0
