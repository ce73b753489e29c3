"""Operations endpoints: health, readiness with reasons, Prometheus metrics."""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import pytest

from sipdata.cache.client import Cache
from sipdata.settings import Settings

from .calls import eventually
from .conftest import Api, start_api, warmer

pytestmark = pytest.mark.usefixtures("demo")


async def test_health_is_alive_without_dependencies(api: Api) -> None:
    """/health answers while the process runs, whatever its dependencies do."""
    assert await api.get("/health") == (200, {"status": "ok"})


async def test_ready_needs_a_fresh_warmer_heartbeat(
    api: Api, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """/ready is 503 naming the missing warmer heartbeat until a load has run."""
    status, body = await api.get("/ready")
    assert status == 503 and body["status"] == "unready"
    assert "warmer heartbeat missing or expired" in body["reasons"]
    beat = await warmer(settings, cache, pool).load_once()
    status, body = await api.get("/ready")
    assert beat and status == 200 and body["reasons"] == []
    assert body["generation"] == beat["generation"]


async def test_metrics_count_requests_lookups_and_warmer(
    api: Api, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """/metrics counts requests by endpoint and status, lookups by source, and the warmer's runs."""
    await api.decide(source_ip="127.0.0.10", to="12125551234")  # cold: database
    await api.get("/v1/lcr", number="x")  # a 400
    resp = await api.client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert 'sipdata_http_requests_total{endpoint="/v1/decide/invite",status="200"} 1.0' in text
    assert 'sipdata_http_requests_total{endpoint="/v1/lcr",status="400"} 1.0' in text
    assert 'sipdata_http_request_seconds_bucket{endpoint="/v1/decide/invite"' in text
    assert 'sipdata_cache_lookups_total{kind="acl",source="database"} 1.0' in text
    assert "sipdata_warmer_last_success_timestamp_seconds" in text


async def test_in_process_warmer_runs_and_reports(
    settings: Settings, pool: asyncpg.Pool, cache: Cache
) -> None:
    """The follower started inside serve makes the first full load (in a child process),
    /ready turns ready, and /metrics reports the load."""

    api = await start_api(replace(settings, warmer_enabled=True))

    async def ready() -> bool:
        return (await api.get("/ready"))[0] == 200

    async def loaded() -> bool:
        text = await (await api.client.get("/metrics")).text()
        prefix = "sipdata_warmer_last_success_timestamp_seconds "
        line = next(x for x in text.splitlines() if x.startswith(prefix))
        return float(line.split()[1]) > 0

    try:
        await eventually(ready, "/ready after the first full load")
        await eventually(loaded, "the full load's time in /metrics")
    finally:
        await api.client.close()
