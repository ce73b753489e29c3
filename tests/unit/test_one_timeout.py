"""A request spends at most one Redis timeout: after one call timed out, its further calls
fail at once; a failure that cost no time, and calls outside a request, are not cut."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from sipdata.cache.client import Cache, one_timeout
from sipdata.errors import CacheUnavailable


@pytest.fixture
async def cache() -> Cache:
    # never connected: every call below is simulated inside `translated`
    return Cache(aioredis.Redis(), timeout_s=0.01)


async def slow(cache: Cache, what: str) -> bool:
    """A call that outlives its timeout; True if its body ran at all."""
    ran = False
    with pytest.raises(CacheUnavailable):
        async with cache.translated(what):
            ran = True
            await asyncio.sleep(1)
    return ran


async def quick(cache: Cache, what: str) -> bool:
    """A call that succeeds; True if its body ran."""
    ran = False
    async with cache.translated(what):
        ran = True
    return ran


async def test_after_one_timeout_the_request_skips_redis(cache: Cache) -> None:
    with one_timeout():
        assert await slow(cache, "first")
        with pytest.raises(CacheUnavailable, match="skipped"):
            await quick(cache, "second")


async def test_a_failure_that_cost_no_time_does_not_count(cache: Cache) -> None:
    with one_timeout():
        with pytest.raises(CacheUnavailable):
            async with cache.translated("refused"):
                raise RedisConnectionError("connection refused")
        assert await quick(cache, "next")


async def test_each_request_has_its_own_budget(cache: Cache) -> None:
    with one_timeout():
        await slow(cache, "first")
    with one_timeout():
        assert await quick(cache, "another request")


async def test_calls_outside_a_request_are_never_cut(cache: Cache) -> None:
    await slow(cache, "a background job's call")
    assert await quick(cache, "its next call")


async def test_bulk_calls_are_not_cut(cache: Cache) -> None:
    with one_timeout():
        await slow(cache, "first")
        async with cache.translated("a warmer batch", bulk=True):
            pass
