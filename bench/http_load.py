"""wrk against the combined INVITE decision and against /health, with CPU per request."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.procs import ROOT, cpu_seconds

WRK = ROOT / "bench" / "wrk"


@dataclass(frozen=True)
class Load:
    connections: int = 32
    threads: int = 1  # one wrk thread: the second core goes to Redis and the kernel
    seconds: int = 15
    cpu: str = ""  # taskset CPU list for wrk ("" = unpinned)


def wrk(
    url: str,
    script: str,
    load: Load,
    pids: list[int],
    *,
    cases: Path | None = None,
    token: str = "",
    delay_ms: float = 0.0,
) -> dict[str, Any]:
    """One wrk run: its JSON line plus requests/s and CPU seconds per request of `pids`."""
    env = {
        "BENCH_CASES": str(cases or ""),
        "BENCH_TOKEN": token,
        "BENCH_RUN": uuid.uuid4().hex[:8],
        "BENCH_DELAY_MS": f"{delay_ms:.3f}",
        "PATH": "/usr/bin:/bin",
    }
    cmd = [
        *(["taskset", "-c", load.cpu] if load.cpu else []),
        "wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{load.seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK / script),
        url,
    ]
    cpu0, t0 = cpu_seconds(pids), time.monotonic()
    out = subprocess.run(
        cmd, check=False, env=env, capture_output=True, text=True, timeout=load.seconds + 60
    )
    cpu = cpu_seconds(pids) - cpu0
    wall = time.monotonic() - t0
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({out.returncode}): {out.stdout[-800:]} {out.stderr[-800:]}"
        )
    doc: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    doc["rps"] = doc["requests"] / (doc["duration_us"] / 1e6)
    doc["cpu_s"] = round(cpu, 2)
    doc["cpu_ms_per_request"] = cpu / doc["requests"] * 1000 if doc["requests"] else None
    # What one fully used core would sustain at this CPU cost per request.
    doc["per_core_rps"] = doc["requests"] / cpu if cpu else None
    doc["cpu_cores_used"] = cpu / wall
    doc["command"] = " ".join(cmd)
    return doc


def decision_suite(
    url: str, pids: list[int], cases: Path, token: str, load: Load
) -> dict[str, Any]:
    """/health floor, the decision at full load, then paced at 70 % of that rate."""
    wrk(
        url + "/v1/decide/invite",
        "decide.lua",
        Load(load.connections, load.threads, 3),
        pids,
        cases=cases,
        token=token,
    )  # warm-up: connections, decode caches, leases
    health = wrk(url + "/health", "health.lua", load, pids)
    full = wrk(url + "/v1/decide/invite", "decide.lua", load, pids, cases=cases, token=token)
    # Each connection sends, waits for the answer, then pauses: pace so the
    # offered rate is 70 % of the maximum (closed loop, so approximately: one
    # short run calibrates the pause, the measured run reports what it reached).
    target = 0.7 * full["rps"]
    period_ms = load.connections / target * 1000
    delay_ms = max(0.0, period_ms - full["cpu_ms_per_request"])
    probe = wrk(
        url + "/v1/decide/invite",
        "decide.lua",
        Load(load.connections, load.threads, 4),
        pids,
        cases=cases,
        token=token,
        delay_ms=delay_ms,
    )
    delay_ms = max(0.0, delay_ms + period_ms - load.connections / probe["rps"] * 1000)
    paced = wrk(
        url + "/v1/decide/invite",
        "decide.lua",
        load,
        pids,
        cases=cases,
        token=token,
        delay_ms=delay_ms,
    )
    paced["delay_ms"] = round(delay_ms, 3)
    paced["offered_share_of_max"] = paced["rps"] / full["rps"]
    return {
        "health": health,
        "decide": full,
        "decide_70pct": paced,
        "decide_over_health": full["rps"] / health["rps"],
    }


def metric(url: str, name: str, **labels: str) -> float:
    """The samples of sipdata's /metrics with these labels, added up (0 if absent):
    one sample when the labels name it whole, else e.g. every status of an endpoint."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def burst(
    url: str, pids: list[int], cases: Path, token: str, load: Load, capacity: int, max_rps: float
) -> dict[str, Any]:
    """10 x the process's capacity in concurrent decisions (`capacity`), each
    connection asking again as soon as it is answered: how many real answers per
    second it keeps giving against its maximum, how many it sheds, and whether any
    admitted decision missed its deadline (sipdata_degraded_total: deadline, redis)."""
    before = {k: metric(url, "sipdata_degraded_total", reason=k) for k in ("deadline", "redis")}
    run = wrk(
        url + "/v1/decide/invite",
        "decide.lua",
        Load(10 * capacity, load.threads, load.seconds, load.cpu),
        pids,
        cases=cases,
        token=token,
    )
    seconds = run["duration_us"] / 1e6
    answered = run["route"] + run["challenge"] + run["reject"]
    run["connections"] = 10 * capacity
    run["answered_per_s"] = answered / seconds
    run["goodput_share_of_max"] = run["answered_per_s"] / max_rps if max_rps else None
    run["shed_per_s"] = run["shed"] / seconds
    run["missed_deadline"] = {
        k: metric(url, "sipdata_degraded_total", reason=k) - v for k, v in before.items()
    }
    return run
