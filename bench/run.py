"""`make bench`: every benchmark in one run, results to bench/results/ and a summary.

    .venv/bin/python -m bench.run [--only http,sip,cpu,nodes,import,freshness]
                                   [--workers N] [--quick]

Sections: `http` (wrk: /health floor, the decision on the demo and the large data
set, then paced at 70 %, a burst of 10 x the in-flight cap, and 1 against 2
workers), `sip` (SIPp through Kamailio: fixed destination, Kamailio's own
modules, Kamailio with sipdata; then (c) at 70 % and at 150 % of its maximum),
`cpu` (CPU per call of every process group, all three at one rate), `nodes` (two
sipdata nodes behind Kamailio, one killed -9 mid-run at half of (c)'s
capacity: what it cost), `import` (a
1,000,000-prefix deck), `freshness` (commit to answer). Each uses its own
database and Redis db, so the dev database is untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import redis

from bench import dataset, deck_import, freshness, http_load, nodes, sip_cpu, sip_load
from bench.procs import BIN, ROOT, TOKEN, env_for, serving, sipdata

RESULTS = ROOT / "bench" / "results"
# The one rate all three configurations carry for the CPU-per-call comparison:
# below what (c) sustains on this machine, so none of them is saturated.
CPU_RATE = 500
# The burst is 10 x this many concurrent decisions: the fixed in-flight cap one
# process had when issue 12 measured a burst of 1,500 (now the limit adapts).
BURST_CAPACITY = 128
# Half of the 1,500 calls/s (c) sustained in issue 12's full run: the rate at
# which one of two nodes is killed (issue 14).
NODES_RATE = 750


def machine() -> dict[str, Any]:
    model = next(
        (
            x.split(":", 1)[1].strip()
            for x in Path("/proc/cpuinfo").read_text().splitlines()
            if x.startswith("model name")
        ),
        "unknown",
    )
    # The sipdata under test: this checkout, or BENCH_SIPDATA_SRC's tree.
    src = os.environ.get("BENCH_SIPDATA_SRC") or str(ROOT)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        check=False,
        cwd=src,
        capture_output=True,
        text=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "sipdata", "kamailio"],
        check=False,
        cwd=src,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit + ("+dirty" if dirty else ""),
    }


async def prepare(database: str, redis_db: int, *, large: bool) -> dataset.Cases:
    """A fresh-enough database with the demo (and bulk) data, limits lifted, warmed."""
    env = env_for(database, redis_db)
    sipdata(env, "migrate")
    sipdata(env, "demo-data")
    conn = await asyncpg.connect(env["SIPDATA_DATABASE_URL"])
    try:
        await dataset.lift_demo_limits(conn)
        cases = await dataset.load_bulk(conn, dataset.Size()) if large else dataset.DEMO_CASES
    finally:
        await conn.close()
    redis.Redis(db=redis_db).flushdb()
    sipdata(env, "warm")
    return cases


def http_section(workers: int, quick: bool) -> dict[str, Any]:
    load = http_load.Load(seconds=5 if quick else 15)
    out: dict[str, Any] = {"workers": workers, "load": load.__dict__}
    for name, large, redis_db in (("demo", False, 11), ("large", True, 12)):
        database = f"sipdata_bench_{name}"
        cases = asyncio.run(prepare(database, redis_db, large=large))
        path = RESULTS / f"cases-{name}.txt"
        out[f"{name}_cases"] = dataset.write_cases(str(path), cases)
        # The warmer runs as its own process in a deployment with big decks (a
        # rebuild of 300,000 rates would otherwise share the serving CPU); the
        # generation was built by prepare().
        env = env_for(database, redis_db, SIPDATA_API_TOKEN=TOKEN, SIPDATA_WARMER_ENABLED="false")
        with serving(env, workers, RESULTS / f"sipdata-{name}.log") as (url, pids):
            out[name] = http_load.decision_suite(url, pids, path, TOKEN, load)
            out[name]["burst"] = http_load.burst(
                url, pids, path, TOKEN, load, BURST_CAPACITY, out[name]["decide"]["rps"]
            )
            out[name]["burst_once"] = [burst_once(url) for _ in range(3)]
        if name == "demo":
            try:
                out["scaling"] = scaling(env, path, load)
            except RuntimeError as exc:  # a BENCH_SIPDATA_SRC tree without --workers
                out["scaling_error"] = repr(exc)
    return out


def burst_once(url: str) -> dict[str, Any]:
    """Issue 12's first burst: 1,500 decisions at once on new connections (the client
    on the second core)."""
    out = subprocess.run(
        ["taskset", "-c", "1", str(BIN / "python"), "-m", "bench.burst_once", url, TOKEN, "1500"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def scaling(env: dict[str, str], cases: Path, load: http_load.Load) -> dict[str, Any]:
    """`serve --workers 1` and `--workers 2` on the demo data, wrk pinned to the second
    core (taskset): what the second worker adds when the load comes from elsewhere
    (here it shares that core with wrk, Redis and the kernel)."""
    out: dict[str, Any] = {"wrk_cpu": "1"}
    sipdata(env, "warm")  # the generation's heartbeat lapsed meanwhile (no warmer runs here)
    pinned = dataclasses.replace(load, cpu="1")
    for workers in (1, 2):
        with serving(env, workers, RESULTS / f"sipdata-scaling-{workers}.log") as (url, pids):
            http_load.wrk(
                url + "/v1/decide/invite",
                "decide.lua",
                dataclasses.replace(pinned, seconds=3),
                pids,
                cases=cases,
                token=TOKEN,
            )  # warm-up
            out[f"workers_{workers}"] = http_load.wrk(
                url + "/v1/decide/invite", "decide.lua", pinned, pids, cases=cases, token=TOKEN
            )
    out["two_over_one"] = out["workers_2"]["rps"] / out["workers_1"]["rps"]
    return out


def summary(results: dict[str, Any]) -> str:
    lines = [f"machine: {json.dumps(results['machine'])}"]
    http = results.get("http")
    if http:
        lines.append(f"HTTP ({http['workers']} sipdata worker(s), wrk {http['load']})")
        for name in ("demo", "large"):
            r = http[name]
            for key in ("health", "decide", "decide_70pct"):
                x = r[key]
                lines.append(
                    f"  {name:5} {key:13} {x['rps']:8.0f} req/s  p50 {x['p50_us'] / 1000:.2f} ms"
                    f"  p90 {x['p90_us'] / 1000:.2f}  p99 {x['p99_us'] / 1000:.2f}"
                    f"  cpu {x['cpu_ms_per_request']:.3f} ms/req ({x['per_core_rps']:.0f}/core-s)"
                    f"  verdicts r/c/j/err {x.get('route', '-')}/{x.get('challenge', '-')}"
                    f"/{x.get('reject', '-')}/{x.get('http_error', '-')}"
                )
            cpu_ratio = r["decide"]["cpu_ms_per_request"] / r["health"]["cpu_ms_per_request"]
            lines.append(
                f"  {name:5} decide/health = {r['decide_over_health']:.2f}"
                f" (CPU per decision / per /health: {cpu_ratio:.1f}x)"
            )
            b = r.get("burst")
            if b:
                lines.append(
                    f"  {name:5} burst {b['connections']} connections: {b['answered_per_s']:.0f}"
                    f" answers/s = {b['goodput_share_of_max']:.2f} of max, {b['shed_per_s']:.0f}"
                    f" shed/s, other errors {b['http_error']},"
                    f" missed deadline {b['missed_deadline']},"
                    f" p50 {b['p50_us'] / 1000:.1f} ms p99 {b['p99_us'] / 1000:.1f} ms"
                )
            for once in r.get("burst_once", []):
                lines.append(
                    f"  {name:5} 1,500 at once: {once['kinds']} in {once['wall_s']} s,"
                    f" routed p50 {once['routed_p50_ms']} ms max {once['routed_max_ms']} ms"
                )
        sc = http.get("scaling")
        if sc:
            lines.append(
                f"  scaling (wrk on CPU {sc['wrk_cpu']}): 1 worker {sc['workers_1']['rps']:.0f}/s,"
                f" 2 workers {sc['workers_2']['rps']:.0f}/s = {sc['two_over_one']:.2f}x"
            )
    sip = results.get("sip")
    if sip:
        lines.extend(sip_load.summary_lines(sip))
    cpu = results.get("cpu")
    if cpu:
        lines.extend(sip_cpu.summary_lines(cpu))
    two = results.get("nodes")
    if two:
        lines.extend(nodes.summary_lines(two))
    fresh = results.get("freshness")
    if fresh:
        lines.extend(freshness.summary_lines(fresh))
    deck = results.get("import")
    if deck:
        lines.extend(deck_import.summary_lines(deck))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default="http,sip,cpu,nodes,import,freshness")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="short runs, to check the harness")
    args = p.parse_args()
    RESULTS.mkdir(exist_ok=True)
    only = set(args.only.split(","))
    results: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"{stamp}.json"

    def sip() -> dict[str, Any]:
        env = env_for("sipdata_bench_sip", 10, SIPDATA_API_TOKEN=TOKEN)
        asyncio.run(prepare("sipdata_bench_sip", 10, large=False))
        return sip_load.run_all(env, TOKEN, RESULTS, args.workers, args.quick)

    def cpu() -> dict[str, Any]:
        asyncio.run(prepare("sipdata_bench_sip", 10, large=False))
        return sip_cpu.run(CPU_RATE, TOKEN)

    def two_nodes() -> dict[str, Any]:
        env = env_for("sipdata_bench_sip", 10, SIPDATA_API_TOKEN=TOKEN)
        asyncio.run(prepare("sipdata_bench_sip", 10, large=False))
        return nodes.run(env, TOKEN, RESULTS, NODES_RATE, 9 if args.quick else 30)

    sections = {
        "http": lambda: http_section(args.workers, args.quick),
        "sip": sip,
        "cpu": cpu,
        "nodes": two_nodes,
        "import": lambda: deck_import.run(RESULTS, quick=args.quick),
        "freshness": lambda: freshness.run(RESULTS, quick=args.quick),
    }
    failed = []
    for name, run in sections.items():
        if name not in only:
            continue
        try:
            results[name] = run()
        except Exception as exc:  # the other sections still run and are kept
            failed.append(name)
            results[f"{name}_error"] = repr(exc)
            print(f"section {name} failed: {exc!r}")
        path.write_text(json.dumps(results, indent=2))  # kept as each section ends
    text = summary(results)
    (RESULTS / f"{stamp}.txt").write_text(text + "\n")
    print(text)
    print(f"results: {path}")
    if failed:
        raise SystemExit(f"sections failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
