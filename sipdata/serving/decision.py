"""The combined INVITE decision: one Redis round trip once the caller is known, then `decide/`.

Fast path (a caller seen before in this generation): identity and rules come
from the view's memo, and one script (keys.DECIDE_LUA) brings the per-call
data and takes the channel lease. Otherwise the general path: a pipeline, the
org's rules, then the admission; cold or degraded parts read the database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import orjson

from sipdata.cache.client import Cache, FirstRound
from sipdata.cache.live import LiveState
from sipdata.cache.onetrip import LeaseDocs, OneRound, Round
from sipdata.db.reads import Store
from sipdata.decide import acl, admission
from sipdata.decide.admission import Limits
from sipdata.decide.invite import Identity, InviteQuery, RoutingFacts, Verdict, identify, route
from sipdata.decide.models import Registration, Trunk
from sipdata.decide.numbers import prefixes
from sipdata.decide.rules import Rule, ordered_matches
from sipdata.errors import CacheUnavailable, Overloaded
from sipdata.metrics import Metrics
from sipdata.serving.catalog import MISSING, View
from sipdata.serving.lookups import UNFETCHED, AclHit, LcrEntry, Lookups, today
from sipdata.settings import Settings


class Service(Lookups):
    """What the HTTP handlers call."""

    def __init__(self, settings: Settings, cache: Cache, store: Store, metrics: Metrics) -> None:
        super().__init__(settings, cache, store, metrics)
        self.live = LiveState.from_settings(cache, settings)
        self.rounds = OneRound(cache, self.live)
        self._inflight = 0
        self.lease_docs = LeaseDocs(self.rounds, on_error=metrics.degraded.labels("lease_docs").inc)

    async def decide_invite(self, query: InviteQuery, now: dt.datetime) -> dict[str, Any]:
        if self._inflight >= self.settings.max_inflight_decisions:
            raise Overloaded("too many decisions in flight; try again shortly")
        self._inflight += 1
        try:
            async with asyncio.timeout(self.settings.decision_deadline_ms / 1000):
                return await self._decide(query, now)
        finally:
            self._inflight -= 1

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
        view = await self._view()
        known = self._known(view, query)
        if known is not None:
            who, sources = known
            if isinstance(who, Verdict):
                return self._answer(who, query, view, sources)
            answer = await self._one_round(who, query, now, view, sources)
            if answer is not None:
                return answer
        view, first = await self._first(view, query)
        sources = {}
        u: Any = UNFETCHED

        acl_hit, sources["acl"] = await self.acl(
            query.source_ip,
            view,
            hits=first.acl if first else u,
        )
        if sources["acl"] == "generation" and view.gen is not None:
            view.memo.put("acl", query.source_ip, acl_hit)
        cred = None
        if query.auth_user is not None and not _ip_identified(acl_hit):
            cred, sources["credential"] = await self.credential(
                query.auth_user,
                view,
                gen_raw=first.cred if first else u,
                rt_raw=first.cred_rt if first else u,
            )
            if sources["credential"] == "generation" and cred is not None:
                view.memo.put("cred", query.auth_user, cred)
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
                    if sources["rules"] == "generation":
                        view.memo.put("rules", org, (rules, targets))
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
        try:
            outcome = await self.live.admit(limits, query.call_id, _lease_doc(verdict, limits))
        except CacheUnavailable:
            self.metrics.degraded.labels("admission").inc()
            outcome = "unchecked"
        self.metrics.inc(self.metrics.admissions, outcome)
        refused = admission.refused(verdict, outcome)
        if refused is not None:
            return refused
        verdict.explain["admission"] = outcome
        return verdict

    # -- the fast path ---------------------------------------------------------

    def _known(
        self, view: View, query: InviteQuery
    ) -> tuple[Identity | Verdict, dict[str, str]] | None:
        """Who calls, from the memo of this generation alone (None: not known yet)."""
        if view.gen is None:
            return None
        acl_hit = view.memo.get("acl", query.source_ip)
        if acl_hit is MISSING:
            return None
        sources = {"acl": "generation"}
        self._count("acl", "generation")
        cred = None
        if query.auth_user is not None and not _ip_identified(acl_hit):  # type: ignore[arg-type]
            cred = view.memo.get("cred", query.auth_user)
            if cred is MISSING:
                return None  # unknown users read through to the database: the general path
            sources["credential"] = "generation"
            self._count("cred", "generation")
        return identify(query, acl_hit, cred, self.settings.realm), sources  # type: ignore[arg-type]

    async def _one_round(
        self,
        who: Identity,
        query: InviteQuery,
        now: dt.datetime,
        view: View,
        sources: dict[str, str],
    ) -> dict[str, Any] | None:
        """The decision in one Redis round trip, or None to take the general path
        (rules not in the memo, Redis failing, or the generation just switched)."""
        assert view.gen is not None
        carrier = who.trunk.is_carrier
        rules: tuple[Rule, ...] = ()
        targets: dict[str, Trunk] = {}
        if not carrier:
            memo = view.memo.get("rules", who.trunk.org_id)
            if memo is MISSING:
                return None
            rules, targets = memo  # type: ignore[misc]
            sources["rules"] = "generation"
            self._count("rules", "generation")
        matched = ordered_matches(rules, query.to, now, query.call_id, who.trunk.id)
        rule_max = {r.id: r.max_calls for r in matched}
        numbers = [query.to]
        for rule in matched:
            target = rule.transform.apply(query.to)
            if rule.action == "lcr" and target not in numbers:
                numbers.append(target)
        guess = None
        if not query.dry_run:
            guess = admission.limits_for(who.trunk, matched[0].id if matched else None, rule_max)
        base = {"trunk_id": who.trunk.id, "org_id": who.trunk.org_id, "inbound": carrier}
        try:
            got = await self.rounds.fetch(
                view.gen,
                number=query.to,
                numbers=numbers,
                did_readthrough=carrier,
                registrations=[t.id for t in targets.values() if t.address is None],
                admit=(guess, query.call_id, {**base, "legs": []}) if guess else None,
            )
        except CacheUnavailable:
            self.metrics.degraded.labels("redis").inc()
            return None
        if got.current != view.gen:
            return None  # nothing was admitted; the general path refreshes the view
        facts = await self._facts(
            query,
            now,
            view,
            got,
            rules=rules,
            targets=targets,
            numbers=numbers,
            carrier=carrier,
            sources=sources,
        )
        verdict = route(who, query, matched, facts, now)
        verdict = await self._settle(verdict, query, guess, got.admission, rule_max)
        return self._answer(verdict, query, view, sources)

    async def _facts(
        self,
        query: InviteQuery,
        now: dt.datetime,
        view: View,
        got: Round,
        *,
        rules: tuple[Rule, ...],
        targets: dict[str, Trunk],
        numbers: list[str],
        carrier: bool,
        sources: dict[str, str],
    ) -> RoutingFacts:
        day = today(now)
        did, sources["did"] = await self.did(
            query.to, view, gen_raw=got.did, rt_raw=got.did_rt, read_through=carrier
        )
        entries: dict[str, LcrEntry | None] = {}
        for number in numbers:
            hit = got.lcr.get(number)
            found = [hit[1] if hit and p == hit[0] else None for p in prefixes(number)]
            entries[number], source = await self.lcr_entry(number, day, view, found=found)
            sources.setdefault("lcr", source)
        regs = {
            k: Registration.from_json(orjson.loads(v)) for k, v in got.registrations.items() if v
        }
        if did and did.trunk and did.trunk.id not in got.registrations:
            regs.update(await self.registrations([did.trunk.id]))  # a DID read from the database
        return RoutingFacts(
            did=did,
            rules=rules,
            registrations=regs,
            lcr_entries=entries,
            carriers=view.carriers,
            trunks=targets,
        )

    async def _settle(
        self,
        verdict: Verdict,
        query: InviteQuery,
        guess: Limits | None,
        outcome: str | None,
        rule_max: dict[str, int | None],
    ) -> Verdict:
        """Keep, refuse or give back the lease the round trip took for this verdict."""
        limits = admission.limits_of(verdict, rule_max)
        if guess is None or outcome is None:
            return await self._admit(verdict, query, rule_max)
        if limits != guess:
            # Not routed after all, or routed by another rule than the first
            # that matched: the lease taken was not this call's to keep.
            if outcome == "ok":
                await self._give_back(query.call_id)
            return verdict if limits is None else await self._admit(verdict, query, rule_max)
        self.metrics.inc(self.metrics.admissions, outcome)
        refused = admission.refused(verdict, outcome)
        if refused is not None:
            return refused
        verdict.explain["admission"] = outcome
        if outcome == "ok":
            self.lease_docs.put(query.call_id, _lease_doc(verdict, limits))
        return verdict

    async def _give_back(self, call_id: str) -> None:
        try:
            await self.rounds.release(call_id)
        except CacheUnavailable:
            # The lease lapses by itself after lease_pending_s.
            self.metrics.degraded.labels("admission").inc()

    def _answer(
        self, verdict: Verdict, query: InviteQuery, view: View, sources: dict[str, str]
    ) -> dict[str, Any]:
        out = verdict.to_json(brief=query.brief)
        out["call_id"] = query.call_id
        if "explain" in out:
            out["explain"] = {**out["explain"], "sources": sources, "generation": view.gen}
        return out


def _ip_identified(acl_hit: AclHit | None) -> bool:
    """One IP trunk owns the source: its credentials, if sent, are not needed."""
    return acl_hit is not None and sum(t.auth_type == "ip" for t in acl_hit[1]) == 1


def _lease_doc(verdict: Verdict, limits: Limits) -> dict[str, Any]:
    """What a lease keeps for the CDR: who is billed and where the call may go."""
    trunk = verdict.identity.trunk if verdict.identity else None
    return {
        "trunk_id": limits.trunk_id,
        "org_id": limits.org_id,
        "inbound": bool(trunk and trunk.is_carrier),
        "legs": [
            {**leg.explain(), **({"dst_uri": leg.dst_uri} if leg.dst_uri else {})}
            for leg in verdict.legs
        ],
    }
