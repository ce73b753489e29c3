"""Operations endpoints: /health (alive), /ready (dependencies + warmer + drainer), /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sipdata.http.handlers import SERVICE
from sipdata.http.responses import json_response
from sipdata.serving.health import ReadyCheck, readiness

READY_CHECKS: web.AppKey[list[ReadyCheck]] = web.AppKey("ready_checks", list)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    reasons, detail = await readiness(request.app[SERVICE], request.app.get(READY_CHECKS, []))
    return json_response(
        {"status": "unready" if reasons else "ready", "reasons": reasons, **detail},
        status=503 if reasons else 200,
    )


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[SERVICE].metrics.registry
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def routes() -> list[web.RouteDef]:
    return [web.get("/health", health), web.get("/ready", ready), web.get("/metrics", metrics)]
