"""The decision's one Redis round trip (scripts/decide.lua) and the lease writes around it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.cache.live import LiveState
from sipdata.cache.scripts import (
    AdmitKeys,
    DecideArgv,
    DecideKeys,
    Empty,
    LeaseDocsArgvEach,
    LeaseDocsKeysEach,
    ReleaseArgv,
    ReleaseKeys,
    flat,
)
from sipdata.decide.admission import Limits
from sipdata.errors import CacheUnavailable

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TripResult:
    """What decide.lua brought back (raw stored values; None = absent)."""

    current: int | None
    lcr: dict[str, tuple[str, bytes] | None]  # number -> (stored prefix, entry)
    did: bytes | None
    did_rt: bytes | None
    registrations: dict[str, bytes | None]
    admission: str | None  # None: not asked to admit
    breakers: dict[str, bytes] = field(default_factory=dict)  # gateway -> packed breaker
    quality: dict[str, bytes] = field(default_factory=dict)  # carrier -> summary JSON


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat_pairs: Sequence[bytes]) -> dict[str, bytes]:
    return {_text(flat_pairs[i]): flat_pairs[i + 1] for i in range(0, len(flat_pairs), 2)}


class OneTrip:
    """The decision's one round trip, and the lease writes around it."""

    def __init__(
        self, cache: Cache, live: LiveState, slack: Callable[[], float] = lambda: 0.0
    ) -> None:
        self.cache = cache
        self.live = live
        self.slack = slack  # seconds added to the Redis timeout (the loop's own lateness)

    async def fetch(
        self,
        gen: int,
        *,
        number: str,
        numbers: Sequence[str],
        did_readthrough: bool,
        registrations: Sequence[str],
        admit: tuple[Limits, str, Mapping[str, object]] | None,
        quality: bool = False,
    ) -> TripResult:
        params: dict[str, object] = {
            "gen": str(gen),
            "number": number,
            "did_rt": did_readthrough,
            "numbers": list(numbers),
            "registrations": list(registrations),
            "registration_prefix": keys.REGISTRATION_PREFIX,
            "quality": quality,
        }
        admit_keys = AdmitKeys(*(["-"] * len(AdmitKeys._fields)))
        if admit is not None:
            limits, call_id, doc = admit
            admit_keys, argv = self.live.admit_call(limits, call_id, doc)
            params["admit"] = list(argv)
        trip_keys = DecideKeys(
            keys.CURRENT,
            keys.gen_key(keys.KIND_LCR, gen),
            keys.gen_key(keys.KIND_DID, gen),
            keys.readthrough("did", number, self.cache.epoch),
            *admit_keys,
            keys.GATEWAY_BREAKERS,
            keys.QUALITY_CARRIERS,
        )
        async with self.cache.translated("decide", extra_s=self.slack()):
            out = await self.cache.pinned.script(
                self.cache.scripts["decide"], trip_keys, DecideArgv(orjson.dumps(params))
            )
        current = int(out[0]) if out[0] else None
        if current != gen:
            return TripResult(current, {}, None, None, {}, None)
        flat_lcr, flat_regs = out[1], out[4]
        lcr = {
            n: (_text(flat_lcr[2 * i]), flat_lcr[2 * i + 1]) if flat_lcr[2 * i] else None
            for i, n in enumerate(numbers)
        }
        regs = {
            _text(flat_regs[i]): (flat_regs[i + 1] or None) for i in range(0, len(flat_regs), 2)
        }
        return TripResult(
            current=current,
            lcr=lcr,
            did=out[2],
            did_rt=out[3],
            registrations=regs,
            admission=_text(out[5]) if admit is not None and out[5] else None,
            breakers=_pairs(out[6]),
            quality=_pairs(out[7]),
        )

    async def release(self, call_id: str) -> None:
        """Give back a lease taken for a call that did not route after all."""
        async with self.cache.translated("release"):
            await self.cache.scripts["release"](
                keys=ReleaseKeys(keys.lease(call_id)), args=ReleaseArgv(call_id)
            )

    async def write_docs(self, docs: Mapping[str, bytes]) -> None:
        async with self.cache.translated("lease docs"):
            await self.cache.pinned.script(
                self.cache.scripts["lease_docs"],
                flat(Empty(), [LeaseDocsKeysEach(keys.lease(c)) for c in docs]),
                flat(Empty(), [LeaseDocsArgvEach(d) for d in docs.values()]),
            )


class LeaseDocs:
    """Lease documents written after the decision answered, many per Redis call.

    The destinations of a routed call are only known once the round trip that
    admitted it is back; the CDR needs them when the call ends (seconds later
    at the earliest), so they need not hold up the answer. Under load one
    write carries the documents of every decision made meanwhile.
    """

    def __init__(
        self, trip: OneTrip, on_error: Callable[[], None] | None = None, gather_s: float = 0.005
    ) -> None:
        self.trip = trip
        self.on_error = on_error
        # How long a document waits for others to share its write: a few ms is
        # nothing to a call that ends seconds later, and makes batches worth it.
        self.gather_s = gather_s
        self._pending: dict[str, bytes] = {}
        self._task: asyncio.Task[None] | None = None

    def put(self, call_id: str, doc: Mapping[str, Any]) -> None:
        self._pending[call_id] = orjson.dumps(doc)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(self.gather_s)
        while self._pending:
            batch, self._pending = self._pending, {}
            try:
                await self.trip.write_docs(batch)
            except CacheUnavailable as exc:
                # The call still routes and ends normally; its CDR lacks the rate.
                log.warning("lease_docs_not_written", calls=len(batch), why=str(exc))
                if self.on_error is not None:
                    self.on_error()

    async def aclose(self) -> None:
        """Write what is pending (shutdown)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
