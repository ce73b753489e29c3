"""Fixtures on the real PostgreSQL and Redis: a database per run, a clean slate per test."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from sipdata.app import WRITEBACK, create_app
from sipdata.cache.client import Cache
from sipdata.db import migrate, provision
from sipdata.db.reads import Store
from sipdata.http.handlers import SERVICE
from sipdata.jobs.warmer import Warmer
from sipdata.metrics import Metrics
from sipdata.settings import Settings

PG = os.environ.get("SIPDATA_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("SIPDATA_TEST_REDIS", "redis://127.0.0.1:6379/14")
DB_NAME = f"sipdata_test_{os.getpid()}"

TABLES = [
    "cdrs",
    "usage_records",
    "messages",
    "messaging_campaigns",
    "invoices",
    "billing_accounts",
    "routing_rules",
    "lcr_rates",
    "e911_addresses",
    "phone_numbers",
    "trunk_acl",
    "trunk_registrations",
    "sip_trunks",
    "audit_logs",
    "api_keys",
    "users",
    "organization_settings",
    "organizations",
    "sipdata_changes",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    async def setup() -> None:
        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
        await admin.close()
        conn = await asyncpg.connect(f"{PG}/{DB_NAME}")
        await migrate.migrate(conn, dt.date.today())
        await conn.close()

    async def teardown() -> None:
        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.close()

    asyncio.run(setup())
    yield f"{PG}/{DB_NAME}"
    asyncio.run(teardown())


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=REDIS,
        warmer_enabled=False,
        writeback_enabled=False,  # tests drive the write-back steps themselves
        catalog_refresh_s=0.05,
        generation_grace_s=5,
        log_format="console",
        db_pool_min=1,
        db_pool_max=4,
    )


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    from sipdata.db.pool import create_pool

    p = await create_pool(settings)
    async with p.acquire() as conn:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    yield p
    await p.close()


@pytest.fixture
async def cache(settings: Settings) -> AsyncIterator[Cache]:
    c = Cache.from_settings(settings)
    await c.client.flushdb()
    yield c
    await c.close()


@pytest.fixture
async def demo(pool: asyncpg.Pool, settings: Settings) -> dict[str, int]:
    return await provision.load_demo(pool, settings.realm, dt.date.today())


def warmer(settings: Settings, cache: Cache, pool: asyncpg.Pool, **kw: Any) -> Warmer:
    return Warmer(settings, cache, Store(pool), Metrics(), **kw)


@pytest.fixture
async def warm(
    settings: Settings, cache: Cache, pool: asyncpg.Pool, demo: dict[str, int]
) -> dict[str, Any]:
    beat = await warmer(settings, cache, pool).load_once()
    assert beat is not None
    return beat


class Api:
    """A running app plus helpers, so tests read as requests and answers."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    @property
    def service(self) -> Any:
        return self.client.server.app[SERVICE]

    async def get(self, path: str, **params: str) -> tuple[int, dict[str, Any]]:
        resp = await self.client.get(path, params=params)
        return resp.status, await resp.json()

    async def post(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        resp = await self.client.post(path, json=body)
        return resp.status, await resp.json()

    async def decide(self, **params: str) -> dict[str, Any]:
        params.setdefault("call_id", "test-call")
        status, body = await self.get("/v1/decide/invite", **params)
        assert status == 200, body
        return body

    @property
    def writeback(self) -> Any:
        return self.client.server.app[WRITEBACK]

    async def refresh(self) -> None:
        await self.service.catalog.refresh()


async def start_api(settings: Settings) -> Api:
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return Api(client)


@pytest.fixture
async def api(settings: Settings, pool: asyncpg.Pool, cache: Cache) -> AsyncIterator[Api]:
    a = await start_api(settings)
    yield a
    await a.client.close()


class RedisServer:
    """A private redis-server for tests that break or restart Redis."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is required for this test"
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def kill(self) -> None:
        """kill -9: no shutdown, no final save; only what its files already hold survives."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer("--maxmemory-policy", "noeviction")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def durable_redis(tmp_path: Any) -> Iterator[RedisServer]:
    """A private redis-server run as docs/operations.md asks for acknowledged reports:
    AOF with `appendfsync always`, so a reply means the write is on disk."""
    server = RedisServer(
        "--maxmemory-policy",
        "noeviction",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        str(tmp_path),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_settings(settings: Settings, redis_server: RedisServer) -> Settings:
    return replace(settings, redis_url=redis_server.url)


async def raw_redis(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url)
