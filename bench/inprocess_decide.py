"""In-process probe: sequential decisions/s and Redis commands per decision.

Needs the `make run` state (database `sipdata` with the demo data, a warm
generation). No HTTP and no load generator: it isolates the service's own
per-call work. Run: .venv/bin/python bench/inprocess_decide.py
"""

import asyncio
import datetime as dt
import time
from typing import Any

from sipdata.cache import Cache
from sipdata.decide.acl import canonical_ip
from sipdata.decide.invite import InviteQuery
from sipdata.metrics import Metrics
from sipdata.service import Service
from sipdata.settings import Settings
from sipdata.store import Store, create_pool

CALLS = 3000
WARMUP = 300


def commands(info: dict[str, Any]) -> int:
    return sum(int(v["calls"]) for v in info.values())


async def main() -> None:
    settings = Settings.from_env()
    cache = Cache.from_settings(settings)
    pool = await create_pool(settings, min_size=0)
    service = Service(settings, cache, Store(pool), Metrics())
    await service.catalog.refresh()
    query = InviteQuery(canonical_ip("127.0.0.10"), "12125551234", None, "bench")
    for _ in range(WARMUP):
        await service.decide_invite(query, dt.datetime.now(dt.UTC))
    before = commands(await cache.client.info("commandstats"))
    started = time.perf_counter()
    for _ in range(CALLS):
        await service.decide_invite(query, dt.datetime.now(dt.UTC))
    elapsed = time.perf_counter() - started
    after = commands(await cache.client.info("commandstats"))
    print(
        f"{CALLS / elapsed:.0f} decisions/s sequential in-process, "
        f"{elapsed / CALLS * 1e3:.3f} ms each, "
        f"{(after - before - 1) / CALLS:.1f} redis commands/decision"  # -1: the INFO itself
    )
    await pool.close()
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
