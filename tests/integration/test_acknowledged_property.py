"""The write-back's promise as a property, under a randomised schedule of faults:

    every report acknowledged with 2xx becomes exactly one CDR or one dead letter,
    whatever Redis, the database or the input does.

Each seed drives real servers (a Redis with AOF `appendfsync always`, PostgreSQL
behind a cuttable proxy, the app with its drain loop running) through a bounded
sequence of steps: good reports, poison reports (a row the database refuses),
malformed ones, retransmissions, Redis killed -9 and restarted from its files, the
database cut and restored. Reports Kamailio would keep (`kept`, 503) are sent again
later, as Kamailio does. At the end everything is restored and drained, and the
promise is checked report by report."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import orjson
import pytest

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.settings import Settings

from .calls import call_report, eventually
from .conftest import Api, RedisServer, start_api, warmer
from .faults import CuttableProxy

pytestmark = pytest.mark.usefixtures("warm")

STEPS = 30
NOBODY = str(uuid.uuid4())


@dataclass
class Ledger:
    """What the client was told about each report, by report key."""

    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)  # kept or 503: Kamailio sends it again
    poison: set[str] = field(default_factory=set)


class Schedule:
    def __init__(self, api: Api, redis: RedisServer, proxy: CuttableProxy, seed: int) -> None:
        self.api = api
        self.redis = redis
        self.proxy = proxy
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        self.seq = 0
        self.t0 = time.time() - 120

    def new_report(self, *, poison: bool = False, malformed: bool = False) -> dict[str, Any]:
        self.seq += 1
        call_id = f"p{self.seq}"
        event = self.rng.choice(["end", "fail"])
        extra: dict[str, Any] = {"org_id": NOBODY} if poison else {}
        if event == "fail":
            extra["sip_code"] = self.rng.choice([404, 486, 503])
        report = call_report(call_id, event, self.t0, **extra)
        if malformed:
            del report["ts"]
        key = f"{call_id}:{event}"
        report["report_key"] = key
        self.ledger.reports[key] = report
        if poison:
            self.ledger.poison.add(key)
        return report

    async def send(self, reports: list[dict[str, Any]]) -> None:
        """One batch, and what its answer says about each report."""
        keys_sent = {r["report_key"] for r in reports}
        try:
            resp = await self.api.client.post("/v1/events/calls", json={"reports": reports})
            body = await resp.json()
        except OSError:
            self.ledger.pending |= keys_sent
            return
        if resp.status != 202:
            assert resp.status == 503, body  # infrastructure, never a 4xx for good input
            self.ledger.pending |= keys_sent - self.ledger.acked
            return
        refused = {r["report_key"] for r in body["refused"]}
        stored = set(body["done"]) - refused
        self.ledger.refused |= refused
        self.ledger.acked |= stored
        self.ledger.pending = (self.ledger.pending | set(body["kept"])) - stored - refused

    async def step(self) -> None:
        action = self.rng.choice(
            ["good", "good", "good", "poison", "malformed", "resend", "redis", "db", "pause"]
        )
        if action == "good":
            await self.send([self.new_report() for _ in range(self.rng.randint(1, 6))])
        elif action == "poison":
            await self.send([self.new_report(), self.new_report(poison=True), self.new_report()])
        elif action == "malformed":
            await self.send([self.new_report(malformed=True), self.new_report()])
        elif action == "resend":  # what Kamailio's retry timer does, retransmissions too
            again = set(self.rng.sample(sorted(self.ledger.acked), min(3, len(self.ledger.acked))))
            again |= self.ledger.pending
            if again:
                await self.send([self.ledger.reports[k] for k in sorted(again)])
        elif action == "redis":
            self.redis.kill()
            await asyncio.sleep(self.rng.uniform(0, 0.3))
            if self.rng.random() < 0.5:  # sometimes a report arrives while it is down
                await self.send([self.new_report()])
            self.redis.start()
        elif action == "db":
            if self.proxy.server is None:
                await self.proxy.start()
            else:
                await self.proxy.cut()
        await asyncio.sleep(self.rng.uniform(0, 0.15))

    async def settle(self) -> None:
        """Everything back, every kept report sent again until it is stored."""
        if self.proxy.server is None:
            await self.proxy.start()
        while self.ledger.pending:
            await self.send([self.ledger.reports[k] for k in sorted(self.ledger.pending)])
            await asyncio.sleep(0.1)


async def outcome(pool: asyncpg.Pool, cache: Cache) -> tuple[dict[str, int], dict[str, int]]:
    """CDR rows and dead letters per Call-ID."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT call_id, count(*) AS n FROM cdrs GROUP BY call_id")
    written = {r["call_id"]: r["n"] for r in rows}
    dead: dict[str, int] = {}
    for _, fields in await cache.client.xrange(keys.CALL_EVENTS_DEAD):
        call_id = orjson.loads(fields[b"event"])["call_id"]
        dead[call_id] = dead.get(call_id, 0) + 1
    return written, dead


@pytest.mark.parametrize("seed", range(1, 9))
async def test_every_acknowledged_report_becomes_one_row_or_one_dead_letter(
    settings: Settings, durable_redis: RedisServer, pool: asyncpg.Pool, seed: int
) -> None:
    """The promise, under a random schedule of kills, cuts, poison and retransmissions."""
    proxy = CuttableProxy(5432)
    await proxy.start()
    db = settings.database_url.rsplit("/", 1)[1]
    settings = replace(
        settings,
        redis_url=durable_redis.url,
        database_url=f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}",
        writeback_enabled=True,
        drain_backoff_max_s=0.5,
    )
    cache = Cache.from_settings(settings)
    await warmer(settings, cache, pool).load_once()
    api = await start_api(settings)
    schedule = Schedule(api, durable_redis, proxy, seed)
    try:
        for _ in range(STEPS):
            await schedule.step()
        await schedule.settle()
        ledger = schedule.ledger
        assert ledger.acked, "the schedule acknowledged nothing: it tested nothing"

        async def drained() -> bool:
            lengths = [await cache.client.xlen(s) for s in (keys.CALL_EVENTS,)]
            return sum(lengths) == 0

        await eventually(drained, "the streams to drain", timeout_s=60)
        written, dead = await outcome(pool, cache)
        for key in sorted(ledger.acked):
            call_id = ledger.reports[key]["call_id"]
            got = (written.get(call_id, 0), dead.get(call_id, 0))
            expected = (0, 1) if key in ledger.poison else (1, 0)
            assert got == expected, (key, got)
        for key in ledger.refused:  # malformed: refused, and nothing was stored
            call_id = ledger.reports[key]["call_id"]
            assert (written.get(call_id, 0), dead.get(call_id, 0)) == (0, 0), key
    finally:
        await api.client.close()
        await cache.close()
        await proxy.cut()
