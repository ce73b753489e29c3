"""(c) alone past its capacity, without and then with the edge's own shedding
(WITHOUT_EDGE_SHED, kamailio/sipdata-invite.cfg): SIPp at a fixed rate, then at 1.5 x
that rate with a caller that takes a 503 as an answer; what completed, what was
refused, what got no final answer, how many questions reached sipdata.

Run: .venv/bin/python -m bench.sip_overload 1500   (about 80 s for both; `make bench`
does not run it: its sip section measures the overload at 1.5 x the rate it found)
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import sip_load
from bench.http_load import metric
from bench.procs import ROOT, TOKEN, env_for, serving
from bench.run import prepare

SECONDS = 15


def decisions_seen(url: str) -> float:
    """Decision requests this sipdata answered (sheds included), from /metrics."""
    return metric(url, "sipdata_http_requests_total", endpoint="/v1/decide/invite")


def edge_shed(work: Path) -> int:
    """INVITEs the edge refused itself so far (its statistic edge_shed)."""
    out = subprocess.run(
        ["kamcmd", "-s", f"unix:{work}/kamailio-ctl", "stats.get_statistics", "edge_shed"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(r"edge_shed = (\d+)", out)
    return int(found.group(1)) if found else 0


def run(rate: int, shed: bool) -> dict[str, Any]:
    work = ROOT / "bench" / "results" / f"sip-overload-{'shed' if shed else 'noshed'}"
    work.mkdir(parents=True, exist_ok=True)
    asyncio.run(prepare("sipdata_bench_sip", 10, large=False))
    env = env_for("sipdata_bench_sip", 10, SIPDATA_API_TOKEN=TOKEN)
    out: dict[str, Any] = {"rate": rate, "seconds": SECONDS, "edge_shed_on": shed}
    with (
        sip_load.callee(work),
        serving(env, 1, work / "sipdata.log") as (url, _),
        sip_load.kamailio(
            "sipdata",
            work,
            [*sip_load.sipdata_defines(url, TOKEN, work), *([] if shed else ["WITHOUT_EDGE_SHED"])],
        ) as port,
    ):
        target = f"127.0.0.1:{port}"
        out["held"] = sip_load.calls(target, rate, SECONDS, work)
        out["held"]["edge_shed"] = refused = edge_shed(work)
        before = decisions_seen(url)
        over = sip_load.overload(target, rate * 3 // 2, SECONDS, work)
        over["asked_sipdata"] = decisions_seen(url) - before
        over["edge_shed"] = edge_shed(work) - refused
        out["overload"] = over
    return out


def main() -> None:
    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    results = [run(rate, shed) for shed in (False, True)]
    print(json.dumps(results, indent=2))
    for result in results:
        print("\n".join(summary_lines(result)))


def summary_lines(result: dict[str, Any]) -> list[str]:
    held, over = result["held"], result["overload"]
    offered = over["rate"] * over["seconds"]
    answered = sum(over["final"].values())
    return [
        f"edge shedding {'on' if result['edge_shed_on'] else 'off'}",
        f"  held {held['rate']}/s: {held['ok']} ok, {held['failed']} failed "
        f"({held['edge_shed']} refused by the edge), "
        f"p50/p90/p99 {held['p50_ms']}/{held['p90_ms']}/{held['p99_ms']} ms",
        f"  at {over['rate']}/s: {over['completed_per_s']:.0f}/s completed, "
        f"{over['shed_per_s']:.0f}/s 503, {offered - answered} of {offered} with no final "
        f"answer, {over['asked_sipdata']:.0f} questions reached sipdata, "
        f"{over['edge_shed']} refused by the edge, "
        f"p50/p90/p99 {over['p50_ms']}/{over['p90_ms']}/{over['p99_ms']} ms",
    ]


if __name__ == "__main__":
    main()
