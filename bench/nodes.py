"""Two sipdata nodes behind one Kamailio, one killed (-9) mid-run at a given call rate.

Counts what the loss of a node cost: calls that failed, questions the edge asked again
of the other node (those in flight at the kill, and any sent before the probe marked
the node down), and CDRs (each call exactly once).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import sip_load
from bench.procs import serving

RETRIED = "failed, asking the next one"


def run(env: dict[str, str], token: str, results: Path, rate: int, seconds: int) -> dict[str, Any]:
    work = results / "nodes"
    work.mkdir(exist_ok=True)
    log_path = work / "kamailio-sipdata.log"
    before = log_path.read_text(errors="replace").count(RETRIED) if log_path.exists() else 0
    with (
        sip_load.callee(work),
        serving(env, 1, work / "sipdata-a.log") as (url_a, _),
        serving(env, 1, work / "sipdata-b.log") as (url_b, pids_b),
    ):
        defines = [
            *sip_load.sipdata_defines(url_a, token, work),
            f'SIPDATA_NODES="{url_a},{url_b}"',
            'REPORT_RETRY_TIMER="name=reports;interval=1;mode=1;"',
        ]
        with sip_load.kamailio("sipdata", work, defines) as port:
            started = time.time()

            def kill() -> None:
                time.sleep(seconds / 3)
                for pid in pids_b:
                    os.kill(pid, signal.SIGKILL)

            killer = threading.Thread(target=kill)
            killer.start()
            calls = sip_load.calls(f"127.0.0.1:{port}", rate, seconds, work)
            killer.join()
            time.sleep(5)  # the retry timer sends what the killed node had not stored
    log = log_path.read_text(errors="replace")
    cdrs = asyncio.run(_cdrs(env["SIPDATA_DATABASE_URL"], started))
    return {
        "rate": rate,
        "seconds": seconds,
        "killed_at_s": round(seconds / 3, 1),
        "calls": calls,
        "asked_again": log.count(RETRIED) - before,
        "cdrs": cdrs,
    }


async def _cdrs(url: str, since: float) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT call_id) AS distinct_ids FROM cdrs"
            " WHERE created_at >= to_timestamp($1)",
            since,
        )
    finally:
        await conn.close()
    return {"n": int(row["n"]), "distinct": int(row["distinct_ids"])}


def summary_lines(out: dict[str, Any]) -> list[str]:
    c = out["calls"]
    return [
        f"Two nodes, one killed -9 at {out['killed_at_s']} s of {out['seconds']} s at "
        f"{out['rate']} calls/s: {c['ok']} completed, {c['failed']} failed, "
        f"{out['asked_again']} questions asked again of the other node, "
        f"{out['cdrs']['n']} CDRs ({out['cdrs']['distinct']} distinct Call-IDs); "
        f"p50/p99 {c['p50_ms']}/{c['p99_ms']} ms"
    ]
