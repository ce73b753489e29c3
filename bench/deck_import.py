"""A 1,000,000-prefix rate deck through `sipdata import-rates`: time until live, peak
memory of the import, Redis memory per prefix."""

from __future__ import annotations

import asyncio
import csv
import random
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import redis

from bench.procs import env_for, serving, sipdata_cmd

DATABASE, REDIS_DB = "sipdata_bench_deck", 9
PROBE_RATE = "0.000777"  # only the new deck carries this rate: seeing it means "live"


def write_deck(path: Path, rows: int, seed: int = 11) -> str:
    """`rows` distinct prefixes; returns one of them, priced PROBE_RATE."""
    rng = random.Random(seed)
    seen: set[str] = set()
    while len(seen) < rows:
        seen.add(rng.choice("123456789") + "".join(rng.choices("0123456789", k=rng.randint(2, 8))))
    prefixes = sorted(seen)
    probe = prefixes[len(prefixes) // 2]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prefix", "rate", "effective_date"])
        for p in prefixes:
            rate = PROBE_RATE if p == probe else f"{rng.randint(100, 90000) / 1e6:.6f}"
            w.writerow([p, rate, "2025-01-01"])
    return probe


async def _forget_decks() -> None:
    """Start from the demo deck: a previous run's million rows would make the import
    an update of identical rows, and the probe rate already live."""
    env = env_for(DATABASE, REDIS_DB)
    try:
        conn = await asyncpg.connect(env["SIPDATA_DATABASE_URL"])
    except asyncpg.InvalidCatalogNameError:
        return  # no database yet: prepare() creates it
    try:
        await conn.execute(
            "DELETE FROM lcr_rates WHERE carrier_id IN "
            "(SELECT id FROM organizations WHERE name = 'Alpha Telecom')"
        )
    finally:
        await conn.close()


def _offers(url: str, number: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/v1/lcr?number={number}", timeout=5) as r:
        doc = orjson.loads(r.read())
    return [str(o.get("rate")) for o in doc.get("offers", doc.get("carriers", []))]


def run(results: Path, *, quick: bool) -> dict[str, Any]:
    from bench.run import prepare  # the same preparation as the other sections

    rows = 100_000 if quick else 1_000_000
    asyncio.run(_forget_decks())
    asyncio.run(prepare(DATABASE, REDIS_DB, large=False))
    env = env_for(DATABASE, REDIS_DB, SIPDATA_WARMER_ENABLED="false")
    deck = results / "deck.csv"
    probe = write_deck(deck, rows)
    number = probe + "0" * (12 - len(probe))
    r = redis.Redis(db=REDIS_DB)
    with serving(env, 1, results / "sipdata-deck.log") as (url, _pids):
        assert PROBE_RATE not in _offers(url, number)
        mem0 = int(r.info("memory")["used_memory"])
        cmd = [*sipdata_cmd(), "import-rates", str(deck), "--carrier", "Alpha Telecom", "--replace"]
        timed = ["/usr/bin/time", "-f", "MAXRSS_KIB %M", *cmd]
        t0 = time.monotonic()
        proc = subprocess.run(
            timed, check=False, env=env, capture_output=True, text=True, timeout=3600
        )
        imported = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"import failed: {proc.stderr[-2000:]}")
        while PROBE_RATE not in _offers(url, number):  # the serving process sees it
            if time.monotonic() - t0 > 600:
                raise RuntimeError("the imported deck never went live")
            time.sleep(0.05)
        live = time.monotonic() - t0
        gen = int(r.get("routing:current") or 0)
        lcr_key = f"route:lcr:g{gen}"
        fields = int(r.hlen(lcr_key))
        lcr_bytes = int(r.memory_usage(lcr_key, samples=0) or 0)
        mem1 = int(r.info("memory")["used_memory"])
    peak_kib = int(proc.stderr.rsplit("MAXRSS_KIB ", 1)[1].split()[0])
    return {
        "prefixes": rows,
        "command": " ".join(cmd),
        "import_s": round(imported, 1),
        "live_s": round(live, 1),
        "import_peak_rss_mib": round(peak_kib / 1024),
        "compiled_entries": fields,
        "lcr_hash_bytes": lcr_bytes,
        "bytes_per_compiled_entry": round(lcr_bytes / fields) if fields else None,
        "redis_used_memory_delta_mib": round((mem1 - mem0) / 2**20),
        "note": "the delta includes the superseded generation until its grace TTL ends",
    }


def summary_lines(d: dict[str, Any]) -> list[str]:
    return [
        f"Deck import: {d['prefixes']} prefixes, imported in {d['import_s']} s, live after "
        f"{d['live_s']} s, peak RSS {d['import_peak_rss_mib']} MiB, "
        f"{d['compiled_entries']} compiled entries, {d['bytes_per_compiled_entry']} B each in "
        f"Redis ({d['lcr_hash_bytes'] / 2**20:.0f} MiB hash)"
    ]
