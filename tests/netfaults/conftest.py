"""The network-fault lab: Kamailio and its callers, two sipdata nodes, Redis and the database
each in a namespace of their own, with the real processes; one lab per module."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.harness import KAMAILIO_CFG, Sipp, _stop, require, wait_up
from tests.netfaults.net import Lab, require_tools

PG = os.environ.get("SIPDATA_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
DB_NAME = f"sipdata_faults_{os.getpid()}"
TOKEN = "faults-token"
HTTP_PORT = 8480
ROLES = ("edge", "a", "b", "redis", "db")
# The demo data's cast, on the edge host's own loopback (docs/api.md).
ACME_IP, BRAVO = "127.0.0.10", "127.0.0.102"
LCR_NUMBER = "12125551234"
FIGURES: list[str] = []


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


@dataclass
class World:
    """The lab and its processes, plus what the tests read and change."""

    lab: Lab
    workdir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, node: str) -> str:
        return f"http://{self.lab[node].ip}:{HTTP_PORT}"

    def get(self, node: str, path: str, timeout_s: float = 2.0) -> Any:
        with urllib.request.urlopen(self.url(node) + path, timeout=timeout_s) as resp:
            return resp.status

    def api(self, node: str, path: str) -> Any:
        """A JSON answer of a node's API, with the shared secret."""
        request = urllib.request.Request(
            self.url(node) + path, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.loads(resp.read())

    def latency(self, role: str, ms: int) -> None:
        """Extra one-way latency on the relay in front of `role` (redis, db)."""
        (self.workdir / f"latency-{role}").write_text(str(ms))

    def heal_all(self) -> None:
        for role in ROLES:
            self.lab.heal(role)
        for role in ("redis", "db"):
            self.latency(role, 0)

    def edge_log(self) -> str:
        return (self.workdir / "kamailio.log").read_text(errors="replace")

    def kamcmd(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [require("kamcmd"), "-s", f"unix:{self.workdir}/kamailio-ctl", *command],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )

    def edge_answers(self) -> bool:
        return self.kamcmd("core.uptime").returncode == 0

    def down_nodes(self) -> str:
        """The edge's htable of nodes marked down ("" when none is)."""
        return self.kamcmd("htable.dump", "nodedown").stdout

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(f"{PG}/{DB_NAME}")
            try:
                return list(await conn.fetch(query, *args))
            finally:
                await conn.close()

        return asyncio.run(run())

    def cdrs(self, marker: str) -> list[asyncpg.Record]:
        return self.sql("SELECT call_id FROM cdrs WHERE call_id LIKE $1", f"%{marker}%")

    def sipp(self, scenario: str, ip: str, **kw: Any) -> Sipp:
        """A SIPp party on the edge host (the carriers and callers live there)."""
        party = Sipp(scenario, self.workdir, ip=ip, **kw)
        party.cmd = self.lab["edge"].run(*party.cmd)
        return party

    def bound(self, ip: str, port: int) -> bool:
        done = subprocess.run(
            self.lab["edge"].run("ss", "-Hlun", f"src {ip}:{port}"),
            capture_output=True,
            text=True,
            check=False,
        )
        return bool(done.stdout.strip())


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sipdata", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sipdata {' '.join(args)}: {done.stderr[-2000:]}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_tools()
    require("kamailio")
    require("sipp")
    workdir = tmp_path_factory.mktemp("netfaults")
    lab = Lab(ROLES)
    lab.build()
    world = World(lab, workdir, {})
    try:
        _start(world)
        yield world
    finally:
        for proc in world.procs.values():
            _stop(proc)
        lab.remove()

        async def drop() -> None:
            admin = await asyncpg.connect(f"{PG}/postgres")
            await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            await admin.close()

        asyncio.run(drop())


def _start(world: World) -> None:
    lab, workdir = world.lab, world.workdir
    redis_ip, db_ip = lab["redis"].ip, lab["db"].ip
    for role in ("redis", "db"):
        world.latency(role, 0)
    # Redis on its host's loopback, reached through a relay on its link
    world.procs["redis"] = _spawn(
        lab["redis"].run(
            require("redis-server"),
            "--port",
            "6380",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ),
        workdir / "redis.log",
    )
    relay = [sys.executable, "-m", "tests.netfaults.relay"]
    world.procs["redis-relay"] = _spawn(
        lab["redis"].run(
            *relay,
            "--listen",
            f"{redis_ip}:6379",
            "--upstream",
            "127.0.0.1:6380",
            "--control",
            str(workdir / "latency-redis"),
        ),
        workdir / "relay-redis.log",
    )
    # The machine's PostgreSQL, reached on the db host's link (the relay listens
    # inside that namespace and connects out from the root one)
    world.procs["db-relay"] = _spawn(
        [
            *relay,
            "--netns",
            lab["db"].name,
            "--listen",
            f"{db_ip}:5432",
            "--upstream",
            "127.0.0.1:5432",
            "--control",
            str(workdir / "latency-db"),
        ],
        workdir / "relay-db.log",
    )
    world.env = {
        **os.environ,
        "SIPDATA_DATABASE_URL": f"postgresql://postgres@{db_ip}:5432/{DB_NAME}",
        "SIPDATA_REDIS_URL": f"redis://{redis_ip}:6379/0",
        "SIPDATA_API_TOKEN": TOKEN,
        "SIPDATA_HTTP_PORT": str(HTTP_PORT),
        "SIPDATA_WORKERS": "1",
        "SIPDATA_LOG_LEVEL": "info",
        "SIPDATA_DRAIN_BACKOFF_MAX_S": "1",
    }

    async def create() -> None:
        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
        await admin.close()

    asyncio.run(create())
    wait_up(lambda: _cli(world.env, "migrate") is None, "the database through its relay")
    _cli(world.env, "demo-data")
    _cli(world.env, "warm")
    for node in ("a", "b"):
        env = {**world.env, "SIPDATA_HTTP_HOST": lab[node].ip}
        world.procs[node] = _spawn(
            lab[node].run(sys.executable, "-m", "sipdata", "serve"),
            workdir / f"sipdata-{node}.log",
            env,
        )
    for node in ("a", "b"):
        wait_up(lambda n=node: world.get(n, "/ready") == 200, f"sipdata {node}")
    nodes = ",".join(world.url(n) for n in ("a", "b"))
    defines = [
        "SIP_LISTEN=udp:127.0.0.1:5060",
        f'SIPDATA_NODES="{nodes}"',
        f'SIPDATA_SECRET="{TOKEN}"',
        "SIP_CHILDREN=4",
        'REPORT_RETRY_TIMER="name=reports;interval=1;mode=1;"',
        # the lab's carriers are SIPp scenarios: no OPTIONS for them
        "WITHOUT_GATEWAY_PROBES",
        f'CTL_SOCKET="unix:{workdir}/kamailio-ctl"',
        f'RPC_FIFO="{workdir}/kamailio_rpc.fifo"',
    ]
    args = [require("kamailio"), "-f", str(KAMAILIO_CFG), "-DD", "-E", "-x", "tlsf"]
    args += ["-Y", str(workdir), "-P", str(workdir / "kamailio.pid")]
    for define in defines:
        args += ["-A", define]
    world.procs["kamailio"] = _spawn(lab["edge"].run(*args), workdir / "kamailio.log")
    wait_up(world.edge_answers, "kamailio's control socket")
    wait_up(lambda: world.bound("127.0.0.1", 5060), "kamailio's SIP socket")


@pytest.fixture
def healed(world: World) -> Iterator[World]:
    """The lab with no fault on it, and none left behind by the test."""
    world.heal_all()
    try:
        yield world
    finally:
        world.heal_all()


@contextlib.contextmanager
def answering(world: World, calls: int) -> Iterator[Sipp]:
    """The cheapest carrier answering up to `calls` calls on the edge host."""
    carrier = world.sipp("uas_answer", BRAVO, calls=calls, timeout_s=120)
    carrier.start()
    wait_up(lambda: world.bound(BRAVO, 5060), "the carrier", 10)
    try:
        yield carrier
    finally:
        carrier.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What each fault cost: calls failed and time to recover."""
    if FIGURES:
        terminalreporter.section("network faults")
        for line in FIGURES:
            terminalreporter.write_line(line)
