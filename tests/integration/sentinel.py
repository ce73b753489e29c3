"""A real Redis Sentinel set on loopback: a primary, a replica and three sentinels, each
its own redis-server process, started and always stopped by the tests that use it."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from .conftest import RedisServer, free_port

SERVICE = "sipdata"
# Sentinel's own timers, short so a failover takes seconds, not the default minutes.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


class SentinelProcess:
    """One sentinel (`redis-server sentinel.conf --sentinel`); it rewrites its own file."""

    def __init__(self, workdir: Path, primary_port: int) -> None:
        self.port = free_port()
        self.conf = workdir / f"sentinel-{self.port}.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is required for the Sentinel tests"
        self.proc = subprocess.Popen([exe, str(self.conf), "--sentinel"], stdout=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class SentinelSet:
    """Primary, replica, three sentinels; `primary()` asks the sentinels who leads now."""

    def __init__(self, workdir: Path) -> None:
        # --dir: a replica's full sync goes through an RDB file in its directory
        common = ("--maxmemory-policy", "noeviction", "--dir", str(workdir))
        common += ("--repl-diskless-sync-delay", "0")
        self.first = RedisServer(*common)
        self.second = RedisServer(*common, "--replicaof", "127.0.0.1", str(self.first.port))
        self.sentinels = [SentinelProcess(workdir, self.first.port) for _ in range(3)]

    @property
    def addresses(self) -> str:
        """SIPDATA_REDIS_SENTINELS for this set."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self) -> None:
        self.first.start()
        self.second.start()
        self.wait_replicated()
        for s in self.sentinels:
            s.start()
        # every sentinel must know the replica before a failover can promote it
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(self._knows_replica(s) for s in self.sentinels):
                return
            time.sleep(0.1)
        raise RuntimeError("the sentinels never saw the replica")

    def _knows_replica(self, s: SentinelProcess) -> bool:
        with contextlib.suppress(redis.RedisError):
            client = redis.Redis(port=s.port, socket_timeout=1)
            return bool(client.sentinel_slaves(SERVICE))
        return False

    def primary(self) -> int | None:
        """The primary's port as a majority-reachable sentinel names it."""
        for s in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                got = redis.Redis(port=s.port, socket_timeout=1).sentinel_get_master_addr_by_name(
                    SERVICE
                )
                if got:
                    return int(got[1])
        return None

    def wait_replicated(self, timeout_s: float = 20) -> None:
        """Until the replica holds everything the primary has acknowledged so far."""
        client = redis.Redis(port=self.first.port, socket_timeout=5)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            client.set("sentinel-test:marker", time.time())  # WAIT covers this client's writes
            if int(client.execute_command("WAIT", 1, 1000)) >= 1:
                return
        raise RuntimeError("the replica never caught up")

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        self.second.stop()
        self.first.stop()


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def sentinel_set(workdir: Path) -> Iterator[SentinelSet]:
    found = SentinelSet(workdir)
    try:
        found.start()
        yield found
    finally:
        found.stop()
