"""In-process probe: sequential decisions/s and Redis commands per decision.

Needs the `make run` state (database `sipdata` with the demo data, a warm
generation). No HTTP and no load generator: it isolates the service's own
per-call work. Run: .venv/bin/python bench/inprocess_decide.py
"""

import asyncio
import dataclasses
import datetime as dt
import time
from typing import Any

from sipdata.cache.client import Cache
from sipdata.db.pool import create_pool
from sipdata.db.reads import Store
from sipdata.decide.acl import canonical_ip
from sipdata.decide.invite import InviteQuery
from sipdata.metrics import Metrics
from sipdata.serving.decision import Service
from sipdata.settings import Settings

CALLS = 3000
WARMUP = 300


def commands(info: dict[str, Any]) -> int:
    return sum(int(v["calls"]) for v in info.values())


async def main() -> None:
    settings = Settings.from_env()
    if hasattr(settings, "lease_pending_s"):
        # Leases lapse at once, so the demo trunk's limits never fill up and every call
        # takes the full admission path (in production an end report releases them).
        settings = dataclasses.replace(settings, lease_pending_s=0.001)
    cache = Cache.from_settings(settings)
    pool = await create_pool(settings, min_size=0)
    service = Service(settings, cache, Store(pool), Metrics())
    await service.catalog.refresh()
    ip = canonical_ip("127.0.0.10")
    # A Call-ID per decision: each routed call takes (and leaves) its own channel lease.
    queries = [InviteQuery(ip, "12125551234", None, f"bench-{i}") for i in range(CALLS + WARMUP)]
    for query in queries[:WARMUP]:
        await service.decide_invite(query, dt.datetime.now(dt.UTC))
    before = commands(await cache.client.info("commandstats"))
    started = time.perf_counter()
    verdicts = set()
    for query in queries[WARMUP:]:
        verdicts.add((await service.decide_invite(query, dt.datetime.now(dt.UTC)))["verdict"])
    assert verdicts == {"route"}, verdicts
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
