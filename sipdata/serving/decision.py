"""The INVITE decision, written once: identify -> rules -> on-net DID -> LCR -> admission.

Where each fact comes from (the generation's memo, one Redis round trip, the
database) is facts.py's concern; the steps themselves are the pure functions of
`decide/`. A caller this process has seen in the serving generation costs one
Redis round trip (scripts/decide.lua, which also takes the channel lease); a new
caller two or three; a cold or failing Redis reads the database and admits
unchecked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

import structlog

from sipdata.cache.client import Cache, one_timeout
from sipdata.cache.health import RoutingHealth, decode_summaries
from sipdata.cache.live import LiveState
from sipdata.cache.onetrip import LeaseDocs, OneTrip
from sipdata.db.billing import Billing
from sipdata.db.reads import Store
from sipdata.decide import admission
from sipdata.decide.admission import Limits
from sipdata.decide.breaker import CLOSED, unpack
from sipdata.decide.capacity import AdaptiveLimit
from sipdata.decide.invite import Identity, InviteQuery, RoutingFacts, Verdict, route
from sipdata.decide.offers import Health
from sipdata.decide.quality import COST
from sipdata.decide.rules import OrgRules, ordered_matches
from sipdata.errors import CacheUnavailable, Overloaded, StoreUnavailable
from sipdata.metrics import Metrics
from sipdata.serving.catalog import GenerationView
from sipdata.serving.credit import CreditControl
from sipdata.serving.facts import STALE, CallPlan, Facts, Sources
from sipdata.serving.lookups import Lookups
from sipdata.settings import Settings

log = structlog.get_logger(__name__)
# The in-flight limit's floor, and where it starts (decide/capacity.py).
LIMIT_FLOOR = 32
LIMIT_START = 128
OVERLOADED = "too many decisions in flight; try again shortly"
# A loop this late while deciding is saturated (a pass is normally a few ms).
UNDER_LOAD_LATE_S = 0.025


class Service(Lookups):
    """What the HTTP handlers call: the decision, and the single lookups it is made of."""

    def __init__(self, settings: Settings, cache: Cache, store: Store, metrics: Metrics) -> None:
        super().__init__(settings, cache, store, metrics)
        self.live = LiveState.from_settings(cache, settings)
        # A loop that runs late reads a reply after it arrived: the trip waits that
        # much longer before calling Redis failed (pressure.py), at most twice as
        # long in all, so a hung Redis is still told from a busy process.
        redis_s = settings.redis_timeout_ms / 1000
        self.trip = OneTrip(cache, self.live, slack=lambda: min(2 * self.pressure.late_s, redis_s))
        self.facts = Facts(settings, self, self.trip, metrics)
        self._inflight = 0
        self._last_decision = 0.0
        ceiling = settings.max_inflight_decisions
        # 60 % of the deadline: an answer slower than that means the process holds
        # more than it can surely finish in time; the rest is the margin.
        self.capacity = AdaptiveLimit(
            floor=min(LIMIT_FLOOR, ceiling),
            ceiling=ceiling,
            target_s=settings.decision_deadline_ms * 0.6 / 1000,
            value=min(LIMIT_START, ceiling),
        )
        metrics.decision_limit.set_function(lambda: self.capacity.value)
        metrics.decisions_inflight.set_function(lambda: self._inflight)
        self.lease_docs = LeaseDocs(self.trip, on_error=metrics.degraded.labels("lease_docs").inc)
        self.breaker_config = settings.breaker_config()
        self.quality_config = settings.quality_config()
        self.routing_health = RoutingHealth(cache, self.breaker_config, self.quality_config)
        self.credit = CreditControl(settings, self.routing_health, Billing(store.pool), metrics)
        self._restoring: asyncio.Future[None] | None = None

    def full(self) -> bool:
        """As many decisions are in flight as the limit allows (decide/capacity.py: it
        follows how fast admitted decisions answer). The middleware asks before the
        request is read, so that a shed costs as little as possible (under a burst
        it is most requests); decide_invite asks again once it is."""
        return not self.capacity.admits(self._inflight)

    @property
    def inflight(self) -> int:
        return self._inflight

    def under_load(self) -> bool:
        """Decisions were made this past second and the loop runs late: background
        work (the drainer) should step aside for a moment."""
        return (
            self.pressure.late_s > UNDER_LOAD_LATE_S
            and time.monotonic() - self._last_decision < 1.0
        )

    async def decide_invite(self, query: InviteQuery, now: dt.datetime) -> dict[str, Any]:
        if self.full():
            raise Overloaded(OVERLOADED)
        self._inflight += 1
        started = time.monotonic()
        try:
            with one_timeout():
                async with asyncio.timeout(self.settings.decision_deadline_ms / 1000):
                    return await self._decide(query, now)
        finally:
            self._inflight -= 1
            done = self._last_decision = time.monotonic()
            self.capacity.observe(done - started, done)

    async def _decide(self, query: InviteQuery, now: dt.datetime) -> dict[str, Any]:
        view = await self._view()
        for attempt in range(3):
            sources: Sources = {}
            view, who = await self.facts.identity(view, query, sources)
            if isinstance(who, Verdict):
                return self._answer(who, query, view, sources)
            carrier = who.trunk.is_carrier
            org = OrgRules()
            if not carrier:
                org = await self.facts.org_rules(view, who.trunk.org_id, sources)
            matched = ordered_matches(org.rules, query.to, now, query.call_id, who.trunk.id)
            rule_max = {r.id: r.max_calls for r in matched}
            guess = None
            if not query.dry_run:
                first_rule = matched[0].id if matched else None
                guess = admission.limits_for(who.trunk, first_rule, rule_max)
            numbers = [query.to]
            for rule in matched:
                target = rule.transform.apply(query.to)
                if rule.action == "lcr" and target not in numbers:
                    numbers.append(target)
            plan = CallPlan(
                number=query.to,
                numbers=tuple(numbers),
                did_read_through=carrier,
                registrations=tuple(t.id for t in org.targets.values() if t.address is None),
                admit=(guess, query.call_id, _lease_base(who)) if guess else None,
                quality=who.trunk.routing_strategy != COST,
            )
            got = await self.facts.per_call(view, plan, now, sources)
            if got is STALE:  # nothing was admitted: ask again of the new generation
                view = await self._fresh_view(cold=attempt > 0)
                continue
            facts = RoutingFacts(
                did=got.did,
                rules=org.rules,
                registrations=got.registrations,
                lcr_entries=got.lcr,
                carriers=got.carriers,
                trunks=org.targets,
                health=self._health(got.breakers, got.quality),
                quality_config=self.quality_config,
            )
            verdict = route(who, query, matched, facts, now)
            verdict = await self._hold_credit(verdict, query, guess, got.admission)
            verdict = await self._settle(verdict, query, guess, got.admission, rule_max)
            if verdict.verdict != "route" and verdict.explain.get("credit", {}).get("held"):
                await self.credit.release(who.trunk.org_id, query.call_id)
            return self._answer(verdict, query, view, sources)
        raise AssertionError("unreachable: a cold view is never stale")

    def _health(self, breakers: Mapping[str, bytes], quality: Mapping[str, bytes]) -> Health:
        """What the round trip brought of gateways and carriers, as of now."""
        now = int(time.time() * 1000)
        states = {}
        for gateway, packed in breakers.items():
            state = unpack(packed).effective(now, self.breaker_config)
            if state != CLOSED:
                states[gateway] = state
        return Health(states, decode_summaries(quality, self.quality_config) if quality else {})

    async def _hold_credit(
        self, verdict: Verdict, query: InviteQuery, guess: Limits | None, outcome: str | None
    ) -> Verdict:
        """Hold the call's credit, or refuse it; either way a failure to reach Redis is a
        503 (the lease the round trip took is given back first)."""
        try:
            return await self.credit.hold(verdict, query)
        except (CacheUnavailable, StoreUnavailable):
            if guess is not None and outcome == "ok":
                await self._give_back(query.call_id)
            raise

    async def _fresh_view(self, *, cold: bool) -> GenerationView:
        """The generation now serving; the database (a cold view) if Redis fails or the
        generation switched twice under one question."""
        if cold:
            return GenerationView()
        try:
            return await self.catalog.refresh()
        except CacheUnavailable:
            self.redis_failed()
            return GenerationView()

    # -- admission --------------------------------------------------------------

    async def _settle(
        self,
        verdict: Verdict,
        query: InviteQuery,
        guess: Limits | None,
        outcome: str | None,
        rule_max: dict[str, int | None],
    ) -> Verdict:
        """Keep, refuse or give back the lease the round trip took for this verdict, or
        take one now if none was (decide/admission.py says which limits apply)."""
        limits = admission.limits_of(verdict, rule_max)
        if guess is None or outcome is None or outcome == admission.RESTORING:
            return await self._admit(verdict, query, limits)
        if limits != guess:
            # Not routed after all, or routed by another rule than the first
            # that matched: the lease taken was not this call's to keep.
            if outcome == "ok":
                await self._give_back(query.call_id)
            return verdict if limits is None else await self._admit(verdict, query, limits)
        if outcome == "ok":
            self.lease_docs.put(query.call_id, _lease_doc(verdict, limits))
        return self._admitted(verdict, outcome)

    async def _admit(self, verdict: Verdict, query: InviteQuery, limits: Limits | None) -> Verdict:
        """Take a channel lease for a routed call now, or refuse it.

        With Redis away the call is routed unchecked: carrying traffic on a degraded
        store beats refusing every call, and the lapse is counted and logged.
        """
        if limits is None:
            return verdict
        if query.dry_run:
            verdict.explain["admission"] = "skipped"
            return verdict
        doc = _lease_doc(verdict, limits)
        try:
            outcome = await self.live.admit(limits, query.call_id, doc)
            if outcome == admission.RESTORING:
                await self._restore_leases()
                outcome = await self.live.admit(limits, query.call_id, doc)
        except CacheUnavailable:
            self.redis_failed("admission")
            outcome = "unchecked"
        return self._admitted(verdict, outcome)

    async def _restore_leases(self) -> None:
        """Redis lost its leases: put the saved counts back now rather than wait for the
        warmer (restore_channels.lua applies once, whoever asks first). One restore
        per process at a time; a failed one leaves admission refusing (503), never
        counting from zero."""
        if self._restoring is None or self._restoring.done():
            self._restoring = asyncio.ensure_future(self._restore_once())
        await asyncio.shield(self._restoring)

    async def _restore_once(self) -> None:
        try:
            saved = await self.store.saved_channels()
            added = await self.live.restore_channels(saved, self.settings.restored_leases_s)
        except (CacheUnavailable, StoreUnavailable) as exc:
            log.warning("channel counts not restored", error=exc.message)
            return
        if added:
            log.warning("channel counts restored after Redis lost its leases", leases=added)

    def _admitted(self, verdict: Verdict, outcome: str) -> Verdict:
        self.metrics.inc(self.metrics.admissions, outcome)
        refused = admission.refused(verdict, outcome)
        if refused is not None:
            return refused
        verdict.explain["admission"] = outcome
        return verdict

    async def _give_back(self, call_id: str) -> None:
        try:
            await self.trip.release(call_id)
        except CacheUnavailable:
            # The lease lapses by itself after lease_pending_s.
            self.metrics.degraded.labels("admission").inc()

    def _answer(
        self, verdict: Verdict, query: InviteQuery, view: GenerationView, sources: Sources
    ) -> dict[str, Any]:
        out = verdict.to_json(brief=query.brief)
        out["call_id"] = query.call_id
        if "explain" in out:
            out["explain"] = {**out["explain"], "sources": sources, "generation": view.gen}
        return out


def _lease_base(who: Identity) -> dict[str, object]:
    """A lease taken before the route is known: who is billed, destinations to follow."""
    return {
        "trunk_id": who.trunk.id,
        "org_id": who.trunk.org_id,
        "inbound": who.trunk.is_carrier,
        "legs": [],
    }


def _lease_doc(verdict: Verdict, limits: Limits) -> dict[str, Any]:
    """What a lease keeps for the CDR: who is billed, where the call may go, and whether
    it holds credit (its CDR then settles the hold and debits the balance)."""
    trunk = verdict.identity.trunk if verdict.identity else None
    return {
        "credit": bool(verdict.explain.get("credit", {}).get("held")),
        "trunk_id": limits.trunk_id,
        "org_id": limits.org_id,
        "inbound": bool(trunk and trunk.is_carrier),
        "legs": [
            {**leg.explain(), **({"dst_uri": leg.dst_uri} if leg.dst_uri else {})}
            for leg in verdict.legs
        ],
    }
