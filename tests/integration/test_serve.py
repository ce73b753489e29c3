"""`sipdata serve` as an operator starts it: it refuses to expose HA1s without a secret,
and what the HTTP server refuses by itself is answered in the one JSON error shape."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from sipdata.settings import Settings

from .conftest import free_port
from .test_cli import run


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.0.2.1"], ids=["any-v4", "any-v6", "one-address"]
)
def test_serve_refuses_a_public_address_without_a_shared_secret(
    settings: Settings, host: str
) -> None:
    """Without SIPDATA_API_TOKEN anyone reaching the port could read every trunk's HA1:
    `serve` stops at once, naming the setting, instead of starting silently."""
    result = run(settings, "serve", env={"SIPDATA_HTTP_HOST": host, "SIPDATA_API_TOKEN": ""})
    assert result.returncode == 2, result.stderr
    assert "SIPDATA_API_TOKEN" in result.stderr and "Traceback" not in result.stderr


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def raw(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send bytes, read the answer until the server closes: status, headers, body."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(request)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_serve(settings: Settings, port: int, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`sipdata serve` on `port` against the test's database and Redis, no warmer."""
    env = {
        **os.environ,
        "SIPDATA_DATABASE_URL": settings.database_url,
        "SIPDATA_REDIS_URL": settings.redis_url,
        "SIPDATA_HTTP_PORT": str(port),
        "SIPDATA_WARMER_ENABLED": "false",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sipdata", "serve", *args], env=env, stdout=out, stderr=out
        )


@pytest.fixture
def served(settings: Settings, tmp_path: Path, demo: object) -> Iterator[Served]:
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_serve(settings, port, log)
    deadline = time.monotonic() + 20
    while not listening(port):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "sipdata serve did not start"
        time.sleep(0.1)
    yield Served(proc, port, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, log.read_text()  # SIGTERM is a clean shutdown


LONG = b"a" * 20_000
REFUSED = [
    (b"GET /v1/acl?ip=" + b"1" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + LONG + b"\r\n\r\n", 431, "header_too_large"),
    (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "bad_request"),
]


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    REFUSED,
    ids=["10KB-url", "20KB-header", "not-http", "bad-content-length"],
)
def test_requests_the_server_refuses_get_the_json_error_shape(
    served: Served, request_bytes: bytes, status: int, code: str
) -> None:
    """aiohttp refuses these before any handler runs; the answer is still the one JSON
    error shape, quotes none of the request, and the log gets one line, no traceback."""
    got, headers, body = served.raw(request_bytes)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    doc = orjson.loads(body)
    assert set(doc) == {"error"} and doc["error"]["code"] == code
    assert b"aaaa" not in body and b"1111" not in body
    # the server still answers afterwards
    ok, _, _ = served.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok == 200
    log = served.log.read_text()
    assert "Traceback" not in log and "request refused" in log


def test_serve_on_a_port_in_use_says_so_without_a_traceback(settings: Settings) -> None:
    """An operator starting a second `serve` on the same port gets one line naming the
    address and the reason, and exit 1, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(settings, "serve", env={"SIPDATA_HTTP_PORT": str(port)})
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _started(proc: subprocess.Popen[bytes], port: int, log: Path) -> int:
    """The one worker the parent started, once both listen."""
    deadline = time.monotonic() + 30
    while not (listening(port) and _children(proc.pid)):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "sipdata serve --workers 2 did not start"
        time.sleep(0.1)
    (child,) = _children(proc.pid)
    return child


def test_two_workers_share_the_port_and_stop_together(
    settings: Settings, tmp_path: Path, demo: object
) -> None:
    """`serve --workers 2` runs a second process on the same port (SO_REUSEPORT); a
    SIGTERM to the first stops both cleanly (exit 0), so no orphan keeps the port."""
    port, log = free_port(), tmp_path / "serve.log"
    proc = start_serve(settings, port, log, "--workers", "2")
    try:
        child = _started(proc, port, log)
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        assert b"serve" in cmdline and b"--reuse-port" in cmdline
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
        assert not Path(f"/proc/{child}").exists() or _zombie(child)
        assert not listening(port)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_worker_that_dies_stops_the_set_with_exit_1(
    settings: Settings, tmp_path: Path, demo: object
) -> None:
    """A worker killed under the parent is not left missing unnoticed: the parent stops
    serving and exits 1, for the supervisor to restart the whole set."""
    port, log = free_port(), tmp_path / "serve.log"
    proc = start_serve(settings, port, log, "--workers", "2")
    try:
        child = _started(proc, port, log)
        os.kill(child, signal.SIGKILL)
        assert proc.wait(20) == 1, log.read_text()
        assert "serve worker exited" in log.read_text()
        assert not listening(port)
    finally:
        if proc.poll() is None:
            proc.kill()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
