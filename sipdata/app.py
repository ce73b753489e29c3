"""create_app(settings): resources via cleanup contexts; background tasks started and awaited."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web

from sipdata.cache.apikeys import ApiKeyCache
from sipdata.cache.client import Cache
from sipdata.db.admin import AdminStore
from sipdata.db.changes import ChangeLog, Wakeup
from sipdata.db.pool import create_pool
from sipdata.db.reads import Store
from sipdata.db.writes import Records
from sipdata.http import admin, events, handlers, openapi, ops
from sipdata.http.admin_auth import ADMIN
from sipdata.http.middleware import make_middleware
from sipdata.jobs.follow import Follower
from sipdata.jobs.outcomes import Outcomes
from sipdata.jobs.warmer import Warmer, load_in_child
from sipdata.jobs.writeback import WriteBack
from sipdata.metrics import Metrics
from sipdata.serving.admin import AdminService
from sipdata.serving.callbacks import Reports
from sipdata.serving.decision import Service
from sipdata.serving.health import ReadyCheck
from sipdata.settings import Settings

WARMER: web.AppKey[Warmer] = web.AppKey("warmer", Warmer)
FOLLOWER: web.AppKey[Follower] = web.AppKey("follower", Follower)
WRITEBACK: web.AppKey[WriteBack] = web.AppKey("writeback", WriteBack)


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel and await a background task. Cancelled again if a library swallowed the
    first cancellation (a client catching CancelledError mid-request), so shutdown
    can never hang on it."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


def create_app(settings: Settings, metrics: Metrics | None = None) -> web.Application:
    metrics = metrics or Metrics()
    app = web.Application(
        middlewares=[make_middleware(metrics, settings.api_token)],
        client_max_size=settings.max_batch_bytes,  # each endpoint enforces its own cap
    )
    app[handlers.MAX_BODY] = settings.max_body_bytes
    app[events.MAX_BATCH_BODY] = settings.max_batch_bytes
    app[admin.MAX_DECK] = settings.max_deck_bytes

    async def resources(app: web.Application) -> AsyncIterator[None]:
        redis = Cache.from_settings(settings)
        # min_size 0: the service starts (and serves from Redis) while the database is away.
        pool = await create_pool(settings, min_size=0)
        service = Service(settings, redis, Store(pool), metrics)
        app[handlers.SERVICE] = service
        app[ADMIN] = AdminService(AdminStore(pool), ApiKeyCache(redis), settings.realm)
        records = Records(pool, on_retry=metrics.db_retries.inc)
        app[events.REPORTS] = Reports(
            settings, service, service.live, records, metrics, health=service.routing_health
        )
        app[WARMER] = Warmer(settings, redis, service.store, metrics)
        app[FOLLOWER] = Follower(
            app[WARMER],
            ChangeLog(pool),
            Wakeup(settings.database_url),
            functools.partial(load_in_child, settings),
        )
        app[WRITEBACK] = WriteBack(
            settings,
            redis,
            service.live,
            records,
            metrics,
            busy=service.under_load,
            outcomes=Outcomes(service.routing_health, metrics),
        )
        checks: list[ReadyCheck] = []
        if settings.writeback_enabled:
            checks.append(app[WRITEBACK].readiness)
        if settings.warmer_enabled:
            checks.append(app[FOLLOWER].readiness)
        app[ops.READY_CHECKS] = checks
        try:
            yield
        finally:
            await service.lease_docs.aclose()
            await pool.close()
            await redis.close()

    async def background(app: web.Application) -> AsyncIterator[None]:
        service = app[handlers.SERVICE]
        jobs: list[Coroutine[Any, Any, None]] = [
            service.catalog.run(settings.catalog_refresh_s),
            service.pressure.run(),
        ]
        if settings.warmer_enabled:
            jobs.append(app[FOLLOWER].run())
        if settings.writeback_enabled:
            # the balances credit holds draw on, with the rest of the write-back
            jobs.extend(
                [
                    *app[WRITEBACK].loops(),
                    service.credit.refresh_loop(),
                    app[events.REPORTS].release_loop(),
                ]
            )
        tasks = [asyncio.create_task(job) for job in jobs]
        try:
            yield
        finally:
            for task in tasks:
                await _stop(task)

    app.cleanup_ctx.extend([resources, background])
    app.add_routes(handlers.routes())
    app.add_routes(events.routes())
    app.add_routes(ops.routes())
    app.add_routes(admin.routes())
    app.add_routes(openapi.routes())
    return app
