"""What a batch of captured changes rewrites in the serving generation: re-read, derive, patch.

A plan (decide/changes.py) names roots; the Deriver expands those it cannot know
without the database (an org's trunks, the DIDs and rules that point at a
trunk, the prefixes under a changed one), re-reads just those and returns the
final value of every serving entry they touch (None: delete) as one Patch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.db.reads import Store, credential_of
from sipdata.decide import acl, lcr
from sipdata.decide.changes import (
    MAX_PATCHED_PREFIXES,
    MAX_PATCHED_ROWS,
    Plan,
    prefix_family,
    recompile,
)
from sipdata.decide.models import Trunk, acl_entry_from_json
from sipdata.jobs.warmer import dump, rules_by_org, trunk_index_entry


@dataclass(slots=True)
class Patch:
    """Final value per kind and field (None: delete), and the manifest if it changed."""

    fields: dict[str, dict[str, bytes | None]] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None

    def put(self, kind: str, key: str, value: bytes | None) -> None:
        self.fields.setdefault(kind, {})[key] = value

    def drop(self, kind: str, key: str) -> None:
        """Delete unless this patch also sets it (a username moving between trunks)."""
        self.fields.setdefault(kind, {}).setdefault(key, None)

    def split(self) -> tuple[dict[str, dict[str, bytes]], dict[str, list[str]]]:
        sets = {k: {f: v for f, v in m.items() if v is not None} for k, m in self.fields.items()}
        dels = {k: [f for f, v in m.items() if v is None] for k, m in self.fields.items()}
        return sets, dels

    def size(self) -> int:
        return sum(len(m) for m in self.fields.values())


class TooLarge(Exception):
    """The change touches more compiled prefixes than a patch should carry."""


class Deriver:
    """Computes the patch for one plan against one serving generation."""

    def __init__(self, cache: Cache, store: Store) -> None:
        self.cache = cache
        self.store = store

    async def patch(self, plan: Plan, gen: int, today: dt.date) -> Patch:
        out = Patch()
        trunks = await self._trunks(plan, gen, out)
        await self._dids(plan.numbers, trunks, out)
        await self._rules(plan.rule_orgs, trunks, out)
        await self._carriers(plan.carriers | {t.org_id for t in trunks.values() if t}, out)
        await self._rates(plan.prefixes, today, out)
        return out

    async def _trunks(self, plan: Plan, gen: int, out: Patch) -> dict[str, Trunk | None]:
        """Credentials, ACL entries and the trunk index of every changed trunk; returns
        the trunks re-read (None: gone), for the entries that embed them."""
        pairs = await self.store.changed_trunks(plan.trunks, plan.orgs)
        now: dict[str, Trunk | None] = {t.id: t for _, t in pairs}
        creds = {t.id: credential_of(r, t) for r, t in pairs}
        users = {trunk_id: c.username if c else None for trunk_id, c in creds.items()}
        for cred in creds.values():
            if cred is not None:
                out.put(keys.KIND_CRED, cred.username, dump(cred.to_json()))
        for trunk_id in plan.trunks:
            now.setdefault(trunk_id, None)
        if not now:
            return now
        ids = sorted(now)
        before = dict(zip(ids, await self.cache.hmget(keys.KIND_TRUNK, gen, ids), strict=True))
        cidrs: set[str] = set()
        for trunk_id in ids:
            raw = before[trunk_id]
            old = orjson.loads(raw) if raw else {"user": None, "nets": []}
            trunk = now[trunk_id]
            if old.get("user") and old["user"] != users.get(trunk_id):
                out.drop(keys.KIND_CRED, old["user"])
            if trunk is None:
                out.put(keys.KIND_TRUNK, trunk_id, None)
            else:
                out.put(keys.KIND_TRUNK, trunk_id, trunk_index_entry(trunk, users.get(trunk_id)))
            cidrs |= set(old.get("nets", []))
            if trunk is not None and trunk.auth_type == "ip":
                cidrs |= set(trunk.networks)
        await self._acl(cidrs, now, gen, out)
        return now

    async def _acl(
        self, cidrs: Iterable[str], now: Mapping[str, Trunk | None], gen: int, out: Patch
    ) -> None:
        wanted = sorted(cidrs)
        if not wanted:
            return
        current = await self.cache.hmget(keys.KIND_ACL, gen, wanted)
        added: dict[int, set[int]] = {4: set(), 6: set()}
        for cidr, raw in zip(wanted, current, strict=True):
            before = acl_entry_from_json(orjson.loads(raw), cidr)[1] if raw else ()
            owners = [o for o in before if o.id not in now]
            owners += [t for t in now.values() if t and t.auth_type == "ip" and cidr in t.networks]
            if owners:
                out.put(keys.KIND_ACL, cidr, dump([o.to_json() for o in owners]))
                net = acl.parse_network(cidr)
                added[net.version].add(net.prefixlen)
            else:
                out.drop(keys.KIND_ACL, cidr)
        manifest = await self.cache.manifest(gen)
        for version in (4, 6):
            name = f"acl_v{version}_lengths"
            have = set(manifest.get(name, []))
            if not added[version] <= have:
                # A length no longer used is left in: it costs one probe, never an answer.
                manifest[name] = sorted(have | added[version], reverse=True)
                out.manifest = manifest

    async def _dids(
        self, numbers: set[str], trunks: Mapping[str, Trunk | None], out: Patch
    ) -> None:
        if not numbers and not trunks:
            return
        found = await self.store.dids(numbers, trunks)
        for number, did in found.items():
            out.put(keys.KIND_DID, number, dump(did.to_json()))
        for number in numbers - found.keys():
            out.drop(keys.KIND_DID, number)

    async def _rules(self, orgs: set[str], trunks: Mapping[str, Trunk | None], out: Patch) -> None:
        if not orgs and not trunks:
            return
        wanted, rows, targets = await self.store.changed_rules(orgs, trunks)
        custom, _ = rules_by_org(rows, targets)  # it logs each rule it leaves out
        for org_id in wanted:
            out.put(keys.KIND_CUSTOM, org_id, custom.get(org_id))

    async def _carriers(self, ids: set[str], out: Patch) -> None:
        if not ids:
            return
        found = await self.store.carriers(sorted(ids))
        for carrier_id in ids:
            carrier = found.get(carrier_id)
            out.put(keys.KIND_CARRIER, carrier_id, dump(carrier.to_json()) if carrier else None)

    async def _rates(self, prefixes: set[str], today: dt.date, out: Patch) -> None:
        """Recompile the changed prefixes and every compiled prefix under them."""
        if not prefixes:
            return
        ancestors, roots = prefix_family(prefixes)
        rows = await self.store.rates_under(ancestors, roots, today, MAX_PATCHED_ROWS)
        if rows is None:
            raise TooLarge(f"over {MAX_PATCHED_ROWS} rate rows under {len(roots)} changed prefixes")
        # Off the event loop: serve's decisions share it with this follower.
        entries = await asyncio.to_thread(recompile, rows, prefixes, today)
        if len(entries) > MAX_PATCHED_PREFIXES:
            raise TooLarge(f"{len(entries)} compiled prefixes under {len(roots)} changed ones")
        for prefix, entry in entries.items():
            value = dump(lcr.stored_entry(prefix, entry)) if entry else None
            out.put(keys.KIND_LCR, prefix, value)
