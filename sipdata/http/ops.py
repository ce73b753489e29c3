"""Operations endpoints: /health (alive), /ready (dependencies + warmer), /metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sipdata.errors import SipdataError
from sipdata.http.handlers import SERVICE
from sipdata.http.responses import json_response

# Readiness checks the app adds (the drainer's): each may add detail to the answer
# and returns why the process is not ready, or None.
ReadyCheck = Callable[[dict[str, object]], Awaitable[str | None]]
READY_CHECKS: web.AppKey[list[ReadyCheck]] = web.AppKey("ready_checks", list)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    reasons: list[str] = []
    detail: dict[str, object] = {}
    try:
        await service.cache.ping()
        beat = await service.cache.heartbeat()
        detail["generation"] = await service.cache.current_generation()
        if beat is None:
            reasons.append("warmer heartbeat missing or expired")
        else:
            age = time.time() - float(beat["at"])
            detail["warmer_age_s"] = round(age, 1)
            if age > service.settings.warm_interval_s * 3:
                reasons.append(f"warmer heartbeat is {age:.0f}s old")
        if detail["generation"] is None:
            reasons.append("no serving generation in redis")
        for check in request.app.get(READY_CHECKS, []):
            reason = await check(detail)
            if reason:
                reasons.append(reason)
    except SipdataError as exc:
        reasons.append(exc.message)
    try:
        await service.store.ping()
    except SipdataError as exc:
        reasons.append(exc.message)
    status = 200 if not reasons else 503
    return json_response(
        {"status": "ready" if not reasons else "unready", "reasons": reasons, **detail},
        status=status,
    )


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[SERVICE].metrics.registry
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def routes() -> list[web.RouteDef]:
    return [web.get("/health", health), web.get("/ready", ready), web.get("/metrics", metrics)]
