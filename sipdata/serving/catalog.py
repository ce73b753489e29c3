"""The process-local view of the serving generation: its id, epoch, ACL prefix lengths, carriers.

Refreshed in the background, so a request computes its probe keys without
asking Redis first; a superseded generation stays readable for
`generation_grace_s`, far longer than one refresh interval. A changed epoch
(the follower patched the generation in place) replaces the view too, with
empty memos: freshness is one refresh interval after the patch.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Final, Generic, Literal, TypeVar

import orjson
import structlog

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.decide.acl import IPAddress
from sipdata.decide.models import AclHit, Carrier, Credential
from sipdata.decide.rules import OrgRules
from sipdata.errors import CacheUnavailable
from sipdata.metrics import Metrics

log = structlog.get_logger(__name__)


MEMO_SIZE = 65536  # answers held per kind; callers and their orgs are far fewer than calls
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Missing(enum.Enum):
    """Not in the memo (distinct from a memoised None: "no such owner/user")."""

    MISSING = 0


MISSING: Final = Missing.MISSING


class Memo(Generic[K, V]):
    """Answers already read from one generation, decoded, least recently used dropped.

    A generation never changes once it serves, so an answer read from it stays
    true for as long as the GenerationView that holds the memo: who a source
    address or a digest user is, and an org's rules. Calls repeat callers, so the
    decision asks Redis only for what differs per call (scripts/decide.lua).
    """

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | Literal[Missing.MISSING]:
        if key not in self._entries:
            return MISSING
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)


@dataclass(frozen=True, slots=True)
class GenerationView:
    """What this process knows of the serving generation: its id (None: Redis has
    none, so every read goes to the database) and epoch, the ACL prefix lengths to
    probe, the carriers, and the memo of answers read from it at that epoch."""

    gen: int | None = None
    epoch: int = 0
    acl_lengths: dict[int, tuple[int, ...]] = field(default_factory=dict)
    carriers: dict[str, Carrier] = field(default_factory=dict)
    acl: Memo[IPAddress, AclHit | None] = field(default_factory=Memo, compare=False, repr=False)
    creds: Memo[str, Credential | None] = field(default_factory=Memo, compare=False, repr=False)
    rules: Memo[str, OrgRules] = field(default_factory=Memo, compare=False, repr=False)


class Catalog:
    def __init__(self, cache: Cache, metrics: Metrics) -> None:
        self.cache = cache
        self.metrics = metrics
        self.view = GenerationView()
        self._lock = asyncio.Lock()

    async def refresh(self) -> GenerationView:
        """Adopt the current generation and epoch if either changed; keep the old view
        on errors."""
        async with self._lock:
            gen, epoch = await self.cache.serving_state()
            if gen == self.view.gen and epoch == self.view.epoch:
                return self.view
            if gen is None:
                view = GenerationView(epoch=epoch)
            else:
                lengths = await self.cache.acl_lengths(gen)
                carriers = await self.cache.hash_all(keys.KIND_CARRIER, gen)
                view = GenerationView(
                    gen=gen,
                    epoch=epoch,
                    acl_lengths=lengths,
                    carriers={k: Carrier.from_json(orjson.loads(v)) for k, v in carriers.items()},
                )
            if gen != self.view.gen:
                log.info("catalog_switched", generation=gen, epoch=epoch)
            self.view = view
            self.cache.epoch = epoch
            self.metrics.generation.set(gen or 0)
            return self.view

    async def run(self, interval_s: float) -> None:
        while True:
            with contextlib.suppress(CacheUnavailable):
                await self.refresh()
            await asyncio.sleep(interval_s)
