"""Single lookups with their read-through: the serving generation first, then the database.

Where an answer comes from is reported with it: `generation` (the warmer's
snapshot), `readthrough` (a database answer cached after an earlier miss) or
`database` (read now, and cached). Credentials read through on every miss, so
a trunk provisioned a second ago works at once; a DID reads through only for
calls from carriers; ACLs, rate decks and rules are served from the snapshot
alone once one exists (an unknown source address or a random dialled number
must not cost a database query) and read through only while Redis is cold.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Literal, TypeVar

import orjson
import structlog

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.db.reads import Store
from sipdata.decide import acl, lcr
from sipdata.decide.models import (
    AclHit,
    Carrier,
    Credential,
    Did,
    Registration,
    Trunk,
    acl_entry_from_json,
    acl_entry_to_json,
)
from sipdata.decide.numbers import prefixes
from sipdata.decide.rules import OrgRules
from sipdata.errors import CacheUnavailable, Overloaded
from sipdata.metrics import Metrics
from sipdata.serving.catalog import Catalog, GenerationView
from sipdata.serving.pressure import Pressure
from sipdata.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")
PointT = TypeVar("PointT", Credential, Did)
POINT_KINDS = {"cred": keys.KIND_CRED, "did": keys.KIND_DID}


class Unfetched(enum.Enum):
    """A value the caller did not fetch (distinct from None, "absent")."""

    UNFETCHED = 0


UNFETCHED: Final = Unfetched.UNFETCHED
# A stored value as a batched read brought it (None: absent), or not fetched yet.
Fetched = bytes | None | Literal[Unfetched.UNFETCHED]
LcrEntry = tuple[str, Sequence[lcr.RateRow]]


def _decode_lcr(raw: bytes) -> LcrEntry:
    doc = orjson.loads(raw)
    return doc["prefix"], tuple(lcr.RateRow.from_json(r) for r in doc["rows"])


def _same(raw: bytes | None) -> bytes:
    """A rules doc is stored as it is (an org without rules stores an empty doc)."""
    return raw or b"{}"


# The same few thousand entries serve most calls: decode each stored value once
# (bytes hash fast; a new generation simply brings new keys).
@functools.lru_cache(maxsize=65536)
def _rows(raw: bytes, prefix: str) -> tuple[lcr.RateRow, ...]:
    return tuple(lcr.RateRow.from_stored(d, prefix) for d in orjson.loads(raw))


@functools.lru_cache(maxsize=65536)
def _acl(raw: bytes, network: str) -> AclHit:
    return acl_entry_from_json(orjson.loads(raw), network)


@functools.lru_cache(maxsize=4096)
def parse_rules_doc(raw: bytes) -> OrgRules:
    """One org's stored rules doc; parsed once per distinct doc."""
    org = OrgRules.from_json(orjson.loads(raw))
    for rule_id, why in org.skipped:
        log.warning("rule_skipped", rule_id=rule_id, why=why)
    return org


def today(now: dt.datetime) -> dt.date:
    return now.astimezone(dt.UTC).date()


class Lookups:
    """The lookups one process serves, each from Redis or the database."""

    def __init__(self, settings: Settings, cache: Cache, store: Store, metrics: Metrics) -> None:
        self.settings = settings
        self.cache = cache
        self.store = store
        self.metrics = metrics
        self.catalog = Catalog(cache, metrics)
        # Late by half a Redis timeout: a timeout then may well be this process's
        # own backlog rather than Redis.
        self.pressure = Pressure(busy_s=max(0.05, settings.redis_timeout_ms / 2000))

    # -- plumbing ------------------------------------------------------------

    def redis_failed(self, label: str = "redis") -> None:
        """A Redis read the request needs failed: count it and let the caller fall back
        to the database -- unless this process runs behind its own loop, when the
        failure is most likely that backlog (a reply not read in time) and the
        database would only deepen it: then the request is shed (Overloaded)."""
        if self.pressure.busy:
            raise Overloaded("this process is behind its requests; try again shortly")
        self.metrics.inc(self.metrics.degraded, label)

    def count(self, kind: str, source: str) -> None:
        self.metrics.inc(self.metrics.lookups, kind, source)

    async def _view(self) -> GenerationView:
        view = self.catalog.view
        if view.gen is None:
            with contextlib.suppress(CacheUnavailable):
                view = await self.catalog.refresh()
        return view

    async def _remember(self, kind: str, key: str, value: bytes | None) -> None:
        """Cache a database answer; a Redis failure here costs only a later re-read."""
        ttl = self.settings.readthrough_ttl_s if value is not None else self.settings.negative_ttl_s
        try:
            await self.cache.set_readthrough(kind, key, value or keys.NEGATIVE, ttl)
        except CacheUnavailable:
            self.metrics.degraded.labels("redis").inc()
            log.warning("readthrough_not_cached", kind=kind)

    async def _through(
        self,
        kind: str,
        key: str,
        rt_raw: bytes | None,
        *,
        load: Callable[[], Awaitable[T | None]],
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
    ) -> tuple[T | None, str]:
        """The read-through step once the generation had no answer."""
        if rt_raw is not None:
            self.count(kind, "readthrough")
            return (None if rt_raw == keys.NEGATIVE else decode(rt_raw)), "readthrough"
        value = await load()
        self.count(kind, "database")
        await self._remember(kind, key, encode(value) if value is not None else None)
        return value, "database"

    # -- single lookups ----------------------------------------------------
    # Each takes what a batched first round already fetched, or UNFETCHED to
    # read it itself. A Redis error while reading the generation makes that
    # one lookup cold: it reads the database rather than report "not found".

    async def _gen_read(
        self, view: GenerationView, read: Callable[[int], Awaitable[T]]
    ) -> T | Literal[Unfetched.UNFETCHED]:
        if view.gen is None:
            return UNFETCHED
        try:
            return await read(view.gen)
        except CacheUnavailable:
            self.redis_failed()
            return UNFETCHED

    async def _rt(self, kind: str, key: str, rt_raw: Fetched) -> bytes | None:
        if not isinstance(rt_raw, Unfetched):
            return rt_raw
        try:
            return await self.cache.get_readthrough(kind, key)
        except CacheUnavailable:
            self.redis_failed()
            return None

    async def _point(
        self,
        kind: str,
        key: str,
        model: type[PointT],
        *,
        load: Callable[[], Awaitable[PointT | None]],
        view: GenerationView | None,
        gen_raw: Fetched,
        rt_raw: Fetched,
        read_through: bool,
    ) -> tuple[PointT | None, str]:
        """An exact-key lookup (credential, DID): snapshot hash field, else read-through."""
        view = view or await self._view()
        if isinstance(gen_raw, Unfetched):
            gen_raw = await self._gen_read(
                view, lambda g: self.cache.hget(POINT_KINDS[kind], g, key)
            )
        if isinstance(gen_raw, bytes):
            self.count(kind, "generation")
            return model.from_json(orjson.loads(gen_raw)), "generation"
        if gen_raw is None and not read_through:
            self.count(kind, "generation")
            return None, "generation"
        return await self._through(
            kind,
            key,
            await self._rt(kind, key, rt_raw),
            load=load,
            encode=lambda v: orjson.dumps(v.to_json()),
            decode=lambda b: model.from_json(orjson.loads(b)),
        )

    async def credential(
        self,
        username: str,
        view: GenerationView | None = None,
        *,
        gen_raw: Fetched = UNFETCHED,
        rt_raw: Fetched = UNFETCHED,
    ) -> tuple[Credential | None, str]:
        """Reads through on every miss: a trunk provisioned a second ago works at once."""
        return await self._point(
            "cred",
            username,
            Credential,
            load=lambda: self.store.credential(username),
            view=view,
            gen_raw=gen_raw,
            rt_raw=rt_raw,
            read_through=True,
        )

    async def did(
        self,
        number: str,
        view: GenerationView | None = None,
        *,
        gen_raw: Fetched = UNFETCHED,
        rt_raw: Fetched = UNFETCHED,
        read_through: bool = True,
    ) -> tuple[Did | None, str]:
        """`read_through=False` trusts the snapshot's "no such DID": outbound calls to
        PSTN numbers are mostly not DIDs, and each must not cost a database query."""
        return await self._point(
            "did",
            number,
            Did,
            load=lambda: self.store.did(number),
            view=view,
            gen_raw=gen_raw,
            rt_raw=rt_raw,
            read_through=read_through,
        )

    async def acl(
        self,
        ip: acl.IPAddress,
        view: GenerationView | None = None,
        *,
        hits: list[bytes | None] | Literal[Unfetched.UNFETCHED] = UNFETCHED,
    ) -> tuple[AclHit | None, str]:
        view = view or await self._view()
        probes = acl.probes(ip, view.acl_lengths.get(ip.version, ()))
        if isinstance(hits, Unfetched):
            hits = await self._gen_read(view, lambda g: self.cache.hmget(keys.KIND_ACL, g, probes))
        if not isinstance(hits, Unfetched):
            self.count("acl", "generation")
            for cidr, raw in zip(probes, hits, strict=False):
                if raw is not None:
                    return _acl(raw, cidr), "generation"
            return None, "generation"

        async def load() -> AclHit | None:
            best: acl.IPNetwork | None = None
            owners: list[Trunk] = []
            for trunk in await self.store.ip_trunks():
                for net in map(acl.parse_network, trunk.networks):
                    if net.version != ip.version or ip not in net:
                        continue
                    if best is None or net.prefixlen > best.prefixlen:
                        best, owners = net, [trunk]
                    elif net == best:
                        owners.append(trunk)
            return (str(best), owners) if best is not None else None

        return await self._through(
            "acl",
            str(ip),
            await self._rt("acl", str(ip), UNFETCHED),
            load=load,
            encode=lambda h: orjson.dumps(acl_entry_to_json(*h)),
            decode=lambda b: acl_entry_from_json(orjson.loads(b), str(ip)),  # not cached:
            # read-through keys are per address and would crowd out generation entries
        )

    async def lcr_entry(
        self,
        number: str,
        day: dt.date,
        view: GenerationView | None = None,
        *,
        found: Sequence[bytes | None] | Literal[Unfetched.UNFETCHED] = UNFETCHED,
    ) -> tuple[LcrEntry | None, str]:
        view = view or await self._view()
        probes = prefixes(number)
        if isinstance(found, Unfetched):
            found = await self._gen_read(view, lambda g: self.cache.hmget(keys.KIND_LCR, g, probes))
        if not isinstance(found, Unfetched):
            self.count("lcr", "generation")
            for prefix, raw in zip(probes, found, strict=False):
                if raw is not None:
                    return (prefix, _rows(raw, prefix)), "generation"
            return None, "generation"

        async def load() -> LcrEntry | None:
            rows = await self.store.rates_for(probes, day)
            # What a compiled entry holds for this number: every row matching it.
            longest = max((len(r.prefix) for r in rows), default=0)
            return (number[:longest], rows) if rows else None

        return await self._through(
            "lcr",
            number,
            await self._rt("lcr", number, UNFETCHED),
            load=load,
            encode=lambda e: orjson.dumps({"prefix": e[0], "rows": [r.to_json() for r in e[1]]}),
            decode=_decode_lcr,
        )

    async def rules(
        self, org_id: str, view: GenerationView | None = None, *, raw: Fetched = UNFETCHED
    ) -> tuple[OrgRules, str]:
        view = view or await self._view()
        if isinstance(raw, Unfetched):
            raw = await self._gen_read(view, lambda g: self.cache.hget(keys.KIND_CUSTOM, g, org_id))
        if not isinstance(raw, Unfetched):
            self.count("rules", "generation")
            return (parse_rules_doc(raw) if raw else OrgRules()), "generation"

        async def load() -> bytes | None:
            rows = await self.store.rules(org_id)
            targets = await self.store.trunks(
                [str(r["destination"]) for r in rows if r["action"] == "trunk"]
            )
            return orjson.dumps(OrgRules.to_json(rows, targets), default=str)

        doc, source = await self._through(
            "rules",
            org_id,
            await self._rt("rules", org_id, UNFETCHED),
            load=load,
            encode=_same,
            decode=_same,
        )
        return parse_rules_doc(doc or b"{}"), source

    async def carriers(self, ids: Sequence[str], view: GenerationView) -> dict[str, Carrier]:
        if view.gen is not None:
            return view.carriers
        return await self.store.carriers(ids)

    async def registrations(self, trunk_ids: Sequence[str]) -> dict[str, Registration]:
        try:
            raw = await self.cache.registrations(trunk_ids)
        except CacheUnavailable:
            return await self.store.registrations(trunk_ids)
        return {k: Registration.from_json(orjson.loads(v)) for k, v in raw.items() if v}
