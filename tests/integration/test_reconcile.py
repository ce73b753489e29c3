"""Channel counts after Redis lost its data: the counts last saved in the database come back
as placeholder leases, so calls still up keep counting against their limits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import asyncpg
import pytest
from redis.exceptions import RedisError

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.settings import Settings

from .calls import ACME, ACME_IP, eventually
from .conftest import Api, RedisServer, start_api, warmer

CALL = {"source_ip": "127.0.0.10", "to": "12125551234"}


@dataclass
class Edge:
    api: Api
    cache: Cache
    redis: RedisServer
    settings: Settings
    pool: asyncpg.Pool

    async def load(self) -> dict[str, object]:
        beat = await warmer(self.settings, self.cache, self.pool).load_once()
        assert beat is not None
        await self.api.refresh()
        return beat

    async def admitted(self, prefix: str, n: int) -> int:
        """How many of `n` new calls are routed (each takes a channel)."""
        answers = [await self.api.decide(**CALL, call_id=f"{prefix}-{i}") for i in range(n)]
        return sum(1 for a in answers if a["verdict"] == "route")

    async def restart_redis_empty(self) -> None:
        """Restart Redis with nothing in it; each client's next call meets the closed
        connection once (as in production, the next round works), so use them up here."""
        # in a thread: a loop blocked for the restart would read as an overloaded process
        await asyncio.to_thread(self.redis.stop)
        await asyncio.to_thread(self.redis.start)
        for client in (self.cache.client, self.api.writeback.live.client):
            with contextlib.suppress(RedisError):
                await client.ping()

    async def live(self, scope: str, scope_id: str) -> int:
        key = keys.channels(scope, scope_id)
        await self.cache.client.zremrangebyscore(key, "-inf", "(" + str(_now_ms()))
        return int(await self.cache.client.zcard(key))


def _now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
async def edge(
    settings: Settings, redis_server: RedisServer, pool: asyncpg.Pool, demo: dict[str, int]
) -> AsyncIterator[Edge]:
    """A trunk limited to 5 channels, on a private Redis the test may restart empty."""
    async with pool.acquire() as conn:
        await conn.execute("UPDATE sip_trunks SET max_channels = 5 WHERE id = $1", ACME_IP)
    private = replace(settings, redis_url=redis_server.url)
    cache = Cache.from_settings(private)
    api = await start_api(private)
    found = Edge(api, cache, redis_server, private, pool)
    await found.load()
    yield found
    await api.client.close()
    await cache.close()


async def saved(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval("SELECT channels_in_use FROM sip_trunks WHERE id = $1", ACME_IP)
        )


async def test_a_redis_restarted_empty_admits_no_call_past_the_limit(edge: Edge) -> None:
    """Five calls fill the trunk and the write-back saves 5. Redis restarts with nothing:
    the write-back does not overwrite the saved 5 with zeros, the next full load puts
    five placeholder leases back on the trunk and its org, and of ten new calls not one
    is admitted past the limit (before this, all five free places were handed out
    again: ten calls up on a five-channel trunk)."""
    writeback = edge.api.writeback
    assert await edge.admitted("held", 5) == 5
    assert await writeback.sync_channels() == {ACME_IP: 5}
    assert await saved(edge.pool) == 5
    await edge.restart_redis_empty()
    assert await writeback.sync_channels() is None
    assert await saved(edge.pool) == 5
    beat = await edge.load()
    assert beat["channels_restored"] == 5
    assert await edge.live("trunk", ACME_IP) == 5
    assert await edge.live("org", ACME) == 5
    assert await edge.admitted("after", 10) == 0
    assert await writeback.sync_channels() == {ACME_IP: 5}


async def test_a_reload_on_a_redis_that_kept_its_leases_restores_nothing(edge: Edge) -> None:
    """An ordinary full load (a deck import, a restart of sipdata) finds the marker and adds
    no placeholder: two live calls stay two, and three more are admitted."""
    assert await edge.admitted("held", 2) == 2
    await edge.api.writeback.sync_channels()
    beat = await edge.load()
    assert beat["channels_restored"] == 0
    assert await edge.live("trunk", ACME_IP) == 2
    assert await edge.admitted("more", 5) == 3


async def test_placeholders_lapse_over_the_window(edge: Edge) -> None:
    """Placeholder leases lapse one by one within SIPDATA_RESTORED_LEASES_S: capacity comes
    back gradually, and all of it once the window has passed."""
    assert await edge.admitted("held", 5) == 5
    await edge.api.writeback.sync_channels()
    await edge.restart_redis_empty()
    edge.settings = replace(edge.settings, restored_leases_s=1.0)
    assert (await edge.load())["channels_restored"] == 5

    async def lapsed() -> bool:
        return await edge.live("trunk", ACME_IP) == 0

    await eventually(lapsed, "the placeholders to lapse", timeout_s=10)
    assert await edge.admitted("later", 5) == 5


async def test_a_decision_before_the_warmer_restores_the_counts_itself(edge: Edge) -> None:
    """Between the restart and the warmer's next load, the first admission finds the
    leases-kept marker missing, puts the saved counts back itself (once: the script
    applies for whoever asks first) and is refused on the full trunk; no call slips
    through the gap."""
    assert await edge.admitted("held", 5) == 5
    await edge.api.writeback.sync_channels()
    await edge.restart_redis_empty()
    answers = await asyncio.gather(
        *(edge.api.decide(**CALL, call_id=f"gap-{i}") for i in range(10))
    )
    assert [a["verdict"] for a in answers] == ["reject"] * 10
    assert {a["reason"] for a in answers} == {"Trunk Channel Limit Reached"}
    assert await edge.live("trunk", ACME_IP) == 5
    assert (await edge.load())["channels_restored"] == 0
