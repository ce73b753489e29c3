"""Write-back on real PostgreSQL and Redis: CDRs rated once, channel counts, the sweeper,
reports queued through a database outage, and 40001 retried."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.db.provision import demo_id
from sipdata.db.writes import Records
from sipdata.decide.reports import registration_report
from sipdata.errors import StoreUnavailable
from sipdata.settings import Settings

from .calls import ACME_IP, call_report, cdrs, drain
from .conftest import Api, start_api
from .faults import CuttableProxy, api_behind

pytestmark = pytest.mark.usefixtures("warm")

PBX = demo_id("trunk:acme-pbx")


async def test_answered_call_gets_one_rated_cdr(api: Api, pool: asyncpg.Pool) -> None:
    """Rated at the answering carrier's rate (bravo, 0.005/min): 61.5 s talk -> 62 s,
    billed 66 s at 6/6, cost 0.0055."""
    t0 = time.time() - 120
    assert (await api.decide(source_ip="127.0.0.10", to="12125551234", call_id="rated"))[
        "verdict"
    ] == "route"
    # The lease's destinations land a few ms after the answer (a batched write); the
    # end report, seconds later in real life, reads them then.
    await api.service.lease_docs.aclose()
    sdp = "v=0\r\nm=audio 4000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    await api.post("/v1/events/call", call_report("rated", "start", t0))
    await api.post(
        "/v1/events/call",
        call_report("rated", "answer", t0, answer_ts=t0 + 2, destination_ip="127.0.0.102"),
    )
    end = call_report("rated", "end", t0, answer_ts=t0 + 2, destination_ip="127.0.0.102", sdp=sdp)
    end["cause"] = "callee_bye"
    await api.post("/v1/events/call", end)
    await api.post("/v1/events/call", end)  # a retransmitted report
    await drain(api)
    (row,) = await cdrs(pool, "rated")
    assert (row["duration"], row["billable_duration"]) == (62, 66)
    assert row["rate"] == Decimal("0.005") and row["cost"] == Decimal("0.0055")
    assert row["sip_response_code"] == 200 and row["termination_cause"] == "callee_bye"
    assert str(row["destination_ip"]) == "127.0.0.102" and not row["inbound"]
    assert row["codecs_used"] == ["PCMA", "telephone-event"]
    assert row["metadata"]["carrier_id"] == demo_id("org:bravo")


async def test_failed_call_cdr_carries_the_sip_code(api: Api, pool: asyncpg.Pool) -> None:
    """A failed call's CDR has its SIP code, no duration and no cost."""
    t0 = time.time() - 10
    await api.decide(source_ip="127.0.0.10", to="12125551234", call_id="busy")
    await api.post(
        "/v1/events/call", call_report("busy", "fail", t0, sip_code=486, sip_reason="Busy Here")
    )
    await drain(api)
    (row,) = await cdrs(pool, "busy")
    assert (row["sip_response_code"], row["duration"], row["cost"]) == (486, 0, None)
    assert row["termination_cause"] == "failed"


async def test_a_party_longer_than_the_cdr_column_is_clipped_not_lost(
    api: Api, pool: asyncpg.Pool, cache: Cache
) -> None:
    """cdrs.from_number is VARCHAR(50); a From user of 80 characters still bills the
    call, clipped, instead of the database refusing the CDR."""
    caller = "a-very-long-display-user-" * 3 + "x" * 5
    await api.post(
        "/v1/events/call", call_report("long", "end", time.time() - 70, **{"from": caller})
    )
    await drain(api)
    (row,) = await cdrs(pool, "long")
    assert row["from_number"] == caller[:50]
    assert await cache.client.xlen(keys.CALL_EVENTS_DEAD) == 0


async def test_entry_handled_twice_writes_one_cdr(api: Api, pool: asyncpg.Pool) -> None:
    """A crash between the commit and the acknowledgement re-delivers the entry."""
    await api.post("/v1/events/call", call_report("twice", "end", time.time() - 70))
    wb = api.writeback
    await wb.live.ensure_group(keys.CALL_EVENTS)
    entries = (await wb.live.read_new([keys.CALL_EVENTS], "c1", 10, None))[keys.CALL_EVENTS]
    await wb._settle(keys.CALL_EVENTS, entries + entries)  # twice within one batch
    await wb._settle(keys.CALL_EVENTS, entries)  # and delivered again later
    assert len(await cdrs(pool, "twice")) == 1


async def test_a_batch_of_ends_is_written_in_one_transaction(
    api: Api, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drained batch of CDRs is one database transaction."""
    t0 = time.time() - 70
    for i in range(30):
        await api.post("/v1/events/call", call_report(f"many-{i}", "end", t0))
    transactions = 0
    write = api.writeback.records.write_cdrs

    async def counted(batch: Any) -> None:
        nonlocal transactions
        transactions += 1
        await write(batch)

    monkeypatch.setattr(api.writeback.records, "write_cdrs", counted)
    assert await api.writeback.drain_once() == 30
    assert transactions == 1
    async with pool.acquire() as conn:
        n = await conn.fetchval("SELECT count(*) FROM cdrs WHERE call_id LIKE 'many-%'")
    assert n == 30


async def test_report_without_an_org_goes_to_dead_letters(api: Api, cache: Cache) -> None:
    """An end no org can be billed for becomes a dead letter and leaves the stream."""
    doc = {"event": "end", "call_id": "orphan", "ts": time.time()}
    await api.post("/v1/events/call", doc)
    await drain(api)
    assert await cache.client.xlen(keys.CALL_EVENTS_DEAD) == 1
    assert await cache.client.xlen(keys.CALL_EVENTS) == 0


async def test_channel_counts_are_written_back(api: Api, pool: asyncpg.Pool) -> None:
    """sip_trunks.channels_in_use follows the live leases, down to 0 when calls end or fail."""

    async def in_use() -> int:
        async with pool.acquire() as conn:
            return int(
                await conn.fetchval(
                    "SELECT channels_in_use FROM sip_trunks WHERE id = $1::uuid", ACME_IP
                )
            )

    for i in range(3):
        await api.decide(source_ip="127.0.0.10", to="12125551234", call_id=f"ch-{i}")
    assert await api.writeback.sync_channels() == {ACME_IP: 3}
    assert await in_use() == 3
    await api.post("/v1/events/call", call_report("ch-0", "end", time.time() - 70))
    await api.writeback.sync_channels()
    assert await in_use() == 2
    for i in (1, 2):
        await api.post("/v1/events/call", call_report(f"ch-{i}", "fail", time.time() - 5))
    await api.writeback.sync_channels()
    assert await in_use() == 0


async def test_sweeper_marks_lapsed_registrations_offline(
    api: Api, pool: asyncpg.Pool, cache: Cache
) -> None:
    """A registration past its expiry is marked offline in the database and leaves trunks:online."""
    past = time.time() - 600
    doc = {
        "username": "acme-pbx",
        "contact": "sip:acme-pbx@127.0.0.20:5070",
        "source_ip": "127.0.0.20",
        "call_id": "old",
        "cseq": 1,
        "expires": 60,
        "ts": past,
    }
    await api.post("/v1/events/register", doc)
    assert await api.writeback.sweep() == [PBX]
    async with pool.acquire() as conn:
        status = await conn.fetchval(
            "SELECT status FROM trunk_registrations WHERE trunk_id = $1::uuid", PBX
        )
    assert status == "offline"
    assert not await cache.client.sismember(keys.TRUNKS_ONLINE, PBX)


async def test_postgres_outage_every_acknowledged_report_lands_exactly_once(
    settings: Settings, pool: asyncpg.Pool, cache: Cache
) -> None:
    """PostgreSQL goes away (its connections cut) during a burst of reports: each is
    acknowledged from Redis; once it is back the drainer writes each exactly once."""
    proxy = CuttableProxy(5432)
    api = await api_behind(proxy, settings)
    try:
        await proxy.cut()
        t0 = time.time() - 300
        for i in range(10):
            status, body = await api.post(
                "/v1/events/register",
                {
                    "username": "acme-pbx",
                    "contact": f"sip:acme-pbx@127.0.0.20:{6000 + i}",
                    "source_ip": "127.0.0.20",
                    "call_id": "reg",
                    "cseq": 10 + i,
                    "expires": 3600,
                    "ts": t0 + i,
                },
            )
            assert status == 200 and body["stored"] == "queue", body
        call_ids = [f"burst-{i}" for i in range(20)]
        for call_id in call_ids:
            status, body = await api.post("/v1/events/call", call_report(call_id, "end", t0))
            assert status == 202, body
        with pytest.raises(StoreUnavailable):
            await api.writeback.drain_once()
        await proxy.start()
        await drain(api)
        await drain(api)  # nothing left, nothing doubled
    finally:
        await api.client.close()
        await proxy.cut()
    for call_id in call_ids:
        assert len(await cdrs(pool, call_id)) == 1, call_id
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT contact, cseq FROM trunk_registrations WHERE trunk_id = $1::uuid", PBX
        )
    assert (row["contact"], row["cseq"]) == ("sip:acme-pbx@127.0.0.20:6009", 19)
    assert await cache.client.xlen(keys.REGISTRATION_QUEUE) == 0
    assert await cache.client.xlen(keys.CALL_EVENTS) == 0


async def test_serialization_failure_from_a_real_conflict_is_retried(pool: asyncpg.Pool) -> None:
    """A concurrent serializable transaction updates the row first: PostgreSQL aborts the
    registration write with 40001, and it is retried, not lost."""
    retries: list[int] = []
    records = Records(pool, on_retry=lambda: retries.append(1))

    def reg(ts: float, contact: str) -> Any:
        return registration_report(
            {
                "username": "acme-pbx",
                "contact": contact,
                "source_ip": "127.0.0.20",
                "call_id": "c",
                "cseq": int(ts),
                "expires": 300,
                "ts": ts,
            }
        )

    now = time.time()
    assert await records.save_registration(PBX, reg(now, "sip:a@127.0.0.20"))
    async with pool.acquire() as other:
        tx = other.transaction(isolation="serializable")
        await tx.start()
        await other.execute(
            "UPDATE trunk_registrations SET user_agent = 'other' WHERE trunk_id = $1::uuid", PBX
        )
        write = asyncio.create_task(records.save_registration(PBX, reg(now + 1, "sip:b@h")))
        await asyncio.sleep(0.3)  # the write now waits on the other transaction's row lock
        await tx.commit()
        assert await write is True
    assert retries
    async with pool.acquire() as conn:
        contact = await conn.fetchval(
            "SELECT contact FROM trunk_registrations WHERE trunk_id = $1::uuid", PBX
        )
    assert contact == "sip:b@h"


async def test_restored_after_redis_restart(
    private_settings: Settings, redis_server: Any, pool: asyncpg.Pool
) -> None:
    """Redis restarts empty during traffic: decisions keep routing (database reads), the
    next warm rebuilds the generation and the live registrations, and admission starts
    counting again from the calls admitted after the restart."""
    from sipdata.cache.client import Cache as CacheClass

    from .conftest import warmer

    cache = CacheClass.from_settings(private_settings)
    await warmer(private_settings, cache, pool).load_once()
    api = await start_api(private_settings)
    try:
        await api.post(
            "/v1/events/register",
            {
                "username": "acme-pbx",
                "contact": "sip:acme-pbx@127.0.0.20:5070",
                "source_ip": "127.0.0.20",
                "call_id": "r",
                "cseq": 1,
                "expires": 3600,
                "ts": time.time(),
            },
        )
        assert (await api.decide(source_ip="127.0.0.10", to="12125551234"))["verdict"] == "route"
        redis_server.stop()
        redis_server.start()
        during = await api.decide(source_ip="127.0.0.10", to="12125551234", call_id="x")
        assert during["verdict"] == "route"
        beat = await warmer(private_settings, cache, pool).load_once()
        assert beat is not None and beat["registrations_restored"] == 1
        await api.refresh()
        did = await api.decide(source_ip="127.0.0.101", to="12125550100", call_id="y")
        assert did["routing"]["routes"][0]["uri"] == "sip:acme-pbx@127.0.0.20:5070"
        admitted = await api.decide(source_ip="127.0.0.10", to="12125551234", call_id="z")
        assert admitted["explain"]["admission"] == "ok"
    finally:
        await api.client.close()
        await cache.close()
