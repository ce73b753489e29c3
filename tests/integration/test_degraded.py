"""Redis or the database away: answers still come, and never look like an auth failure."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import asyncpg
import pytest

from sipdata.cache.client import Cache
from sipdata.http.handlers import SERVICE
from sipdata.settings import Settings

from .conftest import Api, RedisServer, free_port, start_api, warmer

pytestmark = pytest.mark.usefixtures("demo")


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def dead_redis(settings: Settings) -> Settings:
    return replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")


def dead_db(settings: Settings, port: int) -> Settings:
    return replace(settings, database_url=f"postgresql://postgres@127.0.0.1:{port}/sipdata")


async def test_redis_down_decisions_read_the_database(settings: Settings) -> None:
    """With Redis down decisions route from the database; /ready and /metrics say Redis is
    degraded."""
    api = await start_api(dead_redis(settings))
    try:
        body = await api.decide(source_ip="127.0.0.10", to="12125551234")
        assert body["verdict"] == "route", body
        assert set(body["explain"]["sources"].values()) == {"database"}
        status, ready = await api.get("/ready")
        assert status == 503 and any("redis" in r for r in ready["reasons"])
        metrics = await (await api.client.get("/metrics")).text()
        assert 'sipdata_degraded_total{reason="redis"}' in metrics
    finally:
        await api.client.close()


@pytest.mark.parametrize(
    "params",
    [
        {"source_ip": "198.51.100.7"},  # would be a challenge
        {"source_ip": "198.51.100.7", "auth_user": "acme-pbx"},  # would be digest
        {"source_ip": "127.0.0.10"},  # would be routed
    ],
)
async def test_redis_and_database_down_is_503_never_auth(settings: Settings, params: dict) -> None:
    """With Redis and the database down every decision is 503, never a challenge or a 403."""
    api = await start_api(dead_db(dead_redis(settings), free_port()))
    try:
        status, body = await api.get("/v1/decide/invite", to="12125551234", call_id="c", **params)
        assert status == 503
        assert (body["verdict"], body["code"], body["degraded"]) == ("reject", 503, True)
        assert body["error"]["code"] in {"database_unavailable", "redis_unavailable"}
    finally:
        await api.client.close()


async def test_database_down_warm_redis_still_routes(
    settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """With the database down a warm Redis still routes IP and digest callers."""
    await warmer(settings, cache, pool).load_once()
    api = await start_api(dead_db(settings, free_port()))
    try:
        body = await api.decide(source_ip="127.0.0.10", to="12125551234")
        assert body["verdict"] == "route", body
        assert set(body["explain"]["sources"].values()) == {"generation"}
        digest_call = await api.decide(
            source_ip="127.0.0.9", to="12125551234", auth_user="acme-pbx"
        )
        assert digest_call["auth"]["ha1"]
        status, ready = await api.get("/ready")
        assert status == 503 and any("database" in r for r in ready["reasons"])
    finally:
        await api.client.close()


async def calm(api: Api) -> None:
    """Wait until the server's loop keeps time: the warm just done in this same loop
    held it, and a Redis timeout right after would be taken for the process's own
    backlog and shed (serving/pressure.py), which is not what these tests are about."""
    pressure = api.client.app[SERVICE].pressure
    deadline = time.monotonic() + 10
    while pressure.busy:
        assert time.monotonic() < deadline, "the test's own loop never settled"
        await asyncio.sleep(0.05)


async def test_hung_redis_and_database_answer_503_within_the_deadline(
    private_settings: Settings, redis_server: RedisServer, pool: asyncpg.Pool, blackhole: int
) -> None:
    """Both stop answering (SIGSTOP, a silent port): sipdata answers 503 itself, on time."""
    settings = replace(
        dead_db(private_settings, blackhole),
        decision_deadline_ms=400,
        redis_timeout_ms=100,
        db_timeout_ms=100,
    )
    cache = Cache.from_settings(private_settings)
    await warmer(private_settings, cache, pool).load_once()
    await cache.close()
    api = await start_api(settings)
    try:
        ok = await api.decide(source_ip="127.0.0.10", to="12125551234")
        assert ok["verdict"] == "route"
        await calm(api)
        assert redis_server.proc is not None
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            resp = await api.client.get(
                "/v1/decide/invite",
                params={"source_ip": "127.0.0.10", "to": "12125551234", "call_id": "hung"},
            )
            status, body = resp.status, await resp.json()
            elapsed = time.monotonic() - started
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        assert status == 503 and body["code"] == 503
        assert body["error"]["code"] in {"deadline_exceeded", "database_unavailable"}
        # not a shed: the edge must not read it as one (kamailio/sipdata-invite.cfg)
        assert "Retry-After" not in resp.headers
        # Not a speed measurement: without the deadline this request would wait on
        # the silent servers; 5 s is far inside any Kamailio http timeout budget.
        assert elapsed < 5.0
    finally:
        await api.client.close()


async def test_decisions_above_the_in_flight_bound_are_shed_at_once(
    settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """One decision stuck behind a paused Redis holds the only slot: the next is
    answered 503 at once (a caller can try elsewhere), never a 403/407, with
    Retry-After: the one 503 that has it, which the edge reads as "shedding"."""
    await warmer(settings, cache, pool).load_once()
    api = await start_api(replace(settings, max_inflight_decisions=1))
    try:
        await calm(api)
        await cache.client.execute_command("CLIENT", "PAUSE", "600", "ALL")
        first = asyncio.create_task(
            api.get("/v1/decide/invite", source_ip="127.0.0.10", to="12125551234", call_id="a")
        )
        await asyncio.sleep(0.1)  # the first is in flight, waiting on Redis
        resp = await api.client.get(
            "/v1/decide/invite",
            params={"source_ip": "127.0.0.10", "to": "12125551234", "call_id": "b"},
        )
        status, shed = resp.status, await resp.json()
        assert not first.done(), "shed while the first still waits on the paused Redis"
        assert status == 503 and shed["error"]["code"] == "overloaded"
        assert resp.headers.get("Retry-After") == "1"
        assert (shed["verdict"], shed["code"], shed["degraded"]) == ("reject", 503, True)
        status, answer = await first
        assert status == 200 and answer["verdict"] == "route"  # from the database meanwhile
        status, again = await api.get(
            "/v1/decide/invite", source_ip="127.0.0.10", to="12125551234", call_id="c"
        )
        assert status == 200 and again["verdict"] == "route"  # the slot is free again
    finally:
        await api.client.close()


async def test_a_redis_timeout_while_the_process_is_behind_sheds_instead_of_reading_the_database(
    settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """Under a burst the loop runs behind, and a Redis reply already in the socket is
    read after its timeout fired. That is this process's backlog, not Redis failing:
    the decision is shed (503 overloaded, at once) rather than sent to the database,
    which would cost more and miss the deadline (issue 12's burst). Once the loop
    keeps time again, decisions route."""
    await warmer(settings, cache, pool).load_once()
    api = await start_api(settings)
    service = api.client.app[SERVICE]
    try:
        ok = await api.decide(source_ip="127.0.0.10", to="12125551234")
        assert ok["verdict"] == "route"  # the generation and this caller are known
        await calm(api)
        await cache.client.execute_command("CLIENT", "PAUSE", "2000", "ALL")
        decision = asyncio.create_task(
            api.get("/v1/decide/invite", source_ip="127.0.0.10", to="12125551234", call_id="x")
        )
        deadline = time.monotonic() + 10
        while service.inflight == 0:  # admitted: its Redis call is on its way
            assert time.monotonic() < deadline, "the decision never started"
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)
        # the loop held past the Redis timeout, as a burst holds it
        time.sleep(0.6)  # noqa: ASYNC251
        status, body = await decision
        assert status == 503 and body["error"]["code"] == "overloaded", body
        assert (body["verdict"], body["code"]) == ("reject", 503)
        await cache.client.execute_command("CLIENT", "UNPAUSE")
        deadline = time.monotonic() + 10
        while True:
            status, body = await api.get(
                "/v1/decide/invite", source_ip="127.0.0.10", to="12125551234", call_id="y"
            )
            if status == 200:
                break
            assert body["error"]["code"] == "overloaded"
            assert time.monotonic() < deadline, "still shedding long after the loop was freed"
            await asyncio.sleep(0.05)
        assert body["verdict"] == "route"
    finally:
        await api.client.close()
