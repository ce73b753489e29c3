"""The process-local view of the serving generation: its id, ACL prefix lengths, carriers.

Refreshed in the background, so a request computes its probe keys without
asking Redis first; a superseded generation stays readable for
`generation_grace_s`, far longer than one refresh interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import orjson
import structlog

from sipdata import keys
from sipdata.cache import Cache
from sipdata.decide.models import Carrier
from sipdata.errors import CacheUnavailable
from sipdata.metrics import Metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class View:
    gen: int | None = None
    acl_lengths: dict[int, tuple[int, ...]] = field(default_factory=dict)
    carriers: dict[str, Carrier] = field(default_factory=dict)


class Catalog:
    def __init__(self, cache: Cache, metrics: Metrics) -> None:
        self.cache = cache
        self.metrics = metrics
        self.view = View()
        self._lock = asyncio.Lock()

    async def refresh(self) -> View:
        """Adopt the current generation if it changed; keep the old view on errors."""
        async with self._lock:
            gen = await self.cache.current_generation()
            if gen == self.view.gen:
                return self.view
            if gen is None:
                self.view = View()
            else:
                manifest = await self.cache.manifest(gen) or {}
                carriers = await self.cache.hash_all(keys.KIND_CARRIER, gen)
                self.view = View(
                    gen=gen,
                    acl_lengths={
                        4: tuple(manifest.get("acl_v4_lengths", ())),
                        6: tuple(manifest.get("acl_v6_lengths", ())),
                    },
                    carriers={k: Carrier.from_json(orjson.loads(v)) for k, v in carriers.items()},
                )
            self.metrics.generation.set(gen or 0)
            log.info("catalog_switched", generation=gen)
            return self.view

    async def run(self, interval_s: float) -> None:
        while True:
            with contextlib.suppress(CacheUnavailable):
                await self.refresh()
            await asyncio.sleep(interval_s)
