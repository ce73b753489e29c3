"""Freshness: random single-row changes by plain SQL, time from COMMIT to the first answer
that reflects it, on each of two serving processes (each with its own port; the follower
runs in whichever holds the warmer lock)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.procs import env_for, serving
from sipdata.db.provision import demo_id
from sipdata.decide import digest

DATABASE, REDIS_DB = "sipdata_bench_fresh", 13
ACME, ACME_IP, ALPHA = demo_id("org:acme"), demo_id("trunk:acme-ip"), demo_id("org:alpha")
REALM = "sipdata.local"
GIVE_UP_S = 30.0  # a change not seen by then counts as lost (none should be)

Probe = Callable[[aiohttp.ClientSession, str], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Step:
    """One change: its SQL and the probe that is true once an answer reflects it."""

    sql: str
    args: tuple[Any, ...]
    probe: Probe


async def _json(session: aiohttp.ClientSession, url: str, **params: str) -> dict[str, Any]:
    async with session.get(url, params=params) as resp:
        doc: dict[str, Any] = await resp.json()
        return doc


def trunk_status(i: int, rng: random.Random) -> Step:
    status = "suspended" if i % 2 == 0 else "active"
    want = 403 if status == "suspended" else 200

    async def probe(s: aiohttp.ClientSession, base: str) -> bool:
        doc = await _json(
            s,
            f"{base}/v1/decide/invite",
            source_ip="127.0.0.10",
            to="12125551234",
            call_id=f"fresh-{i}-{rng.random()}",
            dry_run="1",
        )
        return bool(doc.get("code") == want)

    return Step("UPDATE sip_trunks SET status = $1 WHERE id = $2", (status, ACME_IP), probe)


def credential(i: int, rng: random.Random) -> Step:
    password = f"pw-{i}-{rng.randrange(10**9)}"
    want = digest.ha1("MD5", "acme-pbx", REALM, password)

    async def probe(s: aiohttp.ClientSession, base: str) -> bool:
        doc = await _json(s, f"{base}/v1/credentials", username="acme-pbx")
        return bool(doc.get("ha1_md5") == want)

    return Step(
        "UPDATE sip_trunks SET password_hash = $1 WHERE username = 'acme-pbx'",
        (digest.encode("acme-pbx", REALM, password),),
        probe,
    )


def _ip(i: int) -> str:
    return f"10.{(i >> 8) & 255}.{i & 255}.7"


def acl_add(i: int, rng: random.Random) -> Step:
    async def probe(s: aiohttp.ClientSession, base: str) -> bool:
        doc = await _json(s, f"{base}/v1/acl", ip=_ip(i))
        return bool(doc.get("found"))

    return Step(
        "INSERT INTO trunk_acl (trunk_id, ip_address) VALUES ($1, $2::inet)",
        (ACME_IP, _ip(i)),
        probe,
    )


def acl_delete(i: int, rng: random.Random) -> Step:
    async def probe(s: aiohttp.ClientSession, base: str) -> bool:
        doc = await _json(s, f"{base}/v1/acl", ip=_ip(i))
        return not doc.get("found")

    return Step("DELETE FROM trunk_acl WHERE ip_address = $1::inet", (_ip(i),), probe)


def did(i: int, rng: random.Random) -> Step:
    number = f"1646555{i:04d}"

    async def probe(s: aiohttp.ClientSession, base: str) -> bool:
        doc = await _json(s, f"{base}/v1/did", number=number)
        return bool(doc.get("found"))

    return Step(
        "INSERT INTO phone_numbers (number, country_code, org_id, trunk_id, status) "
        "VALUES ($1, '1', $2, $3, 'active')",
        (number, ACME, ACME_IP),
        probe,
    )


def rule(i: int, rng: random.Random) -> Step:
    name = f"fresh-{i}"

    async def probe(s: aiohttp.ClientSession, base: str) -> bool:
        doc = await _json(s, f"{base}/v1/routes/custom", org_id=ACME, number=f"1999{i:05d}0")
        return any(m.get("name") == name for m in doc.get("matched", []))

    return Step(
        "INSERT INTO routing_rules (org_id, name, priority, match_pattern, action, destination) "
        "VALUES ($1, $2, 1, $3, 'reject', '403 Fresh')",
        (ACME, name, f"1999{i:05d}"),
        probe,
    )


def _prefix(i: int) -> str:
    return f"1213{i:05d}"


def rate_add(i: int, rng: random.Random) -> Step:
    async def probe(s: aiohttp.ClientSession, base: str) -> bool:
        doc = await _json(s, f"{base}/v1/lcr", number=_prefix(i) + "00")
        return bool(doc.get("prefix") == _prefix(i))

    return Step(
        "INSERT INTO lcr_rates (carrier_id, prefix, rate, effective_date) "
        "VALUES ($1, $2, 0.0001, '2025-01-01')",
        (ALPHA, _prefix(i)),
        probe,
    )


def rate_delete(i: int, rng: random.Random) -> Step:
    async def probe(s: aiohttp.ClientSession, base: str) -> bool:
        doc = await _json(s, f"{base}/v1/lcr", number=_prefix(i) + "00")
        return bool(doc.get("prefix") != _prefix(i))

    return Step("DELETE FROM lcr_rates WHERE prefix = $1", (_prefix(i),), probe)


KINDS: dict[str, Callable[[int, random.Random], Step]] = {
    "trunk_status": trunk_status,
    "credential": credential,
    "acl_add": acl_add,
    "acl_delete": acl_delete,
    "did_add": did,
    "rule_add": rule,
    "rate_add": rate_add,
    "rate_delete": rate_delete,
}


async def _seen_after(session: aiohttp.ClientSession, base: str, probe: Probe, t0: float) -> float:
    while True:
        if await probe(session, base):
            return time.monotonic() - t0
        if time.monotonic() - t0 > GIVE_UP_S:
            return float("inf")


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"n": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)}


async def _measure(urls: list[str], dsn: str, per_kind: int) -> dict[str, Any]:
    rng = random.Random(7)
    out: dict[str, Any] = {}
    conn = await asyncpg.connect(dsn)
    try:
        # What an earlier run left (the database is kept between runs).
        await conn.execute(
            "DELETE FROM trunk_acl WHERE ip_address << '10.0.0.0/8';"
            "DELETE FROM phone_numbers WHERE number LIKE '1646555%';"
            "DELETE FROM routing_rules WHERE name LIKE 'fresh-%';"
            "DELETE FROM lcr_rates WHERE prefix LIKE '1213_____';"
            "UPDATE sip_trunks SET status = 'active' WHERE name = 'acme-ip'"
        )
        async with aiohttp.ClientSession() as session:
            for kind, make in KINDS.items():
                seen: list[float] = []
                for i in range(per_kind):
                    step = make(i, rng)
                    # Changes arrive at random moments, not in step with the
                    # processes' 100 ms catalog refresh (which the probe would follow).
                    await asyncio.sleep(rng.uniform(0, 0.15))
                    await conn.execute(step.sql, *step.args)  # autocommit: returns after COMMIT
                    t0 = time.monotonic()
                    seen += await asyncio.gather(
                        *(_seen_after(session, u, step.probe, t0) for u in urls)
                    )
                out[kind] = _stats(seen)
    finally:
        await conn.close()
    return out


def run(results: Path, *, quick: bool) -> dict[str, Any]:
    from bench.run import prepare

    asyncio.run(prepare(DATABASE, REDIS_DB, large=False))
    env = env_for(DATABASE, REDIS_DB)
    with ExitStack() as stack:
        urls = [
            stack.enter_context(serving(env, 1, results / f"sipdata-fresh-{n}.log"))[0]
            for n in range(2)
        ]
        measured = asyncio.run(_measure(urls, env["SIPDATA_DATABASE_URL"], 20 if quick else 200))
    return {"changes_per_kind": 20 if quick else 200, "processes": 2, "kinds": measured}


def summary_lines(d: dict[str, Any]) -> list[str]:
    lines = [
        f"Freshness: COMMIT -> first reflecting answer, {d['changes_per_kind']} changes per kind, "
        f"each seen by {d['processes']} serving processes (ms)"
    ]
    for kind, s in d["kinds"].items():
        lines.append(
            f"  {kind:13} p50 {s['p50_ms']:7.1f}  p99 {s['p99_ms']:7.1f}  max {s['max_ms']:7.1f}"
        )
    return lines
