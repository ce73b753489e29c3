"""Processes the benchmarks start and measure: sipdata workers, their CPU time, free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
TICK = os.sysconf("SC_CLK_TCK")
TOKEN = "bench-token"  # the shared secret every benchmark's sipdata and Kamailio use


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (all their threads) so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICK


def children(pid: int) -> list[int]:
    """The serve workers `sipdata serve --workers N` started (its direct children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out.extend(int(c) for c in (task / "children").read_text().split())
    return out


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s}s")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def sipdata_cmd() -> list[str]:
    """How to run sipdata: this checkout's, or another source tree's (BENCH_SIPDATA_SRC,
    for a before/after comparison with the same venv and the same harness)."""
    if os.environ.get("BENCH_SIPDATA_SRC"):
        return [str(BIN / "python"), "-m", "sipdata"]
    return [str(BIN / "sipdata")]


def sipdata_cwd() -> str | None:
    """Where sipdata runs: `python -m sipdata` puts its working directory first on
    sys.path, so run from this checkout it would import this tree's package
    whatever PYTHONPATH says (every BENCH_SIPDATA_SRC "before" until issue 12's
    review did). BENCH_SIPDATA_SRC's own tree, then."""
    return os.environ.get("BENCH_SIPDATA_SRC") or None


def env_for(database: str, redis_db: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    if env.get("BENCH_SIPDATA_SRC"):
        env["PYTHONPATH"] = env["BENCH_SIPDATA_SRC"]
    env.update(
        SIPDATA_DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{database}",
        SIPDATA_REDIS_URL=f"redis://127.0.0.1:6379/{redis_db}",
        SIPDATA_LOG_LEVEL="warning",
    )
    env.update(extra)
    return env


def sipdata(env: Mapping[str, str], *args: str, timeout_s: float = 1800) -> str:
    """Run one sipdata command to completion; its output (raises on failure)."""
    out = subprocess.run(
        [*sipdata_cmd(), *args],
        cwd=sipdata_cwd(),
        check=False,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if out.returncode != 0:
        raise RuntimeError(f"sipdata {' '.join(args)} failed: {out.stderr[-2000:]}")
    return out.stdout


@contextlib.contextmanager
def serving(
    env: Mapping[str, str], workers: int, log: Path, ready: str = "/ready"
) -> Iterator[tuple[str, list[int]]]:
    """`sipdata serve --workers N`: N processes sharing one port; (base URL, pids).

    The first runs the background jobs (warmer, write-back); the others only
    serve, as a deployment with several workers per host runs them.
    """
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                # (--workers only when > 1: a BENCH_SIPDATA_SRC tree from before it
                # serves one process and ignores SIPDATA_WORKERS)
                [*sipdata_cmd(), "serve", *(["--workers", str(workers)] if workers > 1 else [])],
                env={**env, "SIPDATA_HTTP_PORT": str(port), "SIPDATA_WORKERS": str(workers)},
                cwd=sipdata_cwd(),
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + ready)
        deadline = time.monotonic() + 30
        while len(pids := [procs[0].pid, *children(procs[0].pid)]) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers did not start: see {log}")
            time.sleep(0.2)
        yield url, pids
    finally:
        stop(procs)
