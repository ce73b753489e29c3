"""Issue 12's burst as it was first seen: N decisions sent at once, each on its own new
connection (dry_run, the demo's IP trunk), to one serving process. How many come back
routed, how many shed (503 overloaded), how many degraded or past the deadline, and
how long the routed ones took.

    .venv/bin/python -m bench.burst_once URL TOKEN [N]   (bench.run's `burst_once`)
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import aiohttp
import orjson


async def one(session: aiohttp.ClientSession, url: str, i: int) -> tuple[int, str, float]:
    body = {
        "source_ip": "127.0.0.10",
        "to": "12125551234",
        "call_id": f"burst-{i}",
        "dry_run": "1",
    }
    started = time.monotonic()
    async with session.post(url + "/v1/decide/invite", json=body) as r:
        doc = orjson.loads(await r.read())
    took = time.monotonic() - started
    kind = doc.get("verdict", "?") if r.status == 200 else doc.get("error", {}).get("code", "?")
    return r.status, kind, took


async def burst(url: str, token: str, n: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as s:
        started = time.monotonic()
        results = await asyncio.gather(*(one(s, url, i) for i in range(n)), return_exceptions=True)
        wall = time.monotonic() - started
    out: dict[str, Any] = {"requests": n, "wall_s": round(wall, 3), "kinds": {}}
    routed: list[float] = []
    for res in results:
        if isinstance(res, BaseException):
            out["kinds"]["client_error"] = out["kinds"].get("client_error", 0) + 1
            continue
        _, kind, took = res
        out["kinds"][kind] = out["kinds"].get(kind, 0) + 1
        if kind == "route":
            routed.append(took)
    routed.sort()
    out["routed"] = len(routed)
    out["routed_per_s"] = len(routed) / wall if wall else 0.0
    out["routed_p50_ms"] = round(routed[len(routed) // 2] * 1000, 1) if routed else None
    out["routed_max_ms"] = round(routed[-1] * 1000, 1) if routed else None
    return out


def main() -> None:
    url, token = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
    print(orjson.dumps(asyncio.run(burst(url, token, n))).decode())


if __name__ == "__main__":
    main()
