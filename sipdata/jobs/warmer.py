"""The warmer: full loads database -> Redis as new generations, switched atomically.

A load reads one consistent snapshot, writes every hash of a fresh
generation, then switches `routing:current` in one script. Anything that
fails before the switch leaves the previous generation serving, and the
half-written hashes expire on their own (keys.BUILD_TTL_S). Registrations are
restored only where Redis lost them, never over a newer live one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.cache.live import LiveState
from sipdata.db.reads import RateGroups, Snapshot, Store, registration_of
from sipdata.decide import acl, lcr
from sipdata.decide.models import Trunk
from sipdata.decide.rules import OrgRules, RuleError, parse_rule
from sipdata.errors import SipdataError, WarmFailed
from sipdata.metrics import Metrics
from sipdata.settings import Settings

log = structlog.get_logger(__name__)

# A generation the follower can patch (3: it has keys.KIND_TRUNK and compact LCR
# rows, lcr.RateRow.to_stored); an older one is replaced by a full load when the
# follower starts. Readers read formats 2 and 3; a release before format 3 cannot
# read 3 (docs/operations.md, "Upgrading").
MANIFEST_FORMAT = 3

# Compiled LCR entries written per batch while the deck streams in.
DECK_BATCH = 20_000

# Test seam: awaited between writing the new generation and switching to it.
BeforeSwitch = Callable[[int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Payload:
    """A generation ready to write: hash kind -> field -> value, plus the manifest."""

    hashes: dict[str, dict[str, bytes]]
    manifest: dict[str, Any]


def dump(value: Any) -> bytes:
    """A stored value: JSON, dates and decimals as strings."""
    return orjson.dumps(value, default=str)


def build_payload(snap: Snapshot, today: dt.date) -> Payload:
    """Turn a database snapshot into the hashes of one generation but the LCR hash,
    which Warmer._deck streams (pure)."""
    acl_index: dict[str, list[Trunk]] = defaultdict(list)
    lengths: dict[int, set[int]] = {4: set(), 6: set()}
    for trunk in snap.trunks.values():
        if trunk.auth_type != "ip":
            continue
        for text in trunk.networks:
            net = acl.parse_network(text)
            acl_index[str(net)].append(trunk)
            lengths[net.version].add(net.prefixlen)

    users = {c.trunk.id: c.username for c in snap.credentials.values()}
    custom, invalid = rules_by_org(snap.rules, snap.trunks)

    hashes = {
        keys.KIND_CRED: {k: dump(c.to_json()) for k, c in snap.credentials.items()},
        # The generation keeps the bare list of owners the previous release reads (a
        # rolling upgrade runs old servers against a new warmer); decide.models'
        # acl_entry_from_json reads it and the read-through entry's {network, owners}.
        keys.KIND_ACL: {k: dump([t.to_json() for t in v]) for k, v in acl_index.items()},
        keys.KIND_DID: {k: dump(d.to_json()) for k, d in snap.dids.items()},
        keys.KIND_CUSTOM: custom,
        keys.KIND_CARRIER: {k: dump(c.to_json()) for k, c in snap.carriers.items()},
        keys.KIND_TRUNK: {
            t.id: trunk_index_entry(t, users.get(t.id)) for t in snap.trunks.values()
        },
    }
    manifest = {
        "format": MANIFEST_FORMAT,
        "compiled_for": today.isoformat(),
        "acl_v4_lengths": sorted(lengths[4], reverse=True),
        "acl_v6_lengths": sorted(lengths[6], reverse=True),
        "counts": {kind[:-2].replace(":", "_"): len(v) for kind, v in hashes.items()},
        "invalid_rules": invalid,
    }
    return Payload(hashes, manifest)


def rules_by_org(
    rows: Iterable[dict[str, Any]], trunks: Mapping[str, Trunk]
) -> tuple[dict[str, bytes], list[dict[str, str]]]:
    """Each org's stored rules (orgs without a valid rule have none), and the rules
    left out because they would not compile, with why."""
    by_org: dict[str, list[dict[str, Any]]] = defaultdict(list)
    invalid: list[dict[str, str]] = []
    for row in rows:
        try:
            parse_rule(row)
        except RuleError as exc:
            invalid.append({"rule_id": str(row["id"]), "why": str(exc)})
            log.warning("rule_invalid", rule_id=str(row["id"]), why=str(exc))
            continue
        by_org[row["org_id"]].append(row)
    custom: dict[str, bytes] = {}
    for org_id, org_rows in by_org.items():
        targets = {
            str(r["destination"]): trunks[str(r["destination"])]
            for r in org_rows
            if r["action"] == "trunk" and str(r["destination"]) in trunks
        }
        custom[org_id] = dump(OrgRules.to_json(org_rows, targets))
    return custom, invalid


def trunk_index_entry(trunk: Trunk, username: str | None) -> bytes:
    """keys.KIND_TRUNK's value: the credential and ACL fields a trunk owns."""
    nets = list(trunk.networks) if trunk.auth_type == "ip" else []
    return dump({"user": username, "nets": nets})


class Warmer:
    def __init__(
        self,
        settings: Settings,
        cache: Cache,
        store: Store,
        metrics: Metrics,
        *,
        before_switch: BeforeSwitch | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.store = store
        self.metrics = metrics
        self.before_switch = before_switch
        # The lock value; a child process loading for a follower is given the follower's.
        self.owner = owner or uuid.uuid4().hex

    async def _deck(self, gen: int, groups: RateGroups, today: dt.date) -> tuple[int, int]:
        """Compile the streamed decks into the generation's LCR hash, a batch at a time:
        (rate rows read, entries written). Memory is two batches and the ancestor chain:
        one batch is written while the next is compiled."""
        compiler = lcr.DeckCompiler(today)
        batch: dict[str, bytes] = {}
        rows = entries = 0
        writing: asyncio.Future[None] | None = None
        try:
            async for prefix, group in groups:
                rows += len(group)
                entry = compiler.push(prefix, group)
                if entry is None:
                    continue
                batch[prefix] = dump(lcr.stored_entry(prefix, entry))
                if len(batch) >= DECK_BATCH:
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(
                        self.cache.write_hash(keys.KIND_LCR, gen, batch)
                    )
                    entries += len(batch)
                    batch = {}
            if writing is not None:
                await writing
            if batch:
                await self.cache.write_hash(keys.KIND_LCR, gen, batch)
                entries += len(batch)
        finally:
            if writing is not None and not writing.done():
                writing.cancel()  # a failed read: the half-written generation expires
        return rows, entries

    async def load_once(self) -> dict[str, Any] | None:
        """One full load; None when another warmer holds the lock."""
        if not await self.cache.acquire_lock(self.owner, keys.BUILD_TTL_S):
            log.info("warm_skipped_locked")
            return None
        try:
            return await self.load_locked()
        finally:
            try:
                await self.cache.release_lock(self.owner)
            except SipdataError:
                log.warning("warm_lock_not_released")

    async def load_locked(self) -> dict[str, Any]:
        """One full load by the holder of the warmer lock."""
        started = time.monotonic()
        try:
            now = dt.datetime.now(dt.UTC)
            today = now.date()
            # First, before the deck: admissions wait for it (lib/admit.lua, restoring).
            channels = await LiveState.from_settings(self.cache, self.settings).restore_channels(
                await self.store.saved_channels(), self.settings.restored_leases_s
            )
            if channels:
                log.warning("channel counts restored after Redis lost its leases", leases=channels)
            gen = await self.cache.next_generation()
            snap, deck = await self.store.snapshot(
                today, now.replace(tzinfo=None), lambda groups: self._deck(gen, groups, today)
            )
            payload = build_payload(snap, today)
            for kind, mapping in payload.hashes.items():
                await self.cache.write_hash(kind, gen, mapping)
            manifest = {
                **payload.manifest,
                "counts": {**payload.manifest["counts"], "route_lcr": deck[1]},
                "rate_rows": deck[0],
                "generation": gen,
                "built_at": now.isoformat(),
            }
            await self.cache.write_manifest(gen, manifest)
            if self.before_switch is not None:
                await self.before_switch(gen)
            if not await self.cache.holds_lock(self.owner):
                # Fencing: a load that outlived its lock must not switch over another's.
                raise WarmFailed("the warmer lock expired during the load; not switching")
            switched = await self.cache.switch(gen, self.settings.generation_grace_s)
            restored = await self.cache.restore_registrations(
                {
                    r["trunk_id"]: (
                        dump(registration_of(r).to_json()),
                        max(1, int((r["expires_at"] - now.replace(tzinfo=None)).total_seconds())),
                    )
                    for r in snap.registrations
                }
            )
            duration = time.monotonic() - started
            beat = {
                "at": time.time(),
                "generation": gen,
                "switched": switched,
                "duration_s": round(duration, 3),
                "counts": manifest["counts"],
                "registrations_restored": restored,
                "channels_restored": channels,
            }
            await self.cache.write_heartbeat(beat, keys.HEARTBEAT_TTL_S)
            self.metrics.warm_last_success.set(beat["at"])
            self.metrics.warm_duration.set(duration)
            log.info("warm_done", **beat)
            return beat
        except Exception:
            self.metrics.warm_failures.inc()
            raise


async def load_in_child(settings: Settings, owner: str) -> None:
    """One full load in a child process, `sipdata warm --holding-lock OWNER`, under the
    lock the caller holds: a big deck's compile costs that process's CPU and memory,
    not the serving event loop's (it runs on the other core). It writes its log
    lines to this process's stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sipdata",
        "warm",
        "--holding-lock",
        owner,
        env=settings.child_env(),
    )
    try:
        code = await proc.wait()
    finally:
        if proc.returncode is None:  # cancelled: do not leave a loader behind
            proc.kill()
            await proc.wait()
    if code != 0:
        raise WarmFailed(f"the full load's child process exited with {code}")
