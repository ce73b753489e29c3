"""A 1,000,000-prefix rate deck through `sipdata import-rates`: time until live, peak
memory of the import, Redis memory per prefix."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import random
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import redis

from bench.procs import cpu_seconds, env_for, serving, sipdata, sipdata_cmd

DATABASE, REDIS_DB = "sipdata_bench_deck", 9
PROBE_RATE = "0.000777"  # only the new deck carries this rate: seeing it means "live"
PACE_RPS = 50  # decisions per second while importing: latency samples, not load
IDLE_S = 5.0  # the idle baseline before the import starts
IDLE_CPU_S = 10.0  # serve's CPU measured this long once the deck is live


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
        async with conn.transaction():
            # Housekeeping, not an edit to follow: prepare() warms afterwards.
            await conn.execute("SET LOCAL sipdata.capture = 'off'")
            await conn.execute(
                "DELETE FROM lcr_rates WHERE carrier_id IN (SELECT id FROM organizations "
                "WHERE name = 'Alpha Telecom' OR name LIKE 'Bench Carrier %')"
            )
            if await conn.fetchval("SELECT to_regclass('sipdata_changes') IS NOT NULL"):
                await conn.execute("DELETE FROM sipdata_changes")
        # Millions of deleted rows would otherwise slow the next import's writes.
        await conn.execute("VACUUM lcr_rates")
    finally:
        await conn.close()


def _offers(url: str, number: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/v1/lcr?number={number}", timeout=5) as r:
        doc = orjson.loads(r.read())
    return [str(o.get("rate")) for o in doc.get("offers", doc.get("carriers", []))]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _hwm_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Watch(threading.Thread):
    """Paced decisions (PACE_RPS) timing each answer, and the peak RSS of serve's
    full-load children, until stopped; `mark()` splits idle from swap samples."""

    def __init__(self, url: str, serve_pid: int) -> None:
        super().__init__(daemon=True)
        self.url, self.serve_pid = url, serve_pid
        self.samples: list[tuple[float, float]] = []  # (sent at, seconds)
        self.child_peak_kib = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        query = f"{self.url}/v1/decide/invite?source_ip=127.0.0.10&to=12125551234&dry_run=1"
        interval = 1 / PACE_RPS
        nxt = time.monotonic()
        n = 0
        while not self.stopped.is_set():
            nxt += interval
            t0 = time.monotonic()
            n += 1
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{query}&call_id=w{n}", timeout=5) as r,
            ):
                r.read()
            self.samples.append((t0, time.monotonic() - t0))
            for child in _children(self.serve_pid):
                self.child_peak_kib = max(self.child_peak_kib, _hwm_kib(child))
            time.sleep(max(0.0, nxt - time.monotonic()))


def _p99_ms(values: list[float]) -> float:
    ordered = sorted(values)
    return (
        round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2)
        if ordered
        else 0.0
    )


def run(results: Path, *, quick: bool) -> dict[str, Any]:
    from bench.run import prepare  # the same preparation as the other sections

    rows = 100_000 if quick else 1_000_000
    asyncio.run(_forget_decks())
    asyncio.run(prepare(DATABASE, REDIS_DB, large=False))
    # serve's follower picks the import's deck change up and builds the new generation
    # in a child process, as in production; the import itself does not warm.
    env = env_for(DATABASE, REDIS_DB)
    deck = results / "deck.csv"
    probe = write_deck(deck, rows)
    number = probe + "0" * (12 - len(probe))
    r = redis.Redis(db=REDIS_DB)
    with serving(env, 1, results / "sipdata-deck.log") as (url, pids):
        assert PROBE_RATE not in _offers(url, number)
        mem0 = int(r.info("memory")["used_memory"])
        watch = Watch(url, pids[0])
        watch.start()
        time.sleep(IDLE_S)
        cmd = [
            *sipdata_cmd(),
            "import-rates",
            str(deck),
            "--carrier",
            "Alpha Telecom",
            "--replace",
            "--no-warm",
        ]
        timed = ["/usr/bin/time", "-f", "MAXRSS_KIB %M", *cmd]
        t0 = time.monotonic()
        proc = subprocess.run(
            timed, check=False, env=env, capture_output=True, text=True, timeout=3600
        )
        imported = time.monotonic() - t0
        if proc.returncode != 0:
            watch.stopped.set()
            raise RuntimeError(f"import failed: {proc.stderr[-2000:]}")
        while PROBE_RATE not in _offers(url, number):  # the serving process sees it
            if time.monotonic() - t0 > 600:
                watch.stopped.set()
                raise RuntimeError("the imported deck never went live")
            time.sleep(0.05)
        live = time.monotonic() - t0
        watch.stopped.set()
        watch.join()
        idle = [d for at, d in watch.samples if at < t0]
        during = [d for at, d in watch.samples if at >= t0 + imported and at < t0 + live]
        # The decks loaded and nothing changing: what following costs an idle node.
        cpu0, t_idle = cpu_seconds(pids), time.monotonic()
        time.sleep(IDLE_CPU_S)
        idle_core = (cpu_seconds(pids) - cpu0) / (time.monotonic() - t_idle)
        gen = int(r.get("routing:current") or 0)
        lcr_key = f"route:lcr:g{gen}"
        fields = int(r.hlen(lcr_key))
        lcr_bytes = int(r.memory_usage(lcr_key, samples=0) or 0)
        mem1 = int(r.info("memory")["used_memory"])
    peak_kib = int(proc.stderr.rsplit("MAXRSS_KIB ", 1)[1].split()[0])
    decks = None if quick else ten_decks(results, deck)
    return {
        "ten_decks": decks,
        "prefixes": rows,
        "command": " ".join(cmd),
        "import_s": round(imported, 1),
        "live_s": round(live, 1),
        "import_peak_rss_mib": round(peak_kib / 1024),
        "full_load_peak_rss_mib": round(watch.child_peak_kib / 1024),
        "idle_serve_core_fraction": round(idle_core, 4),
        "decide_p99_idle_ms": _p99_ms(idle),
        "decide_p99_during_swap_ms": _p99_ms(during),
        "swap_samples": len(during),
        "compiled_entries": fields,
        "lcr_hash_bytes": lcr_bytes,
        "bytes_per_compiled_entry": round(lcr_bytes / fields) if fields else None,
        "redis_used_memory_delta_mib": round((mem1 - mem0) / 2**20),
        "note": "the delta includes the superseded generation until its grace TTL ends",
    }


async def _bench_carriers(dsn: str, n: int) -> list[str]:
    """`n` more carrier orgs (made once, kept), for decks of their own."""
    conn = await asyncpg.connect(dsn)
    try:
        names = [f"Bench Carrier {k}" for k in range(1, n + 1)]
        for name in names:
            await conn.execute(
                "INSERT INTO organizations (name) SELECT $1::varchar "
                "WHERE NOT EXISTS (SELECT 1 FROM organizations WHERE name = $1::varchar)",
                name,
            )
        return names
    finally:
        await conn.close()


def ten_decks(results: Path, deck: Path) -> dict[str, Any]:
    """Nine more carriers import the same 1,000,000 prefixes (10,000,000 rate rows in
    all) while no sipdata runs; then `serve` starts, its follower finds the deck
    changes and makes one full load: its time, the child's peak memory (it streams,
    so the same as for one deck), and Redis bytes per compiled prefix and per row."""
    env = env_for(DATABASE, REDIS_DB)
    names = asyncio.run(_bench_carriers(env["SIPDATA_DATABASE_URL"], 9))
    t0 = time.monotonic()
    for name in names:
        sipdata(env, "import-rates", str(deck), "--carrier", name, "--replace", "--no-warm")
    imported = time.monotonic() - t0
    r = redis.Redis(db=REDIS_DB)
    before = int(r.get("routing:current") or 0)
    t1 = time.monotonic()
    peak = 0
    # /health, not /ready: until its first full load ends the node is rightly unready.
    with serving(env, 1, results / "sipdata-decks.log", ready="/health") as (_, pids):
        while int(r.get("routing:current") or 0) == before:
            for child in _children(pids[0]):
                peak = max(peak, _hwm_kib(child))
            if time.monotonic() - t1 > 1800:
                raise RuntimeError("the ten decks never went live")
            time.sleep(0.05)
        live = time.monotonic() - t1
        gen = int(r.get("routing:current") or 0)
        lcr_key = f"route:lcr:g{gen}"
        fields = int(r.hlen(lcr_key))
        lcr_bytes = int(r.memory_usage(lcr_key, samples=0) or 0)
    return {
        "decks": 10,
        "rate_rows": 10 * 1_000_000,
        "nine_imports_s": round(imported, 1),
        "full_load_live_s": round(live, 1),
        "full_load_peak_rss_mib": round(peak / 1024),
        "compiled_entries": fields,
        "bytes_per_compiled_entry": round(lcr_bytes / fields) if fields else None,
        "bytes_per_rate_row": round(lcr_bytes / 10_000_000),
    }


def summary_lines(d: dict[str, Any]) -> list[str]:
    return [
        f"Deck import: {d['prefixes']} prefixes, imported in {d['import_s']} s, live after "
        f"{d['live_s']} s, peak RSS import {d['import_peak_rss_mib']} MiB / full load "
        f"{d['full_load_peak_rss_mib']} MiB, {d['compiled_entries']} compiled entries, "
        f"{d['bytes_per_compiled_entry']} B each in Redis ({d['lcr_hash_bytes'] / 2**20:.0f} MiB "
        f"hash); decision p99 {d['decide_p99_idle_ms']} ms idle, "
        f"{d['decide_p99_during_swap_ms']} ms while the new generation was built and switched "
        f"({d['swap_samples']} samples at {PACE_RPS}/s); idle serve with the deck loaded "
        f"(follower polling, catalog refreshing): {d['idle_serve_core_fraction'] * 100:.2f} % "
        "of a core"
    ] + (
        [
            f"Ten decks ({d['ten_decks']['rate_rows']} rate rows): one full load live in "
            f"{d['ten_decks']['full_load_live_s']} s after serve started, peak RSS "
            f"{d['ten_decks']['full_load_peak_rss_mib']} MiB, "
            f"{d['ten_decks']['bytes_per_compiled_entry']} B per compiled prefix in Redis "
            f"({d['ten_decks']['bytes_per_rate_row']} B per rate row)"
        ]
        if d.get("ten_decks")
        else []
    )
