"""The combined INVITE decision: fetch in (at most) two Redis round trips, then `decide/`."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import orjson

from sipdata.cache import Cache, FirstRound
from sipdata.catalog import View
from sipdata.decide import acl, admission
from sipdata.decide.invite import Identity, InviteQuery, RoutingFacts, Verdict, identify, route
from sipdata.decide.models import Registration, Trunk
from sipdata.decide.numbers import prefixes
from sipdata.decide.rules import Rule, ordered_matches
from sipdata.errors import CacheUnavailable
from sipdata.live import LiveState
from sipdata.lookups import UNFETCHED, LcrEntry, Lookups, today
from sipdata.metrics import Metrics
from sipdata.settings import Settings
from sipdata.store import Store


class Service(Lookups):
    """What the HTTP handlers call."""

    def __init__(self, settings: Settings, cache: Cache, store: Store, metrics: Metrics) -> None:
        super().__init__(settings, cache, store, metrics)
        self.live = LiveState(
            cache,
            pending_s=settings.lease_pending_s,
            ringing_s=settings.lease_ringing_s,
            max_call_s=settings.max_call_s,
        )

    async def decide_invite(self, query: InviteQuery, now: dt.datetime) -> dict[str, Any]:
        async with asyncio.timeout(self.settings.decision_deadline_ms / 1000):
            return await self._decide(query, now)

    async def _first(self, view: View, query: InviteQuery) -> tuple[View, FirstRound | None]:
        """Round trip 1 against the serving generation; (cold view, None) when Redis has none.

        A view older than the serving generation is refreshed and the round repeated
        (once per switch per process): probing a generation Redis no longer holds
        would read as "not found".
        """
        for _ in range(2):
            if view.gen is None:
                return View(), None
            try:
                first = await self.cache.first_round(
                    view.gen,
                    acl_probes=acl.probes(
                        query.source_ip, view.acl_lengths.get(query.source_ip.version, ())
                    ),
                    username=query.auth_user,
                    lcr_probes=prefixes(query.to),
                    number=query.to,
                )
            except CacheUnavailable:
                self.metrics.degraded.labels("redis").inc()
                return View(), None
            if first.current == view.gen:
                return view, first
            if first.current is None:
                return View(), None  # Redis lost the generation: the database meanwhile
            try:
                view = await self.catalog.refresh()
            except CacheUnavailable:
                self.metrics.degraded.labels("redis").inc()
                return View(), None
        return View(), None

    async def _decide(self, query: InviteQuery, now: dt.datetime) -> dict[str, Any]:
        """Round trip 1 (pipeline): generation check, ACL probes, credential, LCR
        prefixes, DID. Round trip 2 (script): the caller org's rules and the
        registrations they may need. Cold or degraded parts read the database."""
        view, first = await self._first(await self._view(), query)
        sources: dict[str, str] = {}
        u: Any = UNFETCHED

        acl_hit, sources["acl"] = await self.acl(
            query.source_ip,
            view,
            hits=first.acl if first else u,
        )
        cred = None
        ip_identified = acl_hit is not None and sum(t.auth_type == "ip" for t in acl_hit[1]) == 1
        if query.auth_user is not None and not ip_identified:
            cred, sources["credential"] = await self.credential(
                query.auth_user,
                view,
                gen_raw=first.cred if first else u,
                rt_raw=first.cred_rt if first else u,
            )
        who = identify(query, acl_hit, cred, self.settings.realm)
        if isinstance(who, Verdict):
            return self._answer(who, query, view, sources)
        return await self._route(who, query, now, view=view, first=first, sources=sources)

    async def _route(
        self,
        who: Identity,
        query: InviteQuery,
        now: dt.datetime,
        *,
        view: View,
        first: FirstRound | None,
        sources: dict[str, str],
    ) -> dict[str, Any]:
        u: Any = UNFETCHED
        day = today(now)
        did, sources["did"] = await self.did(
            query.to,
            view,
            gen_raw=first.did if first else u,
            rt_raw=first.did_rt if first else u,
            read_through=who.trunk.is_carrier,
        )
        entry, sources["lcr"] = await self.lcr_entry(
            query.to,
            day,
            view,
            found=first.lcr if first else u,
        )
        did_trunk = [did.trunk.id] if did and did.trunk else []
        rules: tuple[Rule, ...] = ()
        targets: dict[str, Trunk] = {}
        regs: dict[str, Registration] | None = None
        org = None if who.trunk.is_carrier else who.trunk.org_id
        if view.gen is not None:
            try:
                raw_rules, raw_regs = await self.cache.org_routing(view.gen, org, did_trunk)
            except CacheUnavailable:
                self.metrics.degraded.labels("redis").inc()
            else:
                regs = {
                    k: Registration.from_json(orjson.loads(v)) for k, v in raw_regs.items() if v
                }
                if org is not None:
                    rules, targets, sources["rules"] = await self.rules(org, view, raw=raw_rules)
        if regs is None:
            if org is not None:
                rules, targets, sources["rules"] = await self.rules(org, View())
            regs = await self.registrations(
                did_trunk + [t.id for t in targets.values() if t.address is None]
            )
        matched = ordered_matches(rules, query.to, now, query.call_id, who.trunk.id)
        entries: dict[str, LcrEntry | None] = {query.to: entry}
        for rule in matched:
            target = rule.transform.apply(query.to)
            if rule.action == "lcr" and target not in entries:
                entries[target], _ = await self.lcr_entry(target, day, view)
        carrier_ids = sorted({r.carrier_id for e in entries.values() if e for r in e[1]})
        facts = RoutingFacts(
            did=did,
            rules=rules,
            registrations=regs,
            lcr_entries=entries,
            carriers=await self.carriers(carrier_ids, view),
            trunks=targets,
        )
        verdict = route(who, query, matched, facts, now)
        verdict = await self._admit(verdict, query, {r.id: r.max_calls for r in matched})
        return self._answer(verdict, query, view, sources)

    async def _admit(
        self, verdict: Verdict, query: InviteQuery, rule_max: dict[str, int | None]
    ) -> Verdict:
        """Take a channel lease for a routed call, or refuse it (decide/admission.py).

        With Redis away the call is routed unchecked: carrying traffic on a degraded
        store beats refusing every call, and the lapse is counted and logged.
        """
        limits = admission.limits_of(verdict, rule_max)
        if limits is None:
            return verdict
        if query.dry_run:
            verdict.explain["admission"] = "skipped"
            return verdict
        trunk = verdict.identity.trunk if verdict.identity else None
        doc = {
            "trunk_id": limits.trunk_id,
            "org_id": limits.org_id,
            "inbound": bool(trunk and trunk.is_carrier),
            "legs": [
                {**leg.explain(), **({"dst_uri": leg.dst_uri} if leg.dst_uri else {})}
                for leg in verdict.legs
            ],
        }
        try:
            outcome = await self.live.admit(limits, query.call_id, doc)
        except CacheUnavailable:
            self.metrics.degraded.labels("admission").inc()
            outcome = "unchecked"
        self.metrics.admissions.labels(outcome).inc()
        refused = admission.refused(verdict, outcome)
        if refused is not None:
            return refused
        verdict.explain["admission"] = outcome
        return verdict

    def _answer(
        self, verdict: Verdict, query: InviteQuery, view: View, sources: dict[str, str]
    ) -> dict[str, Any]:
        out = verdict.to_json()
        out["call_id"] = query.call_id
        out["explain"] = {**out["explain"], "sources": sources, "generation": view.gen}
        return out
