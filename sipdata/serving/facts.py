"""Where the decision's facts come from: the generation's memo, one Redis round trip, or the
database — one concern, so the decision itself (decision.py) is written once.

- `identity`: who the caller is. From the memo of the serving generation when
  this process has seen the caller before; else one pipeline (the ACL probes and
  the credential) and the lookups' read-through; a cold or failing Redis reads
  the database.
- `org_rules`: the caller org's rules, from the memo, else the generation (or
  the database).
- `per_call`: what differs for every call (the DID, the LCR entries of the
  numbers the call may be sent to, the registrations it may need) in one Redis
  round trip, `scripts/decide.lua`, which also takes the channel lease the call
  will need if it routes (the admission guessed before the route is known); or,
  with Redis cold or failing, from the database with no lease taken.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import orjson

from sipdata.cache.client import Cache, IdentityProbe
from sipdata.cache.onetrip import OneTrip, TripResult
from sipdata.decide import acl
from sipdata.decide.admission import Limits
from sipdata.decide.invite import Identity, InviteQuery, Verdict, identify, sole_ip_owner
from sipdata.decide.models import AclHit, Carrier, Credential, Did, Registration
from sipdata.decide.numbers import prefixes
from sipdata.decide.rules import OrgRules
from sipdata.errors import CacheUnavailable
from sipdata.metrics import Metrics
from sipdata.serving.catalog import MISSING, GenerationView
from sipdata.serving.lookups import UNFETCHED, LcrEntry, Lookups, today
from sipdata.settings import Settings


class Stale(enum.Enum):
    """The generation switched under the question: refresh the view and ask again."""

    STALE = 0


STALE: Final = Stale.STALE
Sources = dict[str, str]  # fact -> generation | readthrough | database (explain.sources)


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What one call needs fetched once its caller and rules are known."""

    number: str  # the dialled number (its DID)
    numbers: tuple[str, ...]  # every number whose LCR entry the call may use
    did_read_through: bool  # a carrier's call: a DID missing from the generation is looked up
    registrations: tuple[str, ...]  # rule target trunks without a static address
    admit: tuple[Limits, str, Mapping[str, object]] | None  # the admission guessed, if any
    quality: bool = False  # the org routes by quality: read the carriers' summaries


@dataclass(frozen=True, slots=True)
class CallFacts:
    did: Did | None
    lcr: dict[str, LcrEntry | None]
    registrations: dict[str, Registration]
    carriers: Mapping[str, Carrier]
    admission: str | None  # the guessed admission's outcome; None: none was taken
    breakers: Mapping[str, bytes] = field(default_factory=dict)  # gateway -> packed breaker
    quality: Mapping[str, bytes] = field(default_factory=dict)  # carrier -> summary JSON


def ip_identified(hit: AclHit | None) -> bool:
    """One IP trunk owns the source: its credentials, if sent, are not needed."""
    return hit is not None and sole_ip_owner(hit[1]) is not None


class Facts:
    def __init__(
        self, settings: Settings, lookups: Lookups, trip: OneTrip, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.lookups = lookups
        self.cache: Cache = lookups.cache
        self.trip = trip
        self.metrics = metrics

    def _degraded(self) -> None:
        self.lookups.redis_failed()

    # -- who calls --------------------------------------------------------------

    async def identity(
        self, view: GenerationView, query: InviteQuery, sources: Sources
    ) -> tuple[GenerationView, Identity | Verdict]:
        """The caller (or the challenge / reject that stands instead), and the view the
        answer was read from (refreshed if the generation switched meanwhile)."""
        known = self._remembered(view, query, sources)
        if known is not None:
            return view, known
        view, probe = await self._probe(view, query)
        hit, sources["acl"] = await self.lookups.acl(
            query.source_ip, view, hits=probe.acl if probe else UNFETCHED
        )
        if sources["acl"] == "generation" and view.gen is not None:
            view.acl.put(query.source_ip, hit)
        cred = None
        if query.auth_user is not None and not ip_identified(hit):
            cred, sources["credential"] = await self.lookups.credential(
                query.auth_user,
                view,
                gen_raw=probe.cred if probe else UNFETCHED,
                rt_raw=probe.cred_rt if probe else UNFETCHED,
            )
            if sources["credential"] == "generation" and cred is not None:
                view.creds.put(query.auth_user, cred)
        return view, identify(query, hit, cred, self.settings.realm)

    def _remembered(
        self, view: GenerationView, query: InviteQuery, sources: Sources
    ) -> Identity | Verdict | None:
        """The caller from the memo alone (None: not known yet in this generation)."""
        if view.gen is None:
            return None
        hit = view.acl.get(query.source_ip)
        if hit is MISSING:
            return None
        cred: Credential | None = None
        if query.auth_user is not None and not ip_identified(hit):
            remembered = view.creds.get(query.auth_user)
            if remembered is MISSING:
                return None  # unknown users read through to the database
            cred = remembered
            sources["credential"] = "generation"
            self.lookups.count("cred", "generation")
        sources["acl"] = "generation"
        self.lookups.count("acl", "generation")
        return identify(query, hit, cred, self.settings.realm)

    async def _probe(
        self, view: GenerationView, query: InviteQuery
    ) -> tuple[GenerationView, IdentityProbe | None]:
        """One pipeline against the serving generation; (cold view, None) when Redis has
        none or fails. A view older than the serving generation is refreshed and the
        probe repeated (once per switch per process): probing a generation Redis no
        longer holds would read as "not found"."""
        for _ in range(2):
            if view.gen is None:
                return GenerationView(), None
            try:
                probe = await self.cache.identity_probe(
                    view.gen,
                    acl_probes=acl.probes(
                        query.source_ip, view.acl_lengths.get(query.source_ip.version, ())
                    ),
                    username=query.auth_user,
                )
            except CacheUnavailable:
                self._degraded()
                return GenerationView(), None
            if probe.current == view.gen:
                return view, probe
            if probe.current is None:
                return GenerationView(), None  # Redis lost the generation: the database
            try:
                view = await self.lookups.catalog.refresh()
            except CacheUnavailable:
                self._degraded()
                return GenerationView(), None
        return GenerationView(), None

    # -- the caller org's rules ---------------------------------------------------

    async def org_rules(self, view: GenerationView, org_id: str, sources: Sources) -> OrgRules:
        if view.gen is not None:
            remembered = view.rules.get(org_id)
            if remembered is not MISSING:
                sources["rules"] = "generation"
                self.lookups.count("rules", "generation")
                return remembered
        rules, sources["rules"] = await self.lookups.rules(org_id, view)
        if sources["rules"] == "generation" and view.gen is not None:
            view.rules.put(org_id, rules)
        return rules

    # -- what differs per call ------------------------------------------------------

    async def per_call(
        self, view: GenerationView, plan: CallPlan, now: dt.datetime, sources: Sources
    ) -> CallFacts | Literal[Stale.STALE]:
        """The call's facts in one round trip, or from the database while Redis is cold
        or failing (no lease is taken then). STALE: the generation switched; nothing was
        admitted."""
        if view.gen is not None:
            try:
                got = await self.trip.fetch(
                    view.gen,
                    number=plan.number,
                    numbers=plan.numbers,
                    did_readthrough=plan.did_read_through,
                    registrations=plan.registrations,
                    admit=plan.admit,
                    quality=plan.quality,
                )
            except CacheUnavailable:
                self._degraded()
            else:
                if got.current != view.gen:
                    return STALE
                return await self._from_trip(view, plan, got, now, sources)
        return await self._from_database(plan, now, sources)

    async def _from_trip(
        self,
        view: GenerationView,
        plan: CallPlan,
        got: TripResult,
        now: dt.datetime,
        sources: Sources,
    ) -> CallFacts:
        day = today(now)
        did, sources["did"] = await self.lookups.did(
            plan.number,
            view,
            gen_raw=got.did,
            rt_raw=got.did_rt,
            read_through=plan.did_read_through,
        )
        entries: dict[str, LcrEntry | None] = {}
        for number in plan.numbers:
            hit = got.lcr.get(number)
            found = [hit[1] if hit and p == hit[0] else None for p in prefixes(number)]
            entries[number], source = await self.lookups.lcr_entry(number, day, view, found=found)
            sources.setdefault("lcr", source)
        regs = {
            k: Registration.from_json(orjson.loads(v)) for k, v in got.registrations.items() if v
        }
        if did and did.trunk and did.trunk.id not in got.registrations:
            # a DID read through from the database: decide.lua could not know its trunk
            regs.update(await self.lookups.registrations([did.trunk.id]))
        return CallFacts(
            did, entries, regs, view.carriers, got.admission, got.breakers, got.quality
        )

    async def _from_database(self, plan: CallPlan, now: dt.datetime, sources: Sources) -> CallFacts:
        cold = GenerationView()
        day = today(now)
        did, sources["did"] = await self.lookups.did(plan.number, cold)
        entries: dict[str, LcrEntry | None] = {}
        for number in plan.numbers:
            entries[number], source = await self.lookups.lcr_entry(number, day, cold)
            sources.setdefault("lcr", source)
        trunk_ids: Sequence[str] = [
            *([did.trunk.id] if did and did.trunk else []),
            *plan.registrations,
        ]
        carrier_ids = sorted({r.carrier_id for e in entries.values() if e for r in e[1]})
        return CallFacts(
            did=did,
            lcr=entries,
            registrations=await self.lookups.registrations(trunk_ids),
            carriers=await self.lookups.carriers(carrier_ids, cold),
            admission=None,
        )
