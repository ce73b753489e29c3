"""Credit control on real Redis and PostgreSQL: a prepaid org's calls hold credit from one
balance, are refused when it cannot pay the first block, get a maximum duration, and their
CDRs debit the balance once, whatever the database does meanwhile."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.cache.health import RoutingHealth
from sipdata.db.provision import demo_id
from sipdata.decide import credit
from sipdata.decide.breaker import BreakerConfig
from sipdata.decide.quality import QualityConfig
from sipdata.errors import StoreUnavailable
from sipdata.settings import Settings

from .calls import call_report, cdrs, drain
from .conftest import Api, start_api
from .faults import CuttableProxy, api_behind

pytestmark = pytest.mark.usefixtures("warm")
DELTA = demo_id("org:delta")
DELTA_IP = demo_id("trunk:delta-ip")
CALL = {"source_ip": "127.0.0.12", "to": "12125551234"}


async def set_balance(pool: asyncpg.Pool, api: Api, balance: str, limit: str = "0") -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE billing_accounts SET current_balance = $2::numeric, credit_limit = "
            "$3::numeric, updated_at = now() WHERE org_id = $1::uuid",
            DELTA,
            Decimal(balance),
            Decimal(limit),
        )
    await api.service.credit.load()


def report(call_id: str, event: str, t0: float, **extra: Any) -> dict[str, Any]:
    """A call report of delta's trunk (calls.call_report's shape: answered at t0+2,
    ended at t0+63.5)."""
    return call_report(
        call_id, event, t0, trunk_id=DELTA_IP, org_id=DELTA, source_ip="127.0.0.12", **extra
    )


async def balance(pool: asyncpg.Pool) -> Decimal:
    async with pool.acquire() as conn:
        return Decimal(
            await conn.fetchval(
                "SELECT current_balance FROM billing_accounts WHERE org_id = $1::uuid", DELTA
            )
        )


async def test_a_prepaid_call_gets_the_duration_its_credit_pays_for(api: Api) -> None:
    """0.50 at the dearest offered rate (alpha, 0.0100/min) pays 3,000 s: the brief
    answer carries max_s for Kamailio's dialog timeout, explain says where it came from."""
    answer = await api.decide(**CALL, call_id="paid")
    assert answer["verdict"] == "route"
    assert answer["explain"]["credit"] == {
        "rate": "0.010000",
        "available": "0.500000",
        "max_s": 3000,
        "hold": "0.500000",
        "held": True,
    }
    status, brief = await api.get("/v1/decide/invite", **CALL, call_id="paid", brief="1")
    assert status == 200 and brief["max_s"] == 3000  # the same call asked again: its hold


async def test_no_funds_is_402_and_takes_no_channel(api: Api, pool: asyncpg.Pool) -> None:
    await set_balance(pool, api, "0.0009")  # the first 6 s at 0.0100/min cost 0.001
    answer = await api.decide(**CALL, call_id="broke")
    assert (answer["verdict"], answer["code"], answer["reason"]) == (
        "reject",
        402,
        "Insufficient Funds",
    )
    assert answer["explain"]["credit"]["available"] == "0.000900"
    assert not await api.service.cache.client.exists(keys.lease("broke"))
    await set_balance(pool, api, "0.0009", limit="5")  # a credit limit counts too
    assert (await api.decide(**CALL, call_id="on-credit"))["verdict"] == "route"


async def test_concurrent_calls_of_one_org_never_hold_more_than_it_has(
    api: Api, pool: asyncpg.Pool
) -> None:
    """Forty calls at once against 0.0100 (10 blocks of 6 s at 0.0100/min, with a cap
    that makes each call take one block): ten route, thirty are refused, the holds add
    up to exactly the balance."""
    api.service.credit.settings = replace(api.service.credit.settings, max_call_s=6)
    await set_balance(pool, api, "0.0100")
    answers = await asyncio.gather(*(api.decide(**CALL, call_id=f"race-{i}") for i in range(40)))
    routed = [a for a in answers if a["verdict"] == "route"]
    assert len(routed) == 10
    assert {a["code"] for a in answers if a["verdict"] != "route"} == {402}
    held = sum(Decimal(a["explain"]["credit"]["hold"]) for a in routed)
    assert held == Decimal("0.0100")
    account = await api.service.routing_health.account(DELTA)
    assert account["reserved"] == account["avail"] == 10_000


async def test_a_rated_cdr_debits_the_balance_once_and_frees_its_hold(
    api: Api, pool: asyncpg.Pool
) -> None:
    """Answered at bravo (0.005/min), 61.5 s talk billed 66 s: 0.0055 leaves the balance, one
    usage row is written, the hold is given back; the same end report again changes
    nothing."""
    t0 = time.time() - 100
    assert (await api.decide(**CALL, call_id="settle"))["verdict"] == "route"
    await api.service.lease_docs.aclose()
    end = report("settle", "end", t0, answer_ts=t0 + 2, destination_ip="127.0.0.102")
    for doc in (report("settle", "start", t0), end, end):
        status, _ = await api.post("/v1/events/call", doc)
        assert status == 202
    await drain(api)
    (row,) = await cdrs(pool, "settle")
    assert row["cost"] == Decimal("0.0055")
    assert await balance(pool) == Decimal("0.4945")
    async with pool.acquire() as conn:
        usage = await conn.fetch(
            "SELECT quantity, amount FROM usage_records WHERE metadata->>'call_id' = 'settle'"
        )
    assert [(u["quantity"], u["amount"]) for u in usage] == [(Decimal(66), Decimal("0.0055"))]
    account = await api.service.routing_health.account(DELTA)
    assert account["reserved"] == 0 and account["avail"] == 494_500
    await api.service.credit.load()  # the database agrees with what Redis took
    assert (await api.service.routing_health.account(DELTA))["avail"] == 494_500


async def test_with_the_database_away_the_hold_stays_until_the_cdr_is_written(
    settings: Settings, pool: asyncpg.Pool, cache: Cache
) -> None:
    proxy = CuttableProxy(5432)
    api = await api_behind(proxy, settings)
    try:
        t0 = time.time() - 100
        assert (await api.decide(**CALL, call_id="outage"))["verdict"] == "route"
        await api.service.lease_docs.aclose()
        await proxy.cut()
        end = report("outage", "end", t0, answer_ts=t0 + 2, destination_ip="127.0.0.102")
        status, _ = await api.post("/v1/events/call", end)
        assert status == 202
        with pytest.raises(StoreUnavailable):
            await api.writeback.drain_once()
        assert (await api.service.routing_health.account(DELTA))["reserved"] == 500_000
        # a second call meanwhile finds the first one's credit still held
        assert (await api.decide(**CALL, call_id="meanwhile"))["code"] == 402
        await proxy.start()
        await drain(api)
    finally:
        await api.client.close()
        await proxy.cut()
    assert await balance(pool) == Decimal("0.4945")
    assert len(await cdrs(pool, "outage")) == 1


async def test_redis_away_refuses_a_prepaid_call_with_503_not_402(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    api = await start_api(replace(settings, redis_url="redis://127.0.0.1:1/0"))
    try:
        status, body = await api.get("/v1/decide/invite", **CALL, call_id="no-redis")
    finally:
        await api.client.close()
    assert status == 503 and body.get("degraded") is True, body
    assert body["code"] == 503


async def test_a_top_up_counts_on_the_next_load(api: Api, pool: asyncpg.Pool) -> None:
    await set_balance(pool, api, "0")
    assert (await api.decide(**CALL, call_id="before"))["code"] == 402
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE billing_accounts SET current_balance = 10 WHERE org_id = $1::uuid", DELTA
        )
    await api.service.credit.load()
    assert (await api.decide(**CALL, call_id="after"))["verdict"] == "route"


@hsettings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    free=st.integers(0, 10**9),
    rate=st.integers(0, 5 * 10**6),
    minimum=st.integers(0, 60),
    increment=st.integers(1, 60),
    cap=st.integers(1, 20_000),
)
async def test_the_lua_reservation_computes_exactly_what_credit_reserve_does(
    cache: Cache, free: int, rate: int, minimum: int, increment: int, cap: int
) -> None:
    health = RoutingHealth(cache, BreakerConfig(), QualityConfig())
    org = "prop-org"
    await cache.client.delete(
        keys.credit_account(org), keys.credit_holds(org), keys.credit_held(org)
    )
    await cache.client.hset(keys.credit_account(org), mapping={"avail": free})
    ask = credit.Ask(rate, minimum, increment, cap)
    outcome, max_s, hold, seen = await health.reserve(org, "c", ask, 1000)
    expected = credit.reserve(free, ask)
    assert seen == free
    if expected is None:
        assert outcome == "funds"
    else:
        assert (outcome, max_s, hold) == ("ok", expected.max_s, expected.hold_micro)


async def test_a_hold_whose_call_is_never_relayed_lapses_with_its_lease(
    settings: Settings, pool: asyncpg.Pool, cache: Cache
) -> None:
    """A routed INVITE that Kamailio never relays (a wrong digest password, a caller
    that gave up) holds credit only as long as its channel lease: INVITEs cannot tie an
    org's money up. A call whose start report came keeps its hold."""
    api = await start_api(replace(settings, lease_pending_s=0.5, lease_ringing_s=0.5))
    try:
        await set_balance(pool, api, "0.0010")  # one 6 s block at 0.0100/min
        assert (await api.decide(**CALL, call_id="never-relayed"))["verdict"] == "route"
        assert (await api.decide(**CALL, call_id="meanwhile"))["code"] == 402
        await asyncio.sleep(0.6)
        assert (await api.decide(**CALL, call_id="relayed"))["verdict"] == "route"
        status, _ = await api.post("/v1/events/call", report("relayed", "start", time.time()))
        assert status == 202
        await asyncio.sleep(0.6)
        assert (await api.decide(**CALL, call_id="after"))["code"] == 402
    finally:
        await api.client.close()
