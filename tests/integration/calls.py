"""Call reports as Kamailio sends them, and reading back what became of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from sipdata.db.provision import demo_id

from .conftest import Api

ACME_IP = demo_id("trunk:acme-ip")
ACME = demo_id("org:acme")


def call_report(call_id: str, event: str, t0: float, **extra: Any) -> dict[str, Any]:
    return {
        "event": event,
        "call_id": call_id,
        "ts": t0 + {"start": 0.1, "answer": 2, "end": 63.5, "fail": 1}[event],
        "trunk_id": ACME_IP,
        "org_id": ACME,
        "source_ip": "127.0.0.10",
        "from": "caller",
        "to": "12125551234",
        "invite_ts": t0,
        **extra,
    }


async def cdrs(pool: asyncpg.Pool, call_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(await conn.fetch("SELECT * FROM cdrs WHERE call_id = $1", call_id))


async def drain(api: Api) -> None:
    for _ in range(20):
        if not await api.writeback.drain_once():
            return
    raise AssertionError("streams did not drain")


async def eventually(probe: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 30) -> Any:
    """Poll `probe` until it returns something truthy (bounded: the test fails after
    `timeout_s`, which only a broken drainer reaches)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = await probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
