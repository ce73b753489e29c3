"""Admission on real Redis: channel leases keyed by Call-ID, limits checked and taken in one
script, leases that lapse when reports are lost, counts that never go negative."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.db.provision import demo_id
from sipdata.settings import Settings

from .conftest import Api, start_api, warmer

ACME_IP = demo_id("trunk:acme-ip")
CALL = {"source_ip": "127.0.0.10", "to": "12125551234"}


Limit = Callable[..., Awaitable[None]]


@pytest.fixture
def limit(pool: asyncpg.Pool, settings: Settings, cache: Cache, api: Api) -> Limit:
    """Change a limit in the database and load it (as the warmer would)."""

    async def apply(sql: str, *args: Any) -> None:
        async with pool.acquire() as conn:
            await conn.execute(sql, *args)
        await warmer(settings, cache, pool).load_once()
        await api.refresh()

    return apply


async def report(api: Api, call_id: str, event: str, **extra: Any) -> dict[str, Any]:
    doc = {"event": event, "call_id": call_id, "ts": time.time(), **extra}
    status, body = await api.post("/v1/events/call", doc)
    assert status == 202, body
    return body


async def live_channels(cache: Cache, trunk_id: str = ACME_IP) -> int:
    key = keys.channels("trunk", trunk_id)
    await cache.client.zremrangebyscore(key, "-inf", int(time.time() * 1000))
    return int(await cache.client.zcard(key))


pytestmark = pytest.mark.usefixtures("warm")


async def test_fifty_parallel_calls_at_limit_minus_one_admit_exactly_one(
    api: Api, cache: Cache, limit: Limit
) -> None:
    """Fifty concurrent calls at limit minus one admit exactly one; the rest are 503 naming
    the trunk limit."""
    await limit("UPDATE sip_trunks SET max_channels = 5 WHERE id = $1", ACME_IP)
    for i in range(4):
        assert (await api.decide(**CALL, call_id=f"held-{i}"))["verdict"] == "route"
    answers = await asyncio.gather(*(api.decide(**CALL, call_id=f"race-{i}") for i in range(50)))
    routed = [a for a in answers if a["verdict"] == "route"]
    refused = [a for a in answers if a["verdict"] == "reject"]
    assert len(routed) == 1 and len(refused) == 49
    assert {(a["code"], a["reason"]) for a in refused} == {(503, "Trunk Channel Limit Reached")}
    assert all(a["explain"]["admission"] == "trunk" and "degraded" not in a for a in refused)
    assert await live_channels(cache) == 5


async def test_same_call_id_is_admitted_once(api: Api, cache: Cache) -> None:
    """A retransmitted INVITE, or the INVITE after a 407, holds one channel, not two."""
    first = await api.decide(**CALL, call_id="again")
    second = await api.decide(**CALL, call_id="again")
    assert first["explain"]["admission"] == "ok" and second["explain"]["admission"] == "dup"
    assert await live_channels(cache) == 1


async def test_unconfirmed_lease_lapses_within_seconds(
    settings: Settings, pool: asyncpg.Pool, cache: Cache
) -> None:
    """Admitted but never started (the caller failed digest, Kamailio died): the channel
    comes back after lease_pending_s."""
    api = await start_api(replace(settings, lease_pending_s=0.3))
    try:
        await api.decide(**CALL, call_id="orphan")
        assert await live_channels(cache) == 1
        await asyncio.sleep(0.5)
        assert await live_channels(cache) == 0
    finally:
        await api.client.close()


async def test_started_call_outlives_the_pending_lease_and_answer_extends_it(
    settings: Settings, pool: asyncpg.Pool, cache: Cache
) -> None:
    """A start report keeps the channel past the pending lease, and an answer extends it further."""
    api = await start_api(replace(settings, lease_pending_s=0.3, lease_ringing_s=60))
    try:
        await api.decide(**CALL, call_id="ringing")
        await report(api, "ringing", "start")
        await asyncio.sleep(0.5)
        assert await live_channels(cache) == 1
        key = keys.channels("trunk", ACME_IP)
        ringing = await cache.client.zscore(key, "ringing")
        await report(api, "ringing", "answer")
        answered = await cache.client.zscore(key, "ringing")
        assert answered > ringing + 3_600_000  # now the longest call, not the ringing time
        await report(api, "ringing", "start")  # late and out of order: never shortens
        assert await cache.client.zscore(key, "ringing") == answered
        await report(api, "ringing", "end")
        assert await live_channels(cache) == 0
        assert await cache.client.exists(keys.lease("ringing")) == 0
    finally:
        await api.client.close()


async def test_ending_an_unknown_call_is_a_no_op(api: Api, cache: Cache) -> None:
    """BYE without INVITE, a repeated end, an end after the lease lapsed: no count moves."""
    await api.decide(**CALL, call_id="real")
    for _ in range(3):
        await report(api, "never-admitted", "end")
    await report(api, "real", "end")
    await report(api, "real", "end")
    assert await live_channels(cache) == 0
    assert await cache.client.zcard(keys.channels("org", demo_id("org:acme"))) == 0


async def test_org_limit_counts_every_trunk_of_the_org(
    api: Api, cache: Cache, limit: Limit
) -> None:
    """The org limit counts the calls of all its trunks, and a failed call frees its channel."""
    await limit(
        "UPDATE organization_settings SET max_concurrent_calls = 2 WHERE org_id = $1",
        demo_id("org:acme"),
    )
    assert (await api.decide(**CALL, call_id="o-1"))["verdict"] == "route"
    assert (await api.decide(**CALL, call_id="o-2"))["verdict"] == "route"
    third = await api.decide(**CALL, call_id="o-3")
    assert (third["code"], third["reason"]) == (503, "Account Channel Limit Reached")
    await report(api, "o-1", "fail", sip_code=486)
    assert (await api.decide(**CALL, call_id="o-4"))["verdict"] == "route"


async def test_rule_limit_counts_calls_the_rule_routed(
    api: Api, cache: Cache, limit: Limit
) -> None:
    """globex's 1800 rule with max_calls 1: a second toll-free call waits."""
    await limit(
        "UPDATE routing_rules SET max_calls = 1 WHERE org_id = $1 AND match_pattern = '1800'",
        demo_id("org:globex"),
    )
    tollfree = {"source_ip": "127.0.1.7", "to": "18005550123"}
    assert (await api.decide(**tollfree, call_id="r-1"))["verdict"] == "route"
    second = await api.decide(**tollfree, call_id="r-2")
    assert (second["code"], second["reason"]) == (503, "Route Channel Limit Reached")
    other = await api.decide(source_ip="127.0.1.7", to="12125551234", call_id="r-3")
    assert other["verdict"] == "route"


async def test_call_rate_limit_per_trunk_per_second(api: Api, cache: Cache, limit: Limit) -> None:
    """max_cps 2: a burst of ten calls inside a second or two admits at most two per
    second, and every counter carries its expiry."""
    await limit(
        """UPDATE sip_trunks SET metadata = '{"max_cps": "2"}' WHERE id = $1""",
        ACME_IP,
    )
    started = time.time()
    answers = [await api.decide(**CALL, call_id=f"cps-{i}") for i in range(10)]
    windows = int(time.time()) - int(started) + 1
    admitted = sum(a["verdict"] == "route" for a in answers)
    assert 1 <= admitted <= 2 * windows
    assert {a["reason"] for a in answers if a["verdict"] == "reject"} == {
        "Call Rate Limit Exceeded"
    }
    for key in await cache.client.keys(f"rate:calls:{ACME_IP}:*"):
        assert 0 < await cache.client.ttl(key) <= 2
    for key in await cache.client.keys("channels:*"):
        assert await cache.client.pttl(key) > 0


async def test_dry_run_decides_without_taking_a_channel(api: Api, cache: Cache) -> None:
    """Operators' probes (dry_run=1) see the verdict and leave capacity alone."""
    probe = await api.decide(**CALL, call_id="probe", dry_run="1")
    assert probe["verdict"] == "route" and probe["explain"]["admission"] == "skipped"
    assert await live_channels(cache) == 0
    status, body = await api.get("/v1/decide/invite", **CALL, call_id="p", dry_run="maybe")
    assert status == 400 and body["error"]["field"] == "dry_run"


async def test_a_question_that_arrives_after_the_call_ended_takes_no_channel(
    api: Api, cache: Cache
) -> None:
    """Kamailio gave up on a node and asked another; the call ran and ended. The first
    node then gets the question (a healed partition delivers it): it routes without a
    channel, and the call's start and answer sent again later extend nothing, so no
    lease is left behind for four hours."""
    assert (await api.decide(**CALL, call_id="late"))["verdict"] == "route"
    for event in ("start", "answer", "end"):
        await report(api, "late", event)
    assert await live_channels(cache) == 0
    late = await api.decide(**CALL, call_id="late")
    assert late["verdict"] == "route" and late["explain"]["admission"] == "ended"
    for event in ("start", "answer"):
        await report(api, "late", event)
    assert await live_channels(cache) == 0
    assert await cache.client.exists(keys.lease("late")) == 0
