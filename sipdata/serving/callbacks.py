"""Reports from Kamailio written back. A report is acknowledged only once it is durable: in
the database, or in a Redis stream the drainer empties into the database later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import structlog

from sipdata.cache.health import RoutingHealth
from sipdata.cache.live import LiveState
from sipdata.db.writes import Records
from sipdata.decide import breaker, rating
from sipdata.decide.models import Trunk
from sipdata.decide.reports import CallEvent, RegistrationReport
from sipdata.errors import (
    CacheUnavailable,
    NotFound,
    NotReplicated,
    StoreRejected,
    StoreUnavailable,
)
from sipdata.metrics import Metrics
from sipdata.serving.lookups import Lookups
from sipdata.settings import Settings

log = structlog.get_logger(__name__)
RELEASE_BATCH = 500


class Reports:
    def __init__(
        self,
        settings: Settings,
        lookups: Lookups,
        live: LiveState,
        records: Records,
        metrics: Metrics,
        *,
        health: RoutingHealth,
    ) -> None:
        self.settings = settings
        self.lookups = lookups
        self.live = live
        self.records = records
        self.metrics = metrics
        self.health = health
        self._known: tuple[int | None, frozenset[str]] = (None, frozenset())
        # Call-ID -> when: ends written to the database while Redis was away,
        # whose leases Redis still holds (release_unreleased).
        self._unreleased: dict[str, float] = {}

    async def _trunk(self, username: str) -> Trunk:
        cred, _ = await self.lookups.credential(username)
        if cred is None:
            raise NotFound(f"no digest trunk has username {username!r}", field="username")
        return cred.trunk

    async def register(self, report: RegistrationReport) -> dict[str, Any]:
        """The database first; while it is away, the Redis queue (the drainer applies it
        later, and the ordering guard makes a late application harmless). Redis's live
        key follows either way; a Redis failure after a database commit is logged, not
        returned, because the warmer restores live registrations from the database."""
        trunk = await self._trunk(report.username)
        stored = "database"
        try:
            applied = await self.records.save_registration(trunk.id, report)
        except StoreUnavailable as exc:
            self.metrics.degraded.labels(exc.code).inc()
            await self.live.queue_registration({"trunk_id": trunk.id, **report.to_json()})
            applied, stored = True, "queue"
        cached = False
        if applied:
            try:
                cached = await self.live.apply_registration(trunk.id, report)
            except CacheUnavailable as exc:
                self.metrics.degraded.labels(exc.code).inc()
                log.warning("registration not cached", trunk_id=trunk.id, error=exc.message)
        return {
            "trunk_id": trunk.id,
            "online": report.online,
            "applied": applied,
            "stored": stored,
            "cached": cached,
            "expires_at": report.expires_at.isoformat(),
        }

    async def registration(self, username: str) -> dict[str, Any]:
        trunk = await self._trunk(username)
        reg = (await self.lookups.registrations([trunk.id])).get(trunk.id)
        return {
            "username": username,
            "trunk": trunk.public(),
            "online": reg is not None,
            "registration": reg.to_json() if reg else None,
        }

    async def call_event(self, event: CallEvent) -> dict[str, Any]:
        """One report: a batch of one (call_events). A start or answer that cannot be
        stored while Redis is away is refused (503)."""
        (stored,) = await self.call_events([event])
        if stored is None:
            raise CacheUnavailable("redis: this report cannot be stored while Redis is away")
        return {**stored, "call_id": event.call_id}

    async def call_events(self, events: Sequence[CallEvent]) -> list[dict[str, str] | None]:
        """Each call's lease moves on and its report joins the stream, the whole batch in
        one Redis step: per event {"stored": "stream", "id": entry id}. With Redis away
        an end or failure is written as a CDR directly (without the lease, so without a
        rate: {"stored": "database"}); a start or answer cannot be stored (None: Kamailio
        sends it again later). With the database away too, StoreUnavailable: nothing is
        acknowledged."""
        docs = [e.to_json() for e in events]
        try:
            ids = await self.live.call_events(
                [(e.call_id, e.event, d) for e, d in zip(events, docs, strict=True)]
            )
        except NotReplicated as exc:
            # In the stream, not yet on a replica: kept back rather than written
            # around the stream; the second delivery is harmless (report keys).
            self.metrics.degraded.labels(exc.code).inc()
            return [None for _ in docs]
        except CacheUnavailable as exc:
            self.metrics.degraded.labels(exc.code).inc()
            stored = [{"stored": "database"} if await self._direct(d) else None for d in docs]
            for doc, done in zip(docs, stored, strict=True):
                if done:  # its lease is still in Redis: given back once Redis answers
                    self._unreleased.setdefault(doc["call_id"], time.monotonic())
            return stored
        await self._breakers(events)
        return [{"stored": "stream", "id": i} for i in ids]

    async def release_unreleased(self) -> int:
        """Give back the channels of calls whose end went to the database directly;
        kept for the next try while Redis is still away, and dropped once their lease
        would have lapsed anyway."""
        if not self._unreleased:
            return 0
        too_old = time.monotonic() - self.settings.max_call_s
        for call_id in [c for c, t in self._unreleased.items() if t < too_old]:
            del self._unreleased[call_id]
        batch = list(self._unreleased)[:RELEASE_BATCH]
        released = await self.live.release_ended(batch)
        for call_id in batch:
            self._unreleased.pop(call_id, None)
        if released:
            log.info("channels of calls ended while Redis was away given back", calls=released)
        return released

    async def release_loop(self, interval_s: float = 1.0) -> None:
        while True:
            try:
                while await self.release_unreleased() or len(self._unreleased) >= RELEASE_BATCH:
                    pass
            except CacheUnavailable:
                pass  # still away: the next round tries again
            except Exception:  # the loop must not die
                log.exception("releasing ended calls failed unexpectedly")
            await asyncio.sleep(interval_s)

    async def _breakers(self, events: Sequence[CallEvent]) -> None:
        """A failed branch counts against its gateway, any other outcome for it, at once
        (not when the drainer gets to the report): every node's next decision sees it."""
        steps = [
            (e.gateway, "fail" if breaker.is_failure(e.sip_code or 408) else "ok")
            for e in events
            if e.event == "attempt" and e.gateway
        ]
        steps += [(e.gateway, "ok") for e in events if e.event == "answer" and e.gateway]
        try:
            await self.gateway_events(steps)
        except Exception:  # the reports are stored: a breaker step must not undo that
            log.exception("gateway events not applied")

    def _carrier_gateways(self) -> frozenset[str] | None:
        """The serving generation's carrier gateways (None while there is none: cold,
        every gateway is taken at its word). A branch to a PBX or a forward is no
        carrier's, and a name nobody routes to must not grow the breaker hash."""
        view = self.lookups.catalog.view
        if view.gen is None or not view.carriers:
            return None
        if self._known[0] != view.gen:
            keys = {
                breaker.gateway_key(g.address) for c in view.carriers.values() for g in c.gateways
            }
            self._known = (view.gen, frozenset(keys))
        return self._known[1]

    async def gateway_events(self, steps: Sequence[tuple[str, str]]) -> list[str]:
        """Step breakers; a Redis failure loses the events (health is not money, and
        the next report tells again), never the reports that carried them."""
        known = self._carrier_gateways()
        if known is not None:
            steps = [(g, e) for g, e in steps if breaker.gateway_key(g) in known]
        if not steps:
            return []
        try:
            states = await self.health.gateway_events(steps)
        except CacheUnavailable as exc:
            self.metrics.degraded.labels(exc.code).inc()
            return []
        for (gateway, event), state in zip(steps, states, strict=True):
            self.metrics.inc(self.metrics.gateway_events, event)
            self.metrics.gateway_state.labels(breaker.gateway_key(gateway)).set(
                1 if state == breaker.OPEN else 0
            )
            if state == breaker.OPEN and event in ("fail", "probe_down"):
                log.warning("gateway judged down", gateway=gateway, cause=event)
        return states

    async def gateway_probe(self, gateway: str, event: str) -> dict[str, Any]:
        """Kamailio's prober saw a gateway go down or come back."""
        known = self._carrier_gateways()
        if known is not None and breaker.gateway_key(gateway) not in known:
            raise NotFound(f"no carrier gateway at {gateway}", field="gateway")
        states = await self.gateway_events([(gateway, event)])
        if not states:
            raise CacheUnavailable("redis: the gateway's state cannot be stored now")
        return {"gateway": breaker.gateway_key(gateway), "state": states[0]}

    async def _direct(self, doc: dict[str, Any]) -> bool:
        """The CDR of an end or failure, written now without its lease (so without a
        rate). False when it cannot be written now: no org to bill, or the database
        refuses it (an unknown org): kept by Kamailio, it reaches the stream once Redis
        is back and becomes a dead letter there, where it can be replayed."""
        cdr = rating.cdr_of(
            doc, None, self.settings.billing_minimum_s, self.settings.billing_increment_s
        )
        if cdr is None:
            return False
        try:
            await self.records.write_cdr(cdr)
        except StoreRejected as exc:
            log.warning("report kept: refused by the database", error=exc.message)
            return False
        return True
