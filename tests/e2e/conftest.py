"""End-to-end fixtures: a database with the demo data per run; sipdata and Kamailio per test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import redis

from sipdata.db.provision import demo_id
from tests.e2e.harness import SUMMARIES, Kamailio, Sipdata, require

PG = os.environ.get("SIPDATA_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_DB = int(os.environ.get("SIPDATA_E2E_REDIS_DB", "13"))
DB_NAME = f"sipdata_e2e_{os.getpid()}"
T = TypeVar("T")

# The demo data's cast, by address (docs/api.md and sipdata/provision.py).
ACME_IP = "127.0.0.10"  # acme-ip: IP-authenticated customer trunk
ACME_OLD = "127.0.0.11"  # acme-old: suspended IP trunk
ALPHA, BRAVO, CHARLIE = "127.0.0.101", "127.0.0.102", "127.0.0.103"  # carrier gateways
STRANGER = "127.0.0.50"  # owned by no trunk
PBX = "127.0.0.20"  # where the digest trunk acme-pbx runs its PBX


def _cli(env: Mapping[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sipdata", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sipdata {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


@pytest.fixture(scope="session")
def e2e_env() -> Iterator[dict[str, str]]:
    """A database and Redis db of this run, migrated, with the demo data, warmed."""
    require("kamailio")
    require("sipp")
    env = {
        **os.environ,
        "SIPDATA_DATABASE_URL": f"{PG}/{DB_NAME}",
        "SIPDATA_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "SIPDATA_LOG_LEVEL": "info",
        # the suite reloads explicitly (Stack.warm) instead of waiting for a timer
        "SIPDATA_WARM_INTERVAL_S": "3600",
    }
    redis.Redis(db=REDIS_DB).flushdb()
    _cli(env, "migrate")
    _cli(env, "demo-data")
    _cli(env, "warm")
    yield env

    async def drop() -> None:
        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.close()

    asyncio.run(drop())
    redis.Redis(db=REDIS_DB).flushdb()


@dataclass
class Stack:
    """sipdata and Kamailio of one test, plus what tests need to look inside."""

    env: dict[str, str]
    workdir: Path
    sipdata: Sipdata
    kamailio: Kamailio
    extra: list[Kamailio] = field(default_factory=list)

    @property
    def target(self) -> str:
        return self.kamailio.target

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.env["SIPDATA_DATABASE_URL"])
            try:
                return list(await conn.fetch(query, *args))
            finally:
                await conn.close()

        return asyncio.run(run())

    def warm(self) -> None:
        """Load the database into a new generation now (the service switches within 1 s)."""
        _cli(self.env, "warm")

    def decide(self, source_ip: str, to: str) -> dict[str, Any]:
        result: dict[str, Any] = self.sipdata.get(
            f"/v1/decide/invite?source_ip={source_ip}&to={to}&call_id=probe&dry_run=1"
        )
        return result

    def cdrs(self, call_id_part: str) -> list[dict[str, Any]]:
        """CDR rows whose Call-ID contains `call_id_part` (written by sipdata's drainer)."""
        rows = self.sql("SELECT * FROM cdrs WHERE call_id LIKE $1", f"%{call_id_part}%")
        return [dict(r) for r in rows]

    def channels(self, trunk_id: str) -> int:
        """Live channel leases of a trunk in Redis."""
        client = redis.Redis(db=REDIS_DB)
        key = f"channels:trunk:{trunk_id}"
        client.zremrangebyscore(key, "-inf", int(time.time() * 1000))
        return int(client.zcard(key))

    def another_kamailio(self, defines: Sequence[str]) -> Kamailio:
        workdir = self.workdir / f"kamailio-{len(self.extra) + 1}"
        workdir.mkdir()
        kam = Kamailio(self.sipdata.url, workdir, defines)
        self.extra.append(kam)
        kam.start()
        return kam


def wait_for(probe: Callable[[], T | None], what: str, timeout_s: float = 10.0) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def stack(
    e2e_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    """`@pytest.mark.kamailio_defines(...)` adds -A defines for the test's Kamailio."""
    marker = request.node.get_closest_marker("kamailio_defines")
    # Gateway breakers outlive a test in Redis: each test starts with none open.
    redis.Redis(db=REDIS_DB).delete("gateways:breakers")
    sipdata = Sipdata(e2e_env, tmp_path / "sipdata.log")
    sipdata.start()
    kamailio = Kamailio(sipdata.url, tmp_path, marker.args if marker else ())
    try:
        kamailio.start()
    except Exception:
        sipdata.stop()
        raise
    s = Stack(e2e_env, tmp_path, sipdata, kamailio)
    try:
        yield s
    finally:
        for kam in [kamailio, *s.extra]:
            kam.stop()
        sipdata.stop()
    allowed = request.node.get_closest_marker("kamailio_log_allows")
    faults = [
        line
        for kam in [kamailio, *s.extra]
        for line in kam.script_faults()
        if not (allowed and any(text in line for text in allowed.args))
    ]
    assert not faults, "kamailio.cfg misbehaved:\n" + "\n".join(faults[:20])


__all__ = [
    "ACME_IP",
    "ALPHA",
    "BRAVO",
    "CHARLIE",
    "PBX",
    "STRANGER",
    "Stack",
    "demo_id",
    "wait_for",
]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Each SIPp scenario's calls, failures and response-time percentiles."""
    if SUMMARIES:
        terminalreporter.section("SIPp scenarios")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
