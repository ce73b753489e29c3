"""Redis through Sentinel (one primary, one replica, three sentinels, all real): sipdata
follows a failover, acknowledged reports survive the loss of the primary, and channel
counts carry over so no call is admitted past a limit."""

from __future__ import annotations

import asyncio
import gc
import signal
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.settings import Settings

from .calls import ACME_IP, call_report, cdrs, eventually
from .conftest import Api, start_api, warmer
from .sentinel import SentinelSet, sentinel_set

CALL = {"source_ip": "127.0.0.10", "to": "12125551234"}
# A decision cut off by its deadline while redis-py asks a sentinel for the primary can
# cancel redis-py's pool release half-way; that connection is then closed by the
# garbage collector, with this warning, at whatever moment it runs (it ran inside a
# test of this module in one CI run and in one of 15 clean-clone runs since).
# Expected here, and only here: every other module keeps ResourceWarning an error,
# and the fixture below collects these before the next test starts.
pytestmark = pytest.mark.filterwarnings("ignore:unclosed Connection:ResourceWarning")


@pytest.fixture(autouse=True)
def collect_cancelled_discoveries() -> Iterator[None]:
    """A decision cut off by its deadline while redis-py asks a sentinel for the primary
    can cancel redis-py's pool release half-way, and that sentinel connection leaves the
    pool unclosed (redis-py closes it when it is collected, with a ResourceWarning). It
    is collected here, where that warning is expected, rather than in a later test."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with sentinel_set(tmp_path) as found:
        yield found


@pytest.fixture
def through_sentinel(settings: Settings, sentinels: SentinelSet) -> Settings:
    return replace(
        settings,
        # host and port here are never dialled: the sentinels name the primary
        redis_url="redis://127.0.0.1:1/0",
        redis_sentinels=sentinels.addresses,
        writeback_enabled=True,
        drain_backoff_max_s=0.5,
    )


@pytest.fixture
async def loaded(
    through_sentinel: Settings, pool: asyncpg.Pool, demo: dict[str, int]
) -> AsyncIterator[Api]:
    """The demo data loaded into the Sentinel-managed primary, and the app on it."""
    cache = Cache.from_settings(through_sentinel)
    assert await warmer(through_sentinel, cache, pool).load_once() is not None
    await cache.close()
    api = await start_api(through_sentinel)
    yield api
    await api.client.close()


async def failover(sentinels: SentinelSet) -> float:
    """Kill -9 the primary; seconds until the sentinels name the replica instead."""
    old = sentinels.first.port
    started = time.monotonic()
    sentinels.first.kill()
    await eventually(
        lambda: asyncio.to_thread(lambda: sentinels.primary() == sentinels.second.port),
        "the replica promoted",
    )
    assert sentinels.primary() != old
    return time.monotonic() - started


async def test_decisions_resume_on_the_promoted_replica(
    loaded: Api, sentinels: SentinelSet
) -> None:
    """A decision routes through the primary the sentinels name; with that primary killed
    the answers are routes (from the database) or 503s, never a refusal of the caller,
    and once the replica is promoted decisions route from Redis again."""
    assert (await loaded.decide(**CALL, dry_run="1"))["verdict"] == "route"
    answers: list[tuple[int, dict[str, Any]]] = []
    took = asyncio.create_task(failover(sentinels))
    while not took.done():
        answers.append(await loaded.get("/v1/decide/invite", **CALL, call_id="x", dry_run="1"))
        await asyncio.sleep(0.05)
    seconds = await took
    assert seconds < 30
    for status, body in answers:
        assert status == 503 or body["verdict"] == "route", body
    routed = sum(1 for status, body in answers if status == 200)
    print(f"failover {seconds:.1f} s: {len(answers)} decisions, {routed} routed")

    async def from_redis() -> bool:
        body = await loaded.decide(**CALL, dry_run="1")
        return body["verdict"] == "route" and "degraded" not in body

    await eventually(from_redis, "a decision from the promoted replica")


async def test_acknowledged_reports_survive_the_loss_of_the_primary(
    through_sentinel: Settings, sentinels: SentinelSet, pool: asyncpg.Pool, demo: dict[str, int]
) -> None:
    """With SIPDATA_REDIS_REPLICAS_ACK=1 a report is acknowledged only once the replica
    holds it. The primary is killed -9 in the middle of 200 end reports and never comes
    back: every report acknowledged with 2xx has exactly one CDR once the replica leads;
    none that was kept back has more than one."""
    settings = replace(through_sentinel, redis_replicas_ack=1, redis_replicas_wait_ms=200)
    cache = Cache.from_settings(settings)
    await warmer(settings, cache, pool).load_once()
    await cache.close()
    api = await start_api(settings)
    acked: list[str] = []
    kept: list[str] = []
    t0 = time.time() - 70

    async def send(i: int) -> None:
        call_id = f"sentinel-burst-{i}"
        report = {**call_report(call_id, "end", t0), "report_key": f"{call_id}:end"}
        status, body = await api.post("/v1/events/calls", {"reports": [report]})
        done = status == 202 and body.get("done") == [report["report_key"]]
        (acked if done else kept).append(call_id)

    async def burst() -> None:
        for start in range(0, 200, 8):
            await asyncio.gather(*(send(i) for i in range(start, start + 8)))
            await asyncio.sleep(0.02)

    try:
        sender = asyncio.create_task(burst())
        await eventually(lambda: asyncio.sleep(0, len(acked) >= 50), "the burst under way")
        await failover(sentinels)
        await sender
        assert len(acked) >= 100, (len(acked), len(kept))
        for call_id in acked:
            await eventually(lambda c=call_id: cdrs(pool, c), f"the CDR of {call_id}")
        for call_id in acked:
            assert len(await cdrs(pool, call_id)) == 1, call_id
        for call_id in kept:
            assert len(await cdrs(pool, call_id)) <= 1, call_id
    finally:
        await api.client.close()


async def test_channel_counts_carry_over_a_failover(
    loaded: Api, sentinels: SentinelSet, pool: asyncpg.Pool, through_sentinel: Settings
) -> None:
    """A trunk at its limit of 5 before the failover is still at 5 after it: the leases were
    on the replica, so the next call is refused, and not one is admitted past the limit."""
    async with pool.acquire() as conn:
        await conn.execute("UPDATE sip_trunks SET max_channels = 5 WHERE id = $1", ACME_IP)
    cache = Cache.from_settings(through_sentinel)
    await warmer(through_sentinel, cache, pool).load_once()
    await loaded.refresh()
    for i in range(5):
        assert (await loaded.decide(**CALL, call_id=f"held-{i}"))["verdict"] == "route"
        # ringing: the lease now outlives the failover (an unstarted one lapses in 10 s)
        started = call_report(f"held-{i}", "start", time.time())
        assert (await loaded.post("/v1/events/call", started))[0] == 202
    sentinels.wait_replicated()
    await failover(sentinels)

    async def decided() -> dict[str, Any] | None:
        """An answer that counted against Redis: while no primary answers, a call is
        admitted unchecked (availability over limits, docs/operations.md) and takes no
        lease, so the same call is asked again."""
        status, body = await loaded.get("/v1/decide/invite", **CALL, call_id="one-more")
        counted = body.get("explain", {}).get("admission") not in (None, "unchecked")
        return body if status == 200 and counted else None

    try:
        answer = await eventually(decided, "a decision on the promoted replica")
        assert answer["verdict"] == "reject" and answer["code"] == 503, answer
        assert answer["explain"]["admission"] == "trunk"
        assert await cache.client.zcard(keys.channels("trunk", ACME_IP)) == 5
    finally:
        await cache.close()


async def test_a_report_no_replica_confirmed_is_kept_back_then_taken(
    through_sentinel: Settings, sentinels: SentinelSet, pool: asyncpg.Pool, demo: dict[str, int]
) -> None:
    """With the replica frozen, WAIT confirms nothing: the report is listed as kept (not
    acknowledged, and not written around the stream either). Sent again once the replica
    answers, it is acknowledged, and the call has exactly one CDR."""
    settings = replace(through_sentinel, redis_replicas_ack=1, redis_replicas_wait_ms=100)
    cache = Cache.from_settings(settings)
    await warmer(settings, cache, pool).load_once()
    await cache.close()
    api = await start_api(settings)
    reader = Cache.from_settings(settings)
    report = {
        **call_report("unconfirmed", "end", time.time() - 70),
        "report_key": "unconfirmed:end",
    }
    replica = sentinels.second.proc
    assert replica is not None
    try:
        replica.send_signal(signal.SIGSTOP)
        try:
            status, body = await api.post("/v1/events/calls", {"reports": [report]})
        finally:
            replica.send_signal(signal.SIGCONT)
        assert status == 202 and body["kept"] == ["unconfirmed:end"] and body["done"] == []
        sentinels.wait_replicated()
        status, body = await api.post("/v1/events/calls", {"reports": [report]})
        assert status == 202 and body["done"] == ["unconfirmed:end"], body
        await eventually(lambda: cdrs(pool, "unconfirmed"), "the CDR")
        # the first delivery was in the stream all along: both drain into one CDR
        await eventually(lambda: drained(reader), "both deliveries drained")
        assert len(await cdrs(pool, "unconfirmed")) == 1
    finally:
        await api.client.close()
        await reader.close()


async def drained(cache: Cache) -> bool:
    return await cache.client.xlen(keys.CALL_EVENTS) == 0
