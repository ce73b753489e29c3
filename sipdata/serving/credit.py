"""Credit control on the decision path: hold credit for a routed call of a controlled org,
refuse it when the first billing block is not covered, and keep the loaded balances fresh.

Redis away: a controlled org's call is refused with 503 (degraded), never routed
unchecked: admitting it without a hold is how a prepaid account is overdrawn.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import structlog

from sipdata.cache.health import RoutingHealth
from sipdata.db.billing import Billing
from sipdata.decide import credit
from sipdata.decide.invite import InviteQuery, Verdict, reject
from sipdata.errors import CacheUnavailable, StoreUnavailable
from sipdata.metrics import Metrics
from sipdata.settings import Settings

log = structlog.get_logger(__name__)


class CreditControl:
    def __init__(
        self, settings: Settings, health: RoutingHealth, billing: Billing, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.health = health
        self.billing = billing
        self.metrics = metrics
        # until the call's start report: as long as its channel lease (credit.lua)
        self.lapse_ms = int(settings.lease_pending_s * 1000)

    def ask(self, rate: Decimal) -> credit.Ask:
        return credit.Ask(
            rate_micro=credit.to_micro(rate, up=True),
            minimum_s=self.settings.billing_minimum_s,
            increment_s=self.settings.billing_increment_s,
            cap_s=int(self.settings.max_call_s),
        )

    async def hold(self, verdict: Verdict, query: InviteQuery) -> Verdict:
        """The verdict with the call's credit held (explain.credit, and max_s for
        Kamailio), or the refusal that replaces it."""
        ident = verdict.identity
        if verdict.verdict != "route" or ident is None or not ident.trunk.credit:
            return verdict
        rates = [Decimal(leg.rate) for leg in verdict.legs if leg.rate is not None]
        if not rates:
            return verdict  # on-net, forwards, trunks: nothing is charged
        rate = max(rates)  # a failover may answer at any of them
        ask = self.ask(rate)
        org = ident.trunk.org_id
        if query.dry_run:
            return await self._probe(verdict, org, ask, rate)
        outcome, max_s, hold, free = await self.health.reserve(
            org, query.call_id, ask, self.lapse_ms
        )
        if outcome == "unknown":
            await self.load([org])
            outcome, max_s, hold, free = await self.health.reserve(
                org, query.call_id, ask, self.lapse_ms
            )
        self.metrics.inc(self.metrics.credit, outcome)
        doc: dict[str, Any] = {"rate": str(rate), "available": str(credit.from_micro(free))}
        if outcome in ("funds", "unknown"):
            code, reason = credit.PAYMENT_REQUIRED
            return reject(code, reason, ident, **{**verdict.explain, "credit": doc})
        doc.update(max_s=max_s, hold=str(credit.from_micro(hold)), held=True)
        verdict.explain["credit"] = doc
        return verdict

    async def _probe(self, verdict: Verdict, org: str, ask: credit.Ask, rate: Decimal) -> Verdict:
        """dry_run: what a call would get now, holding nothing."""
        account = await self.health.account(org)
        if "avail" not in account:
            await self.load([org])
            account = await self.health.account(org)
        free = account.get("avail", 0) - account.get("reserved", 0)
        grant = credit.reserve(free, ask)
        doc: dict[str, Any] = {"rate": str(rate), "available": str(credit.from_micro(free))}
        if grant is None:
            code, reason = credit.PAYMENT_REQUIRED
            return reject(code, reason, verdict.identity, **{**verdict.explain, "credit": doc})
        verdict.explain["credit"] = {**doc, "max_s": grant.max_s, "held": False}
        return verdict

    async def release(self, org_id: str, call_id: str) -> None:
        """Give back a hold whose call was refused after it was taken."""
        try:
            await self.health.settle(org_id, [(call_id, 0)])
        except CacheUnavailable:
            self.metrics.degraded.labels("credit").inc()  # it lapses by itself

    async def load(self, org_ids: list[str] | None = None) -> int:
        """Balances from the database into Redis (all controlled orgs, or these). Each
        account's settlement count is read first, so a settlement that lands
        meanwhile is never overwritten by the older row (credit_load.lua)."""
        orgs = org_ids if org_ids is not None else list(await self.billing.available())
        settles = await self.health.settle_counts(orgs)
        found = await self.billing.available(orgs)
        accounts = {
            org: (credit.to_micro(found.get(org, Decimal(0))), n)
            for org, n in zip(orgs, settles, strict=True)
        }
        return await self.health.load_credit(accounts)

    async def refresh_loop(self) -> None:
        """Keep loaded balances in step with billing_accounts (a top-up, a new limit)."""
        while True:
            try:
                await self.load()
            except (CacheUnavailable, StoreUnavailable) as exc:
                log.warning("credit balances not refreshed", error=exc.message)
            except Exception:  # the next round may fare better; the loop must not die
                log.exception("credit refresh failed unexpectedly")
            await asyncio.sleep(self.settings.credit_refresh_s)
