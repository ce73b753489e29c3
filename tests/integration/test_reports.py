"""Reports from Kamailio against real PostgreSQL and Redis: stored once, in order, or refused."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.db.provision import demo_id
from sipdata.settings import Settings

from .conftest import Api, free_port, start_api

pytestmark = pytest.mark.usefixtures("warm")

PBX = demo_id("trunk:acme-pbx")


def report(ts: float, **change: Any) -> dict[str, Any]:
    return {
        "username": "acme-pbx",
        "contact": "sip:acme-pbx@127.0.0.20:5070",
        "received": "sip:127.0.0.20:5070",
        "source_ip": "127.0.0.20",
        "user_agent": "pbx/1.0",
        "call_id": "reg-1",
        "cseq": 2,
        "expires": 300,
        "ts": ts,
        **change,
    }


async def row(pool: asyncpg.Pool) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            "SELECT * FROM trunk_registrations WHERE trunk_id = $1::uuid", PBX
        )


async def test_register_report_is_stored_in_database_and_redis(
    api: Api, pool: asyncpg.Pool, cache: Cache
) -> None:
    """The binding lands in trunk_registrations and registration:{id} with the expiry as TTL,
    and the DID of the trunk now routes to the contact via the received address."""
    status, body = await api.post("/v1/events/register", report(time.time()))
    assert status == 200 and body["applied"] and body["cached"] and body["online"]
    stored = await row(pool)
    assert stored is not None and stored["status"] == "online"
    assert stored["contact"] == "sip:acme-pbx@127.0.0.20:5070"
    ttl = await cache.client.ttl(keys.registration(PBX))
    assert 290 <= ttl <= 300
    assert await cache.client.sismember(keys.TRUNKS_ONLINE, PBX)
    status, view = await api.get("/v1/registration", username="acme-pbx")
    assert status == 200 and view["online"] and view["registration"]["user_agent"] == "pbx/1.0"
    routed = await api.decide(source_ip="127.0.0.101", to="12125550100")
    assert routed["routing"]["routes"] == [
        {"uri": "sip:acme-pbx@127.0.0.20:5070", "dst_uri": "sip:127.0.0.20:5070"}
    ]


async def test_older_report_arriving_late_changes_nothing(
    api: Api, pool: asyncpg.Pool, cache: Cache
) -> None:
    """A registration report older than the stored one changes neither the database nor Redis."""
    now = time.time()
    await api.post("/v1/events/register", report(now, contact="sip:acme-pbx@127.0.0.20:6000"))
    status, body = await api.post("/v1/events/register", report(now - 10))
    assert status == 200 and body["applied"] is False
    stored = await row(pool)
    assert stored is not None and stored["contact"] == "sip:acme-pbx@127.0.0.20:6000"
    raw = await cache.client.get(keys.registration(PBX))
    assert b"6000" in raw


async def test_repeated_report_is_idempotent(api: Api, pool: asyncpg.Pool) -> None:
    """The same registration report twice leaves one row."""
    doc = report(time.time())
    first = await api.post("/v1/events/register", doc)
    again = await api.post("/v1/events/register", doc)
    assert first[0] == again[0] == 200
    async with pool.acquire() as conn:
        count = await conn.fetchval("SELECT count(*) FROM trunk_registrations")
    assert count == 1


async def test_expires_zero_takes_the_trunk_offline(
    api: Api, pool: asyncpg.Pool, cache: Cache
) -> None:
    """Expires 0 takes the trunk offline in the database and Redis, and its DID calls get 480."""
    now = time.time()
    await api.post("/v1/events/register", report(now))
    status, body = await api.post("/v1/events/register", report(now + 1, expires=0))
    assert status == 200 and body["online"] is False
    stored = await row(pool)
    assert stored is not None and stored["status"] == "offline"
    assert await cache.client.exists(keys.registration(PBX)) == 0
    assert not await cache.client.sismember(keys.TRUNKS_ONLINE, PBX)
    routed = await api.decide(source_ip="127.0.0.101", to="12125550100")
    assert routed["code"] == 480


@pytest.mark.parametrize(
    ("doc", "status", "code", "field"),
    [
        (report(time.time(), username="nobody"), 404, "not_found", "username"),
        (report(time.time(), contact="tel:+1"), 400, "invalid_parameter", "contact"),
        (report(time.time(), expires=-5), 400, "invalid_parameter", "expires"),
        ({"username": "acme-pbx"}, 400, "invalid_parameter", "contact"),
    ],
)
async def test_bad_register_report_is_refused_and_stores_nothing(
    api: Api, pool: asyncpg.Pool, cache: Cache, doc: dict, status: int, code: str, field: str
) -> None:
    """A bad registration report is refused naming the field, and nothing is stored."""
    got, body = await api.post("/v1/events/register", doc)
    assert (got, body["error"]["code"], body["error"]["field"]) == (status, code, field)
    assert await row(pool) is None
    assert await cache.client.exists(keys.registration(PBX)) == 0


async def test_database_down_register_is_queued_and_live_in_redis(
    settings: Settings, cache: Cache
) -> None:
    """With the database away the report is acknowledged from the Redis queue, and calls
    can reach the trunk at once (the drainer writes the database later)."""
    down = replace(settings, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    api = await start_api(down)
    try:
        status, body = await api.post("/v1/events/register", report(time.time()))
    finally:
        await api.client.close()
    assert status == 200 and body["stored"] == "queue" and body["cached"]
    assert await cache.client.xlen(keys.REGISTRATION_QUEUE) == 1
    assert await cache.client.exists(keys.registration(PBX)) == 1


async def test_database_and_redis_down_register_is_503(settings: Settings) -> None:
    """Stored nowhere means not acknowledged: Kamailio answers the REGISTER 503."""
    down = replace(
        settings,
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    api = await start_api(down)
    try:
        status, body = await api.post("/v1/events/register", report(time.time()))
    finally:
        await api.client.close()
    assert status == 503 and body["degraded"] is True


async def test_call_event_is_acknowledged_once_in_the_stream(api: Api, cache: Cache) -> None:
    """A call event is acknowledged only once it is in the stream, with its codecs."""
    doc = {
        "event": "answer",
        "call_id": "c-1",
        "ts": time.time(),
        "trunk_id": demo_id("trunk:acme-ip"),
        "sdp": "v=0\r\nm=audio 4000 RTP/AVP 8\r\n",
    }
    status, body = await api.post("/v1/events/call", doc)
    assert status == 202 and body["stored"] == "stream" and body["call_id"] == "c-1"
    entries = await cache.client.xrange(keys.CALL_EVENTS)
    assert [e[0].decode() for e in entries] == [body["id"]]
    assert b'"codecs":["PCMA"]' in entries[0][1][b"event"]


async def test_bad_call_event_is_400_and_not_stored(api: Api, cache: Cache) -> None:
    """A malformed call event is a 400 and is not stored."""
    status, body = await api.post("/v1/events/call", {"event": "end", "call_id": "c"})
    assert status == 400 and body["error"]["field"] == "ts"
    assert await cache.client.xlen(keys.CALL_EVENTS) == 0


async def test_api_token_guards_v1_but_not_probes(settings: Settings, pool: asyncpg.Pool) -> None:
    """With a shared secret, /v1/* needs the exact bearer token; /health, /ready and
    /metrics stay open."""
    api = await start_api(replace(settings, api_token="s3cret"))
    try:
        status, body = await api.get("/v1/acl", ip="127.0.0.10")
        assert status == 401 and body["error"]["code"] == "unauthorized"
        resp = await api.client.get(
            "/v1/acl", params={"ip": "127.0.0.10"}, headers={"Authorization": "Bearer s3cret"}
        )
        assert resp.status == 200
        wrong = await api.client.get(
            "/v1/acl", params={"ip": "127.0.0.10"}, headers={"Authorization": "Bearer s3cre"}
        )
        assert wrong.status == 401
        bare = await api.client.get(
            "/v1/acl", params={"ip": "127.0.0.10"}, headers={"Authorization": "s3cret"}
        )
        assert bare.status == 401  # the scheme is part of the check
        assert (await api.client.get("/health")).status == 200
    finally:
        await api.client.close()


async def test_late_older_report_cannot_undo_a_deregistration_in_redis(
    api: Api, cache: Cache
) -> None:
    """The database path guards order itself; the Redis script must too, because a report
    queued through a database outage reaches Redis without that guard."""
    from sipdata.decide.reports import registration_report

    live = api.service.live
    now = time.time()
    assert await live.apply_registration(PBX, registration_report(report(now)))
    gone = registration_report(report(now + 20, expires=0, cseq=4))
    assert await live.apply_registration(PBX, gone)
    late = registration_report(report(now + 10, cseq=3))
    assert not await live.apply_registration(PBX, late)
    assert await cache.client.exists(keys.registration(PBX)) == 0
    again = registration_report(report(now + 30, cseq=5))
    assert await live.apply_registration(PBX, again)
    assert await cache.client.exists(keys.registration(PBX)) == 1
    assert await cache.client.exists(keys.registration_gone(PBX)) == 0
