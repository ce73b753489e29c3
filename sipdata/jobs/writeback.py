"""Background write-back: drain the report streams into the database, keep
`sip_trunks.channels_in_use` in step with the leases, mark lapsed registrations offline.

The promise: every report acknowledged with 2xx becomes exactly one row or one
dead letter, whatever Redis, the database or the input does.

The drainer reads with a consumer group, so an entry stays in the stream until
the database holds its effect: entries read by a process that died are taken
over after `CLAIM_IDLE_MS`, and a database outage only stops the loop (with
backoff and jitter) until it is back. An entry the database refuses for good
(a constraint, a type, a value out of range: StoreRejected) or that cannot be
decoded goes to the dead-letter stream with the reason, and the rest of its
batch is written; `sipdata dead-letters` lists and replays them. No error ends
the loop, and a consumer group lost with Redis's data is created again.
Idle, it costs one blocking read of both streams; its own unacknowledged
entries are re-read only after a failure or a claim, and stale ones are looked
for every `CLAIM_EVERY_S`. Every database write is idempotent, so an entry
handled twice (a crash between the commit and the acknowledgement, or a 40003)
changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.cache.live import Entry, LiveState
from sipdata.db.writes import Records
from sipdata.decide import rating
from sipdata.decide.rating import Cdr
from sipdata.decide.reports import RegistrationReport, registration_report
from sipdata.errors import (
    CacheUnavailable,
    ConsumerGroupLost,
    InputError,
    StoreRejected,
    StoreUnavailable,
)
from sipdata.jobs.outcomes import Outcomes
from sipdata.metrics import Metrics
from sipdata.settings import Settings

log = structlog.get_logger(__name__)
CLAIM_IDLE_MS = 60_000
CLAIM_EVERY_S = 30.0
IDLE_BLOCK_MS = 1000


class Unusable(Exception):
    """An entry that no retry can write (it goes to the dead-letter stream)."""


@dataclass(frozen=True, slots=True)
class _Registration:
    trunk_id: str
    report: RegistrationReport


# What one stream entry asks of the database (None: nothing, acknowledge it).
Write = Cdr | _Registration | None


@dataclass
class DrainHealth:
    """Whether the drain loop is alive and getting through its rounds (for /ready and
    /metrics). A round that finds nothing to do counts as a good one."""

    running: bool = False
    last_ok: float = field(default_factory=time.monotonic)
    last_error: str | None = None

    def ok(self) -> None:
        self.last_ok = time.monotonic()
        self.last_error = None

    def seconds_since_ok(self) -> float:
        return time.monotonic() - self.last_ok

    def stalled(self, waiting: int, stall_s: float) -> str | None:
        """Why reports that wait are not being written, or None while all is well."""
        if waiting == 0:
            return None
        if not self.running:
            return f"{waiting} call/registration reports waiting and the drainer is not running"
        quiet = self.seconds_since_ok()
        if quiet < stall_s:
            return None
        why = f": {self.last_error}" if self.last_error else ""
        return f"{waiting} reports waiting, drainer without a good round for {quiet:.0f}s{why}"


# How long the drainer steps aside between rounds while decisions are waiting.
DRAIN_YIELD_S = 0.1


class WriteBack:
    def __init__(
        self,
        settings: Settings,
        cache: Cache,
        live: LiveState,
        records: Records,
        metrics: Metrics,
        *,
        busy: Callable[[], bool] = lambda: False,
        outcomes: Outcomes | None = None,
    ) -> None:
        self.settings = settings
        # True while decisions wait on this process's loop: acknowledged reports
        # are durable in the stream, so writing their CDRs can wait a moment
        # rather than take the core from the calls being routed (make bench: at
        # 1,500 calls/s the drain backlog and the decisions fought over one core).
        self.busy = busy
        # Quality tallies and credit settlement, after a batch's CDRs are written.
        self.outcomes = outcomes
        self.cache = cache
        self.live = live
        self.records = records
        self.metrics = metrics
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.health = DrainHealth()
        metrics.drain_quiet.set_function(self.health.seconds_since_ok)
        self._groups_ready = False
        self._next_claim = 0.0
        # Streams where this consumer may hold entries it read but did not settle.
        self._own_pending: set[str] = set()
        self.decoders: dict[str, Callable[[Entry], Write]] = {
            keys.REGISTRATION_QUEUE: _registration,
            keys.CALL_EVENTS: self._call_event,
        }
        self.streams = list(self.decoders)

    # -- decoding (pure: what an entry asks of the database) ------------------

    def _call_event(self, entry: Entry) -> Write:
        """The CDR an end or failure closes (written by _settle with the rest of the batch)."""
        fields = entry[1]
        try:
            event = orjson.loads(fields[b"event"])
            lease = orjson.loads(fields[b"lease"]) if fields.get(b"lease") else None
        except (KeyError, orjson.JSONDecodeError) as exc:
            raise Unusable(f"bad call entry: {exc}") from exc
        if event.get("event") not in ("end", "fail"):
            return None  # start and answer only moved the lease; the CDR comes with the end
        cdr = rating.cdr_of(
            event, lease, self.settings.billing_minimum_s, self.settings.billing_increment_s
        )
        if cdr is None:
            raise Unusable("no org to bill: neither the report nor the lease names one")
        return cdr

    # -- draining ------------------------------------------------------------

    async def drain_once(self, block_ms: int | None = None) -> int:
        """Settle one batch: own unsettled entries first, else new ones (waiting up to
        `block_ms` for them); how many entries were settled."""
        if not self._groups_ready:
            for stream in self.streams:
                await self.live.ensure_group(stream)
            self._groups_ready = True
        if time.monotonic() >= self._next_claim:
            for stream in self.streams:
                batch = self.settings.drain_batch
                if await self.live.claim_stale(stream, self.consumer, CLAIM_IDLE_MS, batch):
                    self._own_pending.add(stream)
            self._next_claim = time.monotonic() + CLAIM_EVERY_S
        batches: dict[str, list[Entry]] = {}
        for stream in sorted(self._own_pending):
            own = await self.live.read_own(stream, self.consumer, self.settings.drain_batch)
            if own:
                batches[stream] = own
            else:
                self._own_pending.discard(stream)
        if not batches:
            batches = await self.live.read_new(
                self.streams, self.consumer, self.settings.drain_batch, block_ms
            )
        # Read means pending until settled: if a stream's batch fails, the batches
        # of the others are not settled either and must be read again first.
        self._own_pending.update(batches)
        settled = 0
        for stream, entries in batches.items():
            settled += await self._settle(stream, entries)
            self._own_pending.discard(stream)
        return settled

    async def _settle(self, stream: str, entries: list[Entry]) -> int:
        """Handle a batch; its CDRs go to the database in one transaction. An entry is
        acknowledged only once what it stands for is durable: in the database, or in
        the dead-letter stream with the reason no retry can cure."""
        decode = self.decoders[stream]
        done: list[str] = []
        writes: list[tuple[Entry, Cdr | _Registration]] = []
        try:
            for entry in entries:
                try:
                    write = decode(entry)
                except Unusable as exc:
                    await self._dead(stream, entry, str(exc))
                    continue
                except Exception as exc:  # decoding is pure: it would fail the same way again
                    log.exception("report undecodable", stream=stream, id=entry[0])
                    await self._dead(stream, entry, f"undecodable: {exc!r}")
                    continue
                if write is None:
                    done.append(entry[0])
                else:
                    writes.append((entry, write))
            await self._write(stream, writes, done)
        finally:
            await self.live.done(stream, done)
            self.metrics.drained.labels(stream, "written").inc(len(done))
        if self.outcomes is not None and stream == keys.CALL_EVENTS:
            # After the acknowledgement: an entry stays read-but-unacknowledged (and,
            # if this process dies, waits CLAIM_IDLE_MS for another) no longer than
            # its CDR takes. A crash before this line leaves holds to lapse and a
            # batch of quality uncounted, never a report unwritten.
            cdrs = [w for _, w in writes if isinstance(w, Cdr)]
            await self.outcomes.observe(entries, cdrs)
        self.metrics.backlog.labels(stream).set(await self.live.length(stream))
        return len(entries)

    async def _write(
        self, stream: str, writes: list[tuple[Entry, Cdr | _Registration]], done: list[str]
    ) -> None:
        """Write each entry's effect, appending its id to `done` once it is durable. The
        CDRs go in one transaction; if the database refuses one of them, each is written
        on its own and only the refused ones become dead letters."""
        cdrs = [(entry, w) for entry, w in writes if isinstance(w, Cdr)]
        for entry, w in writes:
            if isinstance(w, _Registration):
                try:
                    await self.records.save_registration(w.trunk_id, w.report)
                except StoreRejected as exc:
                    await self._dead(stream, entry, exc.message)
                    continue
                done.append(entry[0])
        if not cdrs:
            return
        try:
            await self.records.write_cdrs([c for _, c in cdrs])
        except StoreRejected:
            for entry, cdr in cdrs:
                try:
                    await self.records.write_cdr(cdr)
                except StoreRejected as exc:
                    await self._dead(stream, entry, exc.message)
                    continue
                done.append(entry[0])
        else:
            done.extend(entry[0] for entry, _ in cdrs)

    async def _dead(self, stream: str, entry: Entry, why: str) -> None:
        added = await self.live.dead_letter(stream, entry, why, _identity(stream, entry))
        if added:  # a retransmitted copy of a dead report is acknowledged, not kept twice
            log.error("report dead-lettered", stream=stream, id=entry[0], why=why)
            self.metrics.drained.labels(stream, "dead").inc()

    async def waiting(self) -> int:
        """Reports not yet in the database (both streams), for /ready."""
        total = 0
        for stream in self.streams:
            n = await self.live.length(stream)
            self.metrics.backlog.labels(stream).set(n)
            total += n
        return total

    async def readiness(self, detail: dict[str, object]) -> str | None:
        """Why /ready should say no (reports wait on a stalled drainer), or None."""
        detail["reports_waiting"] = waiting = await self.waiting()
        return self.health.stalled(waiting, self.settings.drain_stall_s)

    async def drain_loop(self) -> None:
        """Drain until cancelled. No error ends the loop: an outage backs off with
        jitter, a lost consumer group is recreated, anything unexpected is logged and
        counted and the round is tried again (DrainHealth tells /ready)."""
        backoff = 0.0
        self.health.running = True
        try:
            while True:
                try:
                    await self.drain_once(block_ms=IDLE_BLOCK_MS)
                except ConsumerGroupLost as exc:
                    # Redis lost its data: a new group reads what the stream still holds.
                    self._groups_ready = False
                    self._own_pending.clear()
                    self._failed("group_lost", exc.message)
                    log.warning("consumer group lost, recreating it", error=exc.message)
                    continue
                except Exception as exc:
                    # A read whose reply was lost (Redis killed, a timeout) still handed
                    # its entries to this consumer; ">" never delivers them again, so
                    # re-read our own pending ones next instead of waiting for the claim.
                    self._own_pending.update(self.streams)
                    if isinstance(exc, StoreUnavailable | CacheUnavailable):
                        self._groups_ready = False  # a restarted Redis may have lost them
                        kind = "redis" if isinstance(exc, CacheUnavailable) else "database"
                        message = exc.message
                    else:
                        log.exception("drain round failed unexpectedly")
                        kind, message = "unexpected", repr(exc)
                    self._failed(kind, message)
                else:
                    backoff = 0.0
                    self.health.ok()
                    if self.busy():
                        await asyncio.sleep(DRAIN_YIELD_S)
                    continue
                backoff = min(self.settings.drain_backoff_max_s, max(0.5, backoff * 2))
                log.warning("drain paused", error=message, retry_in_s=round(backoff, 1))
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
        finally:
            self.health.running = False

    def _failed(self, kind: str, message: str) -> None:
        self.health.last_error = message
        self.metrics.inc(self.metrics.drain_errors, kind)

    # -- periodic jobs ---------------------------------------------------------

    async def sync_channels(self) -> dict[str, int] | None:
        """The live counts into sip_trunks.channels_in_use; None (and the database left
        as it is) while Redis's leases are lost: those saved counts are what the warmer
        restores them from."""
        counts = await self.live.channel_counts()
        if counts is None:
            log.warning("channel counts not saved: Redis lost its leases, restore pending")
            return None
        await self.records.sync_channels(counts)
        return counts

    async def sweep(self) -> list[str]:
        gone = await self.records.sweep_registrations(dt.datetime.now(dt.UTC))
        await self.cache.prune_online()
        return gone

    async def _every(self, interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            try:
                await job()
            except (StoreUnavailable, CacheUnavailable) as exc:
                log.warning("write-back job failed", job=job.__name__, error=exc.message)
            except Exception:  # the next round may fare better; the loop must not die
                log.exception("write-back job failed unexpectedly", job=job.__name__)
            await asyncio.sleep(interval_s)

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        return [
            self.drain_loop(),
            self._every(self.settings.channels_sync_s, self.sync_channels),
            self._every(self.settings.sweep_interval_s, self.sweep),
        ]


def _registration(entry: Entry) -> Write:
    try:
        doc = orjson.loads(entry[1][b"report"])
        return _Registration(str(doc["trunk_id"]), registration_report(doc))
    except (KeyError, TypeError, orjson.JSONDecodeError, InputError) as exc:
        raise Unusable(f"bad registration entry: {exc}") from exc


def _identity(stream: str, entry: Entry) -> str:
    """What makes two entries the same report (Kamailio's report key for a call; the
    ordering fields for a registration); the entry id when it cannot be read."""
    fields = entry[1]
    try:
        if stream == keys.CALL_EVENTS:
            event = orjson.loads(fields[b"event"])
            return f"call:{event['call_id']}:{event['event']}"
        doc = orjson.loads(fields[b"report"])
        return f"reg:{doc['trunk_id']}:{doc['call_id']}:{doc['cseq']}:{doc['ts']}"
    except (KeyError, TypeError, orjson.JSONDecodeError):
        return f"{stream}:{entry[0]}"
