"""The command line: rate-deck import (all or nothing), configuration errors, helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from sipdata.cache.client import Cache
from sipdata.db.provision import demo_id
from sipdata.decide import digest
from sipdata.settings import Settings

pytestmark = pytest.mark.usefixtures("demo")
BRAVO = demo_id("org:bravo")


def run(
    settings: Settings, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "SIPDATA_DATABASE_URL": settings.database_url,
        "SIPDATA_REDIS_URL": settings.redis_url,
        "SIPDATA_LOG_FORMAT": "console",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "sipdata", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


async def bravo_rows(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT prefix, rate::text FROM lcr_rates WHERE carrier_id = "
            "$1::uuid ORDER BY prefix, effective_date",
            BRAVO,
        )
    return [(r["prefix"], r["rate"]) for r in rows]


async def test_import_rates_loads_and_warms(
    settings: Settings, pool: asyncpg.Pool, cache: Cache, tmp_path: Path
) -> None:
    """import-rates writes the deck and warms, so the new prefixes serve at once."""
    deck = tmp_path / "bravo.csv"
    deck.write_text(
        "prefix,rate,effective_date,description\n"
        "4930,0.0110,2025-01-01,Berlin\n+4989,0.0120,2025-01-01,Munich\n"
    )
    result = run(settings, "import-rates", str(deck), "--carrier", "Bravo Networks")
    assert result.returncode == 0, result.stderr
    assert ("4930", "0.011000") in await bravo_rows(pool)
    gen = await cache.current_generation()
    assert gen is not None and await cache.hget("route:lcr:g", gen, "4989") is not None


async def test_invalid_row_names_file_line_and_field_and_writes_nothing(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """One invalid row stops the import naming file, line and field, and nothing is written."""
    before = await bravo_rows(pool)
    deck = tmp_path / "bad.csv"
    deck.write_text("prefix,rate,effective_date\n4930,0.011,2025-01-01\n4989,cheap,2025-01-01\n")
    result = run(settings, "import-rates", str(deck), "--carrier", BRAVO)
    assert result.returncode == 1
    assert f"{deck}: line 3: field rate:" in result.stderr
    assert "'cheap' is not a number" in result.stderr
    assert await bravo_rows(pool) == before


async def test_unknown_carrier_is_refused(settings: Settings, tmp_path: Path) -> None:
    """A deck for a carrier that does not exist is refused."""
    deck = tmp_path / "d.csv"
    deck.write_text("prefix,rate,effective_date\n1,0.01,2025-01-01\n")
    result = run(settings, "import-rates", str(deck), "--carrier", "Nobody Telecom")
    assert result.returncode == 1 and "no organization" in result.stderr


async def test_replace_drops_rows_missing_from_the_file(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """--replace removes the carrier's rows the file no longer has."""
    deck = tmp_path / "only.csv"
    deck.write_text("prefix,rate,effective_date\n1,0.0040,2025-06-01\n")
    result = run(settings, "import-rates", str(deck), "--carrier", BRAVO, "--replace", "--no-warm")
    assert result.returncode == 0, result.stderr
    assert await bravo_rows(pool) == [("1", "0.004000")]
    out = json.loads(result.stdout)
    assert (out["rows"], out["removed"]) == (1, 3)  # 1@2024-01-01, 44 and 1900 went


async def test_a_bad_line_past_the_first_batches_leaves_the_old_deck_whole(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The deck is written while it is parsed: a bad line after 25,000 good rows (several
    batches already sent) still names its line and rolls every row back, the old
    rows deleted by --replace included; no deck change is queued."""
    before = await bravo_rows(pool)
    deck = tmp_path / "long.csv"
    good = "".join(f"7{i:06d},0.01,2025-01-01\n" for i in range(25_000))
    deck.write_text(f"prefix,rate,effective_date\n{good}7x,0.01,2025-01-01\n")
    result = run(settings, "import-rates", str(deck), "--carrier", BRAVO, "--replace")
    assert result.returncode == 1
    assert f"{deck}: line 25002: field prefix:" in result.stderr
    assert await bravo_rows(pool) == before
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM sipdata_changes WHERE op = 'B'") == 0


def test_bad_setting_stops_with_the_variable_named(settings: Settings) -> None:
    """A bad setting stops any command with the variable named and no traceback."""
    result = run(settings, "warm", env={"SIPDATA_HTTP_PORT": "http"})
    assert result.returncode == 2
    assert "SIPDATA_HTTP_PORT" in result.stderr and "Traceback" not in result.stderr


def test_hash_password_prints_a_stored_ha1_value(settings: Settings) -> None:
    """hash-password prints a value that reads back as the user's HA1s."""
    result = run(settings, "hash-password", "bob", "--realm", "edge.example", "--password", "pw")
    stored = digest.parse(result.stdout.strip())
    assert stored is not None and stored.md5 == digest.ha1("MD5", "bob", "edge.example", "pw")
