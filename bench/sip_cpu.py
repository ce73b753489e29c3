"""Where configuration (c)'s CPU goes: each process group's share of a core while SIPp
calls through Kamailio and sipdata at a fixed rate (10 s, measured over 6 s).

Run: .venv/bin/python -m bench.sip_cpu [RATE]   (after `make bench` prepared its database)
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from bench import sip_load
from bench.procs import ROOT, cpu_seconds, env_for, serving

GROUPS = ("kamailio", "sipp", "sipdata serve", "redis-server", "postgres")


def groups() -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        name = next((g for g in GROUPS if cmd.startswith(g) or f"/{g}" in cmd), None)
        if name is not None:
            out.setdefault(name, []).append(int(pid))
    return out


def shares(seconds: float) -> dict[str, float]:
    def cpu() -> dict[str, float]:
        total = {}
        for name, pids in groups().items():
            alive = [p for p in pids if Path(f"/proc/{p}").exists()]
            total[name] = cpu_seconds(alive)
        return total

    before, started = cpu(), time.monotonic()
    time.sleep(seconds)
    after, elapsed = cpu(), time.monotonic() - started
    return {k: round((after[k] - before.get(k, 0.0)) / elapsed, 2) for k in after}


def main() -> None:
    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    work = ROOT / "bench" / "results" / "sip-cpu"
    work.mkdir(parents=True, exist_ok=True)
    env = env_for("sipdata_bench_sip", 10, SIPDATA_API_TOKEN="bench-token")
    with sip_load.callee(work), serving(env, 1, work / "sipdata.log") as (url, _):
        defines = [
            "SIP_CHILDREN=4",
            f'SIPDATA_URL="{url}"',
            'SIPDATA_SECRET="bench-token"',
            f'CTL_SOCKET="unix:{work}/ctl"',
            f'RPC_FIFO="{work}/fifo"',
        ]
        with sip_load.kamailio("sipdata", work, defines) as port:
            result: dict[str, object] = {}
            load = threading.Thread(
                target=lambda: result.update(sip_load.calls(f"127.0.0.1:{port}", rate, 10, work))
            )
            load.start()
            time.sleep(2)
            measured = shares(6)
            load.join()
    print(
        f"{rate} calls/s: {result.get('ok')} ok, {result.get('failed')} failed; cores: {measured}"
    )


if __name__ == "__main__":
    main()
