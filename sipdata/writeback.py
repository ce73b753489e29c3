"""Background write-back: drain the report streams into the database, keep
`sip_trunks.channels_in_use` in step with the leases, mark lapsed registrations offline.

The drainer reads with a consumer group, so an entry stays in the stream until
the database holds its effect: entries read by a process that died are taken
over after `CLAIM_IDLE_MS`, and a database outage only stops the loop (with
backoff and jitter) until it is back. Idle, it costs one blocking read of both
streams; its own unacknowledged entries are re-read only after a failure or a
claim, and stale ones are looked for every `CLAIM_EVERY_S`. Every database write is idempotent, so
an entry handled twice (a crash between the commit and the acknowledgement,
or a 40003) changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
import structlog

from sipdata import keys
from sipdata.cache import Cache
from sipdata.decide import rating
from sipdata.decide.rating import Cdr
from sipdata.decide.reports import registration_report
from sipdata.errors import CacheUnavailable, InputError, StoreUnavailable
from sipdata.live import Entry, LiveState
from sipdata.metrics import Metrics
from sipdata.records import Records
from sipdata.settings import Settings

log = structlog.get_logger(__name__)
CLAIM_IDLE_MS = 60_000
CLAIM_EVERY_S = 30.0
IDLE_BLOCK_MS = 1000


class Unusable(Exception):
    """An entry that no retry can write (it goes to the dead-letter stream)."""


class WriteBack:
    def __init__(
        self,
        settings: Settings,
        cache: Cache,
        live: LiveState,
        records: Records,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.live = live
        self.records = records
        self.metrics = metrics
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self._groups_ready = False
        self._next_claim = 0.0
        # Streams where this consumer may hold entries it read but did not settle.
        self._own_pending: set[str] = set()
        self.streams: dict[str, Callable[[Entry], Awaitable[Cdr | None]]] = {
            keys.REGISTRATION_QUEUE: self._registration,
            keys.CALL_EVENTS: self._call_event,
        }

    # -- handlers ------------------------------------------------------------

    async def _registration(self, entry: Entry) -> Cdr | None:
        try:
            doc = orjson.loads(entry[1][b"report"])
            report = registration_report(doc)
        except (KeyError, orjson.JSONDecodeError, InputError) as exc:
            raise Unusable(f"bad registration entry: {exc}") from exc
        await self.records.save_registration(doc["trunk_id"], report)
        return None

    async def _call_event(self, entry: Entry) -> Cdr | None:
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
        streams = list(self.streams)
        if not self._groups_ready:
            for stream in streams:
                await self.live.ensure_group(stream)
            self._groups_ready = True
        if time.monotonic() >= self._next_claim:
            for stream in streams:
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
                streams, self.consumer, self.settings.drain_batch, block_ms
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
        acknowledged only once what it stands for is durable."""
        handle = self.streams[stream]
        done: list[str] = []
        closing: list[str] = []
        cdrs: list[Cdr] = []
        try:
            for entry in entries:
                try:
                    cdr = await handle(entry)
                except Unusable as exc:
                    log.error("report unusable", stream=stream, id=entry[0], error=str(exc))
                    await self.live.dead_letter(stream, entry, str(exc))
                    self.metrics.drained.labels(stream, "dead").inc()
                    continue
                if cdr is None:
                    done.append(entry[0])
                else:
                    cdrs.append(cdr)
                    closing.append(entry[0])
            if cdrs:
                await self.records.write_cdrs(cdrs)
                done.extend(closing)
            self.metrics.drained.labels(stream, "written").inc(len(done))
        finally:
            await self.live.done(stream, done)
        self.metrics.backlog.labels(stream).set(await self.live.length(stream))
        return len(entries)

    async def drain_loop(self) -> None:
        backoff = 0.0
        while True:
            try:
                await self.drain_once(block_ms=IDLE_BLOCK_MS)
            except (StoreUnavailable, CacheUnavailable) as exc:
                backoff = min(self.settings.drain_backoff_max_s, max(0.5, backoff * 2))
                log.warning("drain paused", error=exc.message, retry_in_s=round(backoff, 1))
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
                continue
            backoff = 0.0

    # -- periodic jobs ---------------------------------------------------------

    async def sync_channels(self) -> dict[str, int]:
        counts = await self.live.channel_counts()
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
            await asyncio.sleep(interval_s)

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        return [
            self.drain_loop(),
            self._every(self.settings.channels_sync_s, self.sync_channels),
            self._every(self.settings.sweep_interval_s, self.sweep),
        ]
