"""Where each configuration's CPU goes: each process group's share of a core, and its
milliseconds of CPU per call, while SIPp calls through Kamailio at one fixed rate
(10 s each, measured over 6 s): (a) fixed, (b) native modules, (c) sipdata.

Run: .venv/bin/python -m bench.sip_cpu [RATE]   (`make bench` runs it as section `cpu`;
run alone, after `make bench` prepared its database)
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import sip_load
from bench.native_data import export
from bench.procs import ROOT, TOKEN, cpu_seconds, env_for, serving
from sipdata.settings import Settings

GROUPS = ("kamailio", "sipp", "sipdata serve", "redis-server", "postgres")


def groups() -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # ("-m sipdata serve": a BENCH_SIPDATA_SRC tree runs as `python -m sipdata`)
        name = next(
            (g for g in GROUPS if cmd.startswith(g) or f"/{g}" in cmd or f"-m {g}" in cmd), None
        )
        if name is not None:
            out.setdefault(name, []).append(int(pid))
    return out


def stolen() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs: the time the hypervisor gave to others."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])


def shares(seconds: float) -> dict[str, float]:
    """Each group's share of a core over `seconds`, and under "steal" the cores the
    hypervisor took (a shared machine: runs with much steal are not comparable)."""

    def cpu() -> dict[str, float]:
        total = {}
        for name, pids in groups().items():
            alive = [p for p in pids if Path(f"/proc/{p}").exists()]
            total[name] = cpu_seconds(alive)
        return total

    before, steal0, started = cpu(), stolen(), time.monotonic()
    time.sleep(seconds)
    after, steal1, elapsed = cpu(), stolen(), time.monotonic() - started
    out = {k: round((after[k] - before.get(k, 0.0)) / elapsed, 2) for k in after}
    ticks = steal1[1] - steal0[1]
    out["steal"] = (
        round((steal1[0] - steal0[0]) / ticks * (os.cpu_count() or 1), 2) if ticks else 0.0
    )
    return out


def measure(name: str, rate: int, work: Path, defines: list[str]) -> dict[str, Any]:
    """One configuration at `rate` for 10 s: each group's share of a core over 6 s of
    it, and its CPU milliseconds per call."""
    with sip_load.kamailio(name, work, defines) as port:
        result: dict[str, Any] = {}
        load = threading.Thread(
            target=lambda: result.update(sip_load.calls(f"127.0.0.1:{port}", rate, 10, work))
        )
        load.start()
        time.sleep(2)
        cores = shares(6)
        load.join()
    return {
        "ok": result.get("ok"),
        "failed": result.get("failed"),
        "cores": cores,
        "ms_per_call": {k: round(v / rate * 1000, 3) for k, v in cores.items() if k != "steal"},
    }


def run(rate: int, token: str) -> dict[str, Any]:
    """(a), (b) and (c) at the same rate, in one run."""
    work = ROOT / "bench" / "results" / "sip-cpu"
    work.mkdir(parents=True, exist_ok=True)
    env = env_for("sipdata_bench_sip", 10, SIPDATA_API_TOKEN=token)
    dbtext = work / "dbtext"
    asyncio.run(export(Settings.from_env(env), dbtext))
    out: dict[str, Any] = {"rate": rate}
    with sip_load.callee(work):
        out["fixed"] = measure("fixed", rate, work, sip_load.FIXED_DEFINES)
        out["native"] = measure("native", rate, work, sip_load.native_defines(dbtext))
        with serving(env, 1, work / "sipdata.log") as (url, _):
            defines = sip_load.sipdata_defines(url, token, work)
            out["sipdata"] = measure("sipdata", rate, work, defines)
    kam = {k: out[k]["ms_per_call"].get("kamailio", 0.0) for k in ("fixed", "native", "sipdata")}
    out["kamailio_c_over_b"] = kam["sipdata"] / kam["native"] if kam["native"] else None
    return out


def summary_lines(r: dict[str, Any]) -> list[str]:
    lines = [f"CPU per call at {r['rate']} calls/s (ms of CPU per call, by process group)"]
    for name in ("fixed", "native", "sipdata"):
        x = r[name]
        per = ", ".join(f"{k} {v:.3f}" for k, v in sorted(x["ms_per_call"].items()))
        steal = x["cores"].get("steal", 0.0)
        lines.append(
            f"  {name:8} {x['ok']} ok, {x['failed']} failed: {per} (steal {steal:.2f} cores)"
        )
    lines.append(f"  Kamailio (c)/(b) = {r['kamailio_c_over_b']}")
    return lines


def main() -> None:
    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    print("\n".join(summary_lines(run(rate, TOKEN))))


if __name__ == "__main__":
    main()
