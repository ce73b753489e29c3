"""Reports from Kamailio written back: registrations to the database then Redis, call events
to a Redis stream. A report is acknowledged only once it is stored."""

from __future__ import annotations

from typing import Any

import orjson
import structlog

from sipdata.cache import Cache
from sipdata.decide.models import Registration, Trunk
from sipdata.decide.reports import CallEvent, RegistrationReport
from sipdata.errors import CacheUnavailable, NotFound
from sipdata.lookups import Lookups
from sipdata.metrics import Metrics
from sipdata.store import Store

log = structlog.get_logger(__name__)


class Reports:
    def __init__(self, lookups: Lookups, cache: Cache, store: Store, metrics: Metrics) -> None:
        self.lookups = lookups
        self.cache = cache
        self.store = store
        self.metrics = metrics

    async def _trunk(self, username: str) -> Trunk:
        cred, _ = await self.lookups.credential(username)
        if cred is None:
            raise NotFound(f"no digest trunk has username {username!r}", field="username")
        return cred.trunk

    async def register(self, report: RegistrationReport) -> dict[str, Any]:
        """The database is the record (acknowledged = committed); Redis follows it.

        A Redis failure after the commit is logged, not returned: the warmer puts
        every live database registration back into Redis on its next load.
        """
        trunk = await self._trunk(report.username)
        applied = await self.store.save_registration(trunk.id, report)
        cached = False
        if applied:
            reg = Registration(
                contact=report.contact,
                expires=int(report.expires_at.timestamp()),
                user_agent=report.user_agent,
                received=report.received,
            )
            value = orjson.dumps({**reg.to_json(), "ts": report.ts.timestamp()})
            try:
                cached = await self.cache.apply_registration(
                    trunk.id,
                    value if report.online else None,
                    report.expires,
                    report.ts.timestamp(),
                )
            except CacheUnavailable as exc:
                self.metrics.degraded.labels(exc.code).inc()
                log.warning("registration not cached", trunk_id=trunk.id, error=exc.message)
        return {
            "trunk_id": trunk.id,
            "online": report.online,
            "applied": applied,
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

    async def call_event(self, event: CallEvent) -> str:
        """Acknowledged once Redis holds it; the CDR writer takes it from there."""
        return await self.cache.append_call_event(event.to_json())
