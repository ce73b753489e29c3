"""A call that ends while Redis cannot take its report: the CDR goes to the database at once,
and the channel its lease holds is given back as soon as Redis answers again (no ghost
channel until the lease's TTL)."""

from __future__ import annotations

import time
from dataclasses import replace

import asyncpg
import pytest

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.db.provision import demo_id
from sipdata.http.events import REPORTS
from sipdata.settings import Settings

from .calls import call_report, cdrs
from .conftest import RedisServer, raw_redis, start_api, warmer

ACME_IP = demo_id("trunk:acme-ip")


@pytest.mark.usefixtures("demo")
async def test_a_call_ended_while_redis_stalled_gives_its_channel_back_when_it_answers(
    private_settings: Settings, pool: asyncpg.Pool, redis_server: RedisServer
) -> None:
    settings = replace(private_settings, redis_timeout_ms=200)
    cache = Cache.from_settings(settings)
    await warmer(settings, cache, pool).load_once()
    api = await start_api(settings)
    raw = await raw_redis(settings.redis_url)
    try:
        await api.refresh()
        answer = await api.decide(source_ip="127.0.0.10", to="12125551234", call_id="stalled")
        assert answer["explain"]["admission"] == "ok"
        assert await raw.zcard(keys.channels("trunk", ACME_IP)) == 1
        await raw.execute_command("CLIENT", "PAUSE", "3000", "WRITE")  # writes hang
        t0 = time.time() - 30
        status, body = await api.post("/v1/events/call", call_report("stalled", "fail", t0))
        assert status == 202 and body["stored"] == "database", body
        assert len(await cdrs(pool, "stalled")) == 1
        reports = api.client.server.app[REPORTS]
        await raw.execute_command("CLIENT", "UNPAUSE")
        assert await reports.release_unreleased() == 1
        assert await raw.zcard(keys.channels("trunk", ACME_IP)) == 0
        assert not await raw.exists(keys.lease("stalled"))
        assert await raw.exists(keys.ended("stalled"))
        # Kamailio's kept start report, sent again now, takes no channel back
        status, _ = await api.post("/v1/events/call", call_report("stalled", "start", t0))
        assert status == 202
        assert await raw.zcard(keys.channels("trunk", ACME_IP)) == 0
        assert await reports.release_unreleased() == 0  # nothing left to give back
    finally:
        await raw.execute_command("CLIENT", "UNPAUSE")
        await raw.aclose()
        await api.client.close()
        await cache.close()
