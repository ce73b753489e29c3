"""Every report acknowledged with 2xx becomes exactly one CDR or one dead letter: poison
reports, errors the drainer does not expect, a consumer group lost with Redis's data,
and a Redis killed mid-burst, on the real servers with the real drain loop running."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import orjson
import pytest

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.db.provision import demo_id
from sipdata.settings import Settings

from .calls import call_report, cdrs, eventually
from .conftest import Api, RedisServer, start_api, warmer
from .test_cli import run

pytestmark = pytest.mark.usefixtures("warm")

NOBODY = str(uuid.uuid4())  # an org and a trunk no database row has


@pytest.fixture
async def draining(settings: Settings) -> AsyncIterator[Api]:
    """The app as `serve` runs it: the drain loop, channel sync and sweeper running."""
    api = await start_api(
        replace(settings, writeback_enabled=True, drain_backoff_max_s=0.5, drain_stall_s=0.5)
    )
    yield api
    await api.client.close()


def keyed(report: dict[str, Any]) -> dict[str, Any]:
    return {**report, "report_key": f"{report['call_id']}:{report['event']}"}


async def dead_letters(cache: Cache) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await cache.client.xrange(keys.CALL_EVENTS_DEAD)]


async def acknowledged_ends(api: Api, prefix: str, n: int = 5) -> list[str]:
    """`n` end reports of calls that ended 70 s ago, each acknowledged (202)."""
    ids = [f"{prefix}-{i}" for i in range(n)]
    t0 = time.time() - 70
    for call_id in ids:
        assert (await api.post("/v1/events/call", call_report(call_id, "end", t0)))[0] == 202
    return ids


async def cdr_count(pool: asyncpg.Pool, call_id: str) -> int:
    return len(await cdrs(pool, call_id))


@pytest.mark.parametrize(
    "poison",
    [{"org_id": NOBODY}, {"trunk_id": NOBODY}],
    ids=["unknown-org", "unknown-trunk"],
)
async def test_a_report_the_database_refuses_is_dead_lettered_and_the_drain_goes_on(
    draining: Api, pool: asyncpg.Pool, cache: Cache, poison: dict[str, str]
) -> None:
    """A well-formed end naming a row that does not exist sits between two good ones in
    one batch: the good ones get their CDRs, the bad one a dead letter with the
    database's reason, and reports sent afterwards are still written."""
    t0 = time.time() - 70
    batch = [
        keyed(call_report("before", "end", t0)),
        keyed(call_report("poison", "end", t0, **poison)),
        keyed(call_report("after", "end", t0)),
    ]
    status, answer = await draining.post("/v1/events/calls", {"reports": batch})
    assert status == 202 and len(answer["done"]) == 3, answer
    await eventually(lambda: dead_letters(cache), "the dead letter")
    status, _ = await draining.post("/v1/events/call", call_report("later", "end", t0))
    assert status == 202
    for call_id in ("before", "after", "later"):
        await eventually(lambda c=call_id: cdr_count(pool, c), f"the CDR of {call_id}")
    assert await cdr_count(pool, "poison") == 0
    (dead,) = await dead_letters(cache)
    assert dead[b"from"] == keys.CALL_EVENTS.encode() and b"23503" in dead[b"why"]
    assert b'"poison"' in dead[b"event"]


async def test_a_registration_for_a_vanished_trunk_is_dead_lettered(
    draining: Api, pool: asyncpg.Pool, cache: Cache
) -> None:
    """A queued registration whose trunk was deleted meanwhile cannot be written by any
    retry: it becomes a dead letter, and the queue keeps draining."""
    live = draining.service.live
    report = {
        "username": "gone-pbx",
        "contact": "sip:gone@127.0.0.30",
        "source_ip": "127.0.0.30",
        "call_id": "r1",
        "cseq": 1,
        "expires": 300,
        "ts": time.time(),
    }
    await live.queue_registration({"trunk_id": NOBODY, **report})
    await live.queue_registration(
        {"trunk_id": demo_id("trunk:acme-pbx"), **report, "username": "acme-pbx"}
    )

    async def written() -> Any:
        async with pool.acquire() as conn:
            return await conn.fetchval(
                "SELECT count(*) FROM trunk_registrations WHERE trunk_id = $1::uuid",
                demo_id("trunk:acme-pbx"),
            )

    await eventually(written, "the good registration")
    (dead,) = await eventually(lambda: dead_letters(cache), "the dead letter")
    assert dead[b"from"] == keys.REGISTRATION_QUEUE.encode() and b"23503" in dead[b"why"]
    assert await cache.client.xlen(keys.REGISTRATION_QUEUE) == 0


async def test_an_unexpected_error_is_counted_retried_and_shown_by_ready(
    draining: Api, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CDR write fails with an error nobody planned for (injected: a state the real
    database cannot be put in on demand). The drain task survives and keeps retrying,
    /ready names the stall and /metrics counts it; once the fault clears the CDR lands."""
    records = draining.writeback.records
    real = records.write_cdrs
    broken = True

    async def write_cdrs(batch: Any) -> None:
        if broken:
            raise RuntimeError("a bug in the write path")
        await real(batch)

    monkeypatch.setattr(records, "write_cdrs", write_cdrs)
    status, _ = await draining.post("/v1/events/call", call_report("x", "end", time.time() - 70))
    assert status == 202

    async def unready() -> Any:
        resp = await draining.client.get("/ready")
        body = await resp.json()
        stalled = [r for r in body["reasons"] if "reports waiting" in r]
        return resp.status == 503 and stalled and body

    body = await eventually(unready, "/ready to name the stalled drainer")
    assert any("a bug in the write path" in r for r in body["reasons"]), body
    metrics = await (await draining.client.get("/metrics")).text()
    assert 'sipdata_drain_errors_total{kind="unexpected"}' in metrics
    broken = False
    await eventually(lambda: cdr_count(pool, "x"), "the CDR after the fault cleared")

    async def ready() -> bool:
        return (await draining.client.get("/ready")).status == 200

    await eventually(ready, "/ready to recover")


async def test_a_consumer_group_lost_with_redis_data_is_recreated(
    private_settings: Settings, redis_server: RedisServer, pool: asyncpg.Pool
) -> None:
    """Redis restarts empty while the drainer runs: the next reports are acknowledged
    into a stream with no consumer group. The drainer recreates the group on the
    NOGROUP error and writes them, without a restart of sipdata."""
    settings = replace(private_settings, writeback_enabled=True, drain_backoff_max_s=0.5)
    cache = Cache.from_settings(settings)
    await warmer(settings, cache, pool).load_once()
    api = await start_api(settings)
    try:
        t0 = time.time() - 70
        assert (await api.post("/v1/events/call", call_report("c0", "end", t0)))[0] == 202
        await eventually(lambda: cdr_count(pool, "c0"), "the first CDR")
        redis_server.stop()
        redis_server.start()
        ids = [f"c{i}" for i in range(1, 6)]
        for call_id in ids:
            status, body = await api.post("/v1/events/call", call_report(call_id, "end", t0))
            assert status == 202, body
        for call_id in ids:
            await eventually(lambda c=call_id: cdr_count(pool, c), f"the CDR of {call_id}")
        assert api.writeback.health.running
    finally:
        await api.client.close()
        await cache.close()


async def test_redis_killed_mid_burst_loses_no_acknowledged_report(
    settings: Settings, durable_redis: RedisServer, pool: asyncpg.Pool
) -> None:
    """With AOF and `appendfsync always` (docs/operations.md), Redis is killed -9 in the
    middle of 200 end reports and restarted from its files: every report acknowledged
    with 2xx (into the stream, or straight to the database while Redis was away) has
    exactly one CDR; none that was refused has more than one."""
    settings = replace(
        settings, redis_url=durable_redis.url, writeback_enabled=True, drain_backoff_max_s=0.5
    )
    cache = Cache.from_settings(settings)
    await warmer(settings, cache, pool).load_once()
    api = await start_api(settings)
    acked: list[str] = []
    refused: list[str] = []
    t0 = time.time() - 70

    async def send(i: int) -> None:
        call_id = f"burst-{i}"
        status, _ = await api.post("/v1/events/call", call_report(call_id, "end", t0))
        (acked if status == 202 else refused).append(call_id)

    async def burst() -> None:
        for start in range(0, 200, 8):
            await asyncio.gather(*(send(i) for i in range(start, start + 8)))

    try:
        sender = asyncio.create_task(burst())
        await eventually(lambda: asyncio.sleep(0, len(acked) >= 50), "the burst under way")
        durable_redis.kill()
        await asyncio.sleep(0.2)
        durable_redis.start()
        await sender
        assert len(acked) >= 100, (len(acked), len(refused))
        for call_id in acked:
            await eventually(lambda c=call_id: cdr_count(pool, c), f"the CDR of {call_id}")
        for call_id in acked:
            assert await cdr_count(pool, call_id) == 1, call_id
        for call_id in refused:
            assert await cdr_count(pool, call_id) <= 1, call_id
    finally:
        await api.client.close()
        await cache.close()


async def test_dead_letters_are_listed_and_replayed_after_the_data_is_fixed(
    draining: Api, settings: Settings, pool: asyncpg.Pool, cache: Cache
) -> None:
    """The operator's way out (docs/operations.md): `sipdata dead-letters list` shows the
    report and why; once the missing organization exists, `replay --all` sends it back
    and the drainer writes its CDR, once."""
    org = str(uuid.uuid4())
    report = call_report("late-org", "end", time.time() - 70, org_id=org)
    assert (await draining.post("/v1/events/call", report))[0] == 202
    await eventually(lambda: dead_letters(cache), "the dead letter")

    listed = await asyncio.to_thread(run, settings, "dead-letters", "list")
    assert listed.returncode == 0, listed.stderr
    (entry,) = orjson.loads(listed.stdout)
    assert entry["event"]["call_id"] == "late-org" and entry["from"] == keys.CALL_EVENTS
    assert "23503" in entry["why"] and entry["at"].startswith("20")

    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO organizations (id, name) VALUES ($1, 'Late')", org)
    replayed = await asyncio.to_thread(run, settings, "dead-letters", "replay", "--all")
    assert replayed.returncode == 0 and orjson.loads(replayed.stdout) == {"replayed": 1}
    await eventually(lambda: cdr_count(pool, "late-org"), "the replayed CDR")
    assert await dead_letters(cache) == []
    again = await asyncio.to_thread(run, settings, "dead-letters", "replay", entry["id"])
    assert again.returncode == 1 and orjson.loads(again.stdout)["not_found"] == 1
    assert await cdr_count(pool, "late-org") == 1


async def test_a_poison_report_sent_twice_is_one_dead_letter(draining: Api, cache: Cache) -> None:
    """Kamailio may send a report again after it was acknowledged (a lost answer): both
    copies are acknowledged, and as a good report makes one CDR, a poison one makes
    one dead letter, not two."""
    report = call_report("twice-poison", "end", time.time() - 70, org_id=NOBODY)

    async def settled() -> bool:
        return await cache.client.xlen(keys.CALL_EVENTS) == 0 and bool(await dead_letters(cache))

    for _ in range(2):  # the second copy arrives after the first was dead-lettered
        assert (await draining.post("/v1/events/call", report))[0] == 202
        await eventually(settled, "the copy drained")
    assert len(await dead_letters(cache)) == 1


@pytest.mark.parametrize(
    "args",
    [
        ("replay", "abc"),
        ("replay", "-"),
        ("replay",),
        ("list", "--limit", "0"),
        ("list", "--after", "yesterday"),
    ],
    ids=["bad-id", "dash-id", "nothing-to-replay", "zero-limit", "bad-after"],
)
def test_dead_letter_commands_refuse_bad_arguments_naming_them(
    settings: Settings, args: tuple[str, ...]
) -> None:
    """A mistyped id or limit is refused by the CLI (exit 2, the argument named), never
    sent to Redis to come back as a misleading "redis failed"."""
    result = run(settings, "dead-letters", *args)
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr


async def test_entries_read_but_never_received_are_drained_after_a_redis_error(
    settings: Settings, durable_redis: RedisServer, pool: asyncpg.Pool
) -> None:
    """A read whose reply is lost (Redis killed mid-read) has still handed its entries to
    the drainer's consumer, and ">" never delivers them again. After the Redis error the
    drainer re-reads its own pending entries at once, instead of waiting a minute for the
    stale-entry claim. (The kill -9 burst test found this at random.)"""
    settings = replace(settings, redis_url=durable_redis.url, drain_backoff_max_s=0.5)
    cache = Cache.from_settings(settings)
    await warmer(settings, cache, pool).load_once()
    api = await start_api(settings)  # write-back off: the test runs the loop itself
    loop: asyncio.Task[None] | None = None
    try:
        ids = await acknowledged_ends(api, "lost-reply")
        writeback = api.writeback
        await writeback.live.ensure_group(keys.CALL_EVENTS)
        # The read Redis answered but the drainer never received:
        await cache.client.xreadgroup(
            keys.DRAIN_GROUP, writeback.consumer, {keys.CALL_EVENTS: ">"}, count=10
        )
        loop = asyncio.create_task(writeback.drain_loop())
        await asyncio.sleep(0.3)
        assert await cdr_count(pool, ids[0]) == 0  # ">" delivers nothing: they are ours
        durable_redis.stop()  # the error that follows a lost reply
        await asyncio.sleep(0.3)
        durable_redis.start()
        for call_id in ids:
            await eventually(lambda c=call_id: cdr_count(pool, c), call_id, timeout_s=15)
    finally:
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await api.client.close()
        await cache.close()


async def test_a_drainer_that_steps_aside_for_decisions_still_drains_everything(
    settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """While decisions wait on a late loop the drainer pauses between rounds (the
    reports are durable in the stream already); even if that lasted for ever, every
    acknowledged report still becomes its CDR: stepping aside slows it, never stops it."""
    await warmer(settings, cache, pool).load_once()
    api = await start_api(settings)  # write-back off: the test runs the loop itself
    loop: asyncio.Task[None] | None = None
    try:
        ids = await acknowledged_ends(api, "aside")
        writeback = api.writeback
        asked: list[bool] = []

        def busy() -> bool:
            asked.append(True)
            return True  # decisions always waiting

        writeback.busy = busy
        loop = asyncio.create_task(writeback.drain_loop())
        for call_id in ids:
            await eventually(lambda c=call_id: cdr_count(pool, c), call_id, timeout_s=15)
        assert asked  # it did ask, between rounds
    finally:
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await api.client.close()
