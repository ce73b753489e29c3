"""Live state in Redis: channel leases, registrations, and the report streams the drainer
empties into the database (with their dead letters). Errors become CacheUnavailable."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from redis.exceptions import ResponseError

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.cache.scripts import (
    AdmitArgv,
    AdmitKeys,
    CallEventsArgv,
    CallEventsArgvEach,
    CallEventsKeys,
    CallEventsKeysEach,
    ChannelCountsArgv,
    ChannelCountsKeys,
    DeadLetterArgv,
    DeadLetterArgvEach,
    DeadLetterKeys,
    Empty,
    EndedArgv,
    EndedArgvEach,
    EndedKeysEach,
    RegisterArgv,
    RegisterKeys,
    ReplayDeadArgvEach,
    ReplayDeadKeys,
    ReplayDeadKeysEach,
    RestoreChannelsArgv,
    RestoreChannelsArgvEach,
    RestoreChannelsKeys,
    flat,
)
from sipdata.decide.admission import Limits
from sipdata.decide.models import Registration
from sipdata.decide.reports import MAX_EXPIRES, RegistrationReport
from sipdata.settings import Settings

Entry = tuple[str, dict[bytes, bytes]]
# What XREADGROUP answers: per stream, its entries (an entry deleted while pending
# comes back with no fields).
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes] | None]]]]


def now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LiveState:
    def __init__(
        self,
        cache: Cache,
        *,
        pending_s: float,
        ringing_s: float,
        max_call_s: float,
        hold_grace_s: float = 3600.0,
    ) -> None:
        self.cache = cache
        self.client = cache.client
        self.pending_ms = int(pending_s * 1000)
        self.ringing_ms = int(ringing_s * 1000)
        self.max_call_ms = int(max_call_s * 1000)
        # Sets live a minute past their longest possible member.
        self.set_ms = self.max_call_ms + 60_000
        # A relayed call's credit hold lasts past its longest possible end by the
        # grace: its CDR settles it long before (docs/routing-health.md).
        self.hold_ms = self.ringing_ms + self.max_call_ms + int(hold_grace_s * 1000)
        self.scripts = cache.scripts

    @classmethod
    def from_settings(cls, cache: Cache, settings: Settings) -> LiveState:
        return cls(
            cache,
            pending_s=settings.lease_pending_s,
            ringing_s=settings.lease_ringing_s,
            max_call_s=settings.max_call_s,
            hold_grace_s=settings.credit_hold_grace_s,
        )

    # -- admission -----------------------------------------------------------

    def admit_call(
        self, limits: Limits, call_id: str, doc: Mapping[str, Any], now: int | None = None
    ) -> tuple[AdmitKeys, AdmitArgv]:
        """admit.lua's KEYS and ARGV for this call (decide.lua admits with the same)."""
        now = now or now_ms()
        return (
            AdmitKeys(
                lease=keys.lease(call_id),
                trunk_set=keys.channels("trunk", limits.trunk_id),
                org_set=keys.channels("org", limits.org_id),
                rule_set=keys.channels("rule", limits.rule_id or "-"),
                rate_window=keys.call_rate(limits.trunk_id, now // 1000),
                channel_trunks=keys.CHANNEL_TRUNKS,
                leases_kept=keys.LEASES_KEPT,
                ended=keys.ended(call_id),
            ),
            AdmitArgv(
                call_id=call_id,
                now_ms=now,
                pending_ms=self.pending_ms,
                set_ms=self.set_ms,
                trunk_max=limits.trunk_max,
                org_max=limits.org_max,
                rule_max=limits.rule_max,
                rule_id=limits.rule_id or "",
                cps_max=limits.cps_max,
                window_ttl_s=keys.CALL_RATE_TTL_S,
                trunk_id=limits.trunk_id,
                lease_doc=orjson.dumps(doc).decode(),
            ),
        )

    async def admit(self, limits: Limits, call_id: str, doc: Mapping[str, Any]) -> str:
        """ok | dup | the name of the full limit (scripts/admit.lua)."""
        call_keys, argv = self.admit_call(limits, call_id, doc)
        async with self.cache.translated("admit"):
            outcome = await self.scripts["admit"](keys=call_keys, args=argv)
        return _text(outcome)

    async def call_events(self, reports: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[str]:
        """Move each call's lease on and append its report to the stream, all in one
        Redis step (scripts/call_events.lua); the entry ids, in order."""
        call_keys = flat(
            CallEventsKeys(keys.CALL_EVENTS),
            [
                CallEventsKeysEach(
                    keys.lease(c), keys.ended(c), keys.credit_holds(str(d.get("org_id") or "-"))
                )
                for c, _, d in reports
            ],
        )
        argv = flat(
            CallEventsArgv(now_ms(), self.ringing_ms, self.max_call_ms, self.set_ms, self.hold_ms),
            [CallEventsArgvEach(c, e, orjson.dumps(doc)) for c, e, doc in reports],
        )
        cache = self.cache
        # the WAIT for replicas runs inside the same bound, so give it its time
        async with cache.translated("call events", extra_s=cache.replicas_wait_ms / 1000):
            ids = await cache.pinned.script(
                self.scripts["call_events"],
                call_keys,
                argv,
                replicas=cache.replicas_ack,
                wait_ms=cache.replicas_wait_ms,
            )
        return [_text(i) for i in ids]

    async def release_ended(self, call_ids: Sequence[str]) -> int:
        """Calls that ended while Redis was away: their leases go and their `ended`
        marks are left (scripts/ended.lua); how many leases were still there."""
        async with self.cache.translated("release ended calls"):
            released = await self.scripts["ended"](
                keys=flat(Empty(), [EndedKeysEach(keys.lease(c), keys.ended(c)) for c in call_ids]),
                args=flat(EndedArgv(self.ringing_ms), [EndedArgvEach(c) for c in call_ids]),
            )
        return int(released)

    async def channel_counts(self) -> dict[str, int] | None:
        """Live channels per trunk; None while Redis's leases are lost and not restored
        (keys.LEASES_KEPT), when every count would read zero."""
        async with self.cache.translated("channel counts"):
            pairs = await self.scripts["channel_counts"](
                keys=ChannelCountsKeys(keys.CHANNEL_TRUNKS, keys.LEASES_KEPT),
                args=ChannelCountsArgv(now_ms(), keys.channels("trunk", "")),
            )
        if pairs is None:
            return None
        return {pairs[i].decode(): int(pairs[i + 1]) for i in range(0, len(pairs), 2)}

    async def restore_channels(self, saved: Sequence[tuple[str, str, int]], window_s: float) -> int:
        """Put saved channel counts back as placeholder leases if Redis lost its leases
        (scripts/restore_channels.lua); how many it added (0 when Redis kept them)."""
        async with self.cache.translated("restore channels", bulk=True):
            added = await self.scripts["restore_channels"](
                keys=RestoreChannelsKeys(keys.LEASES_KEPT, keys.CHANNEL_TRUNKS),
                args=flat(
                    RestoreChannelsArgv(
                        now_ms(),
                        int(window_s * 1000),
                        self.set_ms,
                        keys.channels("trunk", ""),
                        keys.channels("org", ""),
                    ),
                    [RestoreChannelsArgvEach(t, o, n) for t, o, n in saved],
                ),
            )
        return int(added)

    # -- registrations -------------------------------------------------------

    async def apply_registration(self, trunk_id: str, report: RegistrationReport) -> bool:
        """Set (or drop) a trunk's registration unless Redis holds a newer one."""
        ts = report.ts.timestamp()
        # The key lives as long as the registration has left, not `expires` from now:
        # a report that arrives late (queued through an outage) must not outlive it.
        ttl = math.ceil(report.expires_at.timestamp() - time.time())
        value = b""
        if report.online and ttl > 0:
            reg = Registration(
                contact=report.contact,
                expires=int(report.expires_at.timestamp()),
                user_agent=report.user_agent,
                received=report.received,
            )
            extra = {"ts": ts, "call_id": report.call_id, "cseq": report.cseq}
            value = orjson.dumps({**reg.to_json(), **extra})
        async with self.cache.translated("write registration"):
            done = await self.scripts["register"](
                keys=RegisterKeys(
                    registration=keys.registration(trunk_id),
                    trunks_online=keys.TRUNKS_ONLINE,
                    gone_marker=keys.registration_gone(trunk_id),
                ),
                args=RegisterArgv(
                    trunk_id=trunk_id,
                    value=value,
                    ttl_s=max(ttl, 1),
                    ts=repr(ts),
                    call_id=report.call_id,
                    cseq=report.cseq,
                    marker_ttl_s=MAX_EXPIRES,
                ),
            )
        return bool(done)

    async def queue_registration(self, doc: Mapping[str, Any]) -> str:
        async with self.cache.translated("queue registration"):
            entry = await self.client.xadd(keys.REGISTRATION_QUEUE, {b"report": orjson.dumps(doc)})
        return _text(entry)

    # -- streams (the drainer's side) ----------------------------------------

    async def ensure_group(self, stream: str) -> None:
        async with self.cache.translated("create consumer group"):
            try:
                await self.client.xgroup_create(stream, keys.DRAIN_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read_own(self, stream: str, consumer: str, count: int) -> list[Entry]:
        """Entries this consumer read (or claimed) and has not acknowledged yet."""
        async with self.cache.translated("read own pending", bulk=True):
            got = await self.client.xreadgroup(
                keys.DRAIN_GROUP, consumer, {stream: "0"}, count=count
            )
        return (await self._entries(got)).get(stream, [])

    async def read_new(
        self, streams: Sequence[str], consumer: str, count: int, block_ms: int | None
    ) -> dict[str, list[Entry]]:
        """New entries of every stream in one call, waiting up to `block_ms` for some."""
        async with self.cache.translated("read new entries", bulk=True):
            got = await self.client.xreadgroup(
                keys.DRAIN_GROUP, consumer, dict.fromkeys(streams, ">"), count, block_ms
            )
        return await self._entries(got)

    async def _entries(self, got: StreamReply | None) -> dict[str, list[Entry]]:
        out: dict[str, list[Entry]] = {}
        for name, entries in got or []:
            stream = _text(name)
            gone: list[bytes] = []
            for entry_id, fields in entries:
                if fields:
                    out.setdefault(stream, []).append((_text(entry_id), fields))
                else:  # deleted while pending: nothing left to write, only to acknowledge
                    gone.append(entry_id)
            if gone:
                async with self.cache.translated("acknowledge deleted entries"):
                    await self.client.xack(stream, keys.DRAIN_GROUP, *gone)
        return out

    async def length(self, stream: str) -> int:
        async with self.cache.translated("stream length"):
            return int(await self.client.xlen(stream))

    async def claim_stale(self, stream: str, consumer: str, idle_ms: int, count: int) -> int:
        """Take over entries another consumer read and never acknowledged (it died)."""
        async with self.cache.translated("claim stream entries"):
            result = await self.client.xautoclaim(
                stream, keys.DRAIN_GROUP, consumer, idle_ms, "0", count=count, justid=True
            )
        return len(result[1]) if result else 0

    async def done(self, stream: str, ids: Sequence[str]) -> None:
        """Acknowledge and delete: the database holds these now."""
        if not ids:
            return
        async with self.cache.translated("acknowledge stream entries"):
            pipe = self.client.pipeline(transaction=True)
            pipe.xack(stream, keys.DRAIN_GROUP, *ids)
            pipe.xdel(stream, *ids)
            await pipe.execute()

    async def dead_letter(self, stream: str, entry: Entry, why: str, identity: str) -> bool:
        """Acknowledge the entry and keep it as a dead letter with the reason, unless the
        same report (`identity`) is one already; whether a dead letter was added."""
        entry_id, fields = entry
        extra: dict[bytes, bytes | str] = {b"why": why, b"from": stream, b"at": str(now_ms())}
        async with self.cache.translated("dead-letter"):
            added = await self.scripts["dead_letter"](
                keys=DeadLetterKeys(stream, keys.CALL_EVENTS_DEAD, keys.CALL_EVENTS_DEAD_INDEX),
                args=flat(
                    DeadLetterArgv(keys.DRAIN_GROUP, entry_id, identity),
                    [DeadLetterArgvEach(k, v) for k, v in {**fields, **extra}.items()],
                ),
            )
        return bool(added)

    async def dead_letters(self, count: int, after: str = "-") -> list[Entry]:
        """Up to `count` dead letters, oldest first, from `after` on (an id or "-")."""
        async with self.cache.translated("read dead letters", bulk=True):
            got = await self.client.xrange(keys.CALL_EVENTS_DEAD, after, "+", count)
        return [(_text(i), fields) for i, fields in got]

    async def replay_dead(self, ids: Sequence[str]) -> int:
        """Move dead letters back to their stream for the drainer; how many moved."""
        async with self.cache.translated("replay dead letters", bulk=True):
            moved = await self.scripts["replay_dead"](
                keys=flat(
                    ReplayDeadKeys(keys.CALL_EVENTS_DEAD, keys.CALL_EVENTS_DEAD_INDEX),
                    [ReplayDeadKeysEach(s) for s in (keys.CALL_EVENTS, keys.REGISTRATION_QUEUE)],
                ),
                args=flat(Empty(), [ReplayDeadArgvEach(i) for i in ids]),
            )
        return int(moved)
