"""Schema migration (versioned, idempotent) and monthly partition maintenance."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

from sipdata.db.pool import Conn, translated

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 5


def _resource(name: str) -> str:
    return resources.files("sipdata").joinpath(name).read_text()


# What takes a database at version N-1 to N; schema_sql() itself is always the
# newest version, for a new database.
UPGRADES = {
    2: """ALTER TABLE trunk_registrations ADD COLUMN IF NOT EXISTS call_id VARCHAR(255);
          ALTER TABLE trunk_registrations ADD COLUMN IF NOT EXISTS cseq BIGINT;""",
    3: _resource("changes.sql"),
    4: _resource("admin.sql"),
    5: _resource("billing.sql"),
}
# Partitioned tables of the seed and their partition columns.
PARTITIONED = {"cdrs": "start_time", "usage_records": "period_start", "messages": "created_at"}


def schema_sql() -> str:
    """The seed's tables, the change capture decisions follow (changes.sql), the
    admin API's additions (admin.sql), credit control's (billing.sql)."""
    names = ("schema.sql", "changes.sql", "admin.sql", "billing.sql")
    return "\n".join(_resource(n) for n in names)


@dataclass(frozen=True, slots=True)
class MigrateResult:
    applied: bool
    version: int
    partitions_created: list[str]


async def ensure_database(admin_url: str, name: str) -> bool:
    """Create database `name` through the maintenance database if it is missing."""
    async with translated("create database"):
        conn = await asyncpg.connect(admin_url)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if exists:
                return False
            await conn.execute(f'CREATE DATABASE "{name}"')
            return True
        finally:
            await conn.close()


_RECORD = (
    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2) "
    "ON CONFLICT (version) DO NOTHING"
)


def _checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


async def migrate(conn: Conn, today: dt.date, months_ahead: int = 3) -> MigrateResult:
    """A new database gets schema.sql; an older one the upgrades it lacks, each once and
    recorded; then partitions are made sure of."""
    sql = schema_sql()
    applied = False
    async with translated("migrate"):
        has_table = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        current = 0
        if has_table:
            current = await conn.fetchval("SELECT COALESCE(max(version), 0) FROM schema_migrations")
        if current == 0:
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(_RECORD, SCHEMA_VERSION, _checksum(sql))
            applied = True
        for version in range(current + 1 if current else SCHEMA_VERSION + 1, SCHEMA_VERSION + 1):
            async with conn.transaction():
                await conn.execute(UPGRADES[version])
                await conn.execute(_RECORD, version, _checksum(UPGRADES[version]))
            applied = True
            log.info("schema_upgraded", version=version)
        if current == SCHEMA_VERSION:
            recorded = await conn.fetchval(
                "SELECT checksum FROM schema_migrations WHERE version = $1", SCHEMA_VERSION
            )
            if recorded not in (_checksum(sql), _checksum(UPGRADES.get(SCHEMA_VERSION, ""))):
                log.warning("schema_changed_since_applied", version=SCHEMA_VERSION)
    created = await ensure_partitions(conn, today, months_ahead)
    return MigrateResult(applied, SCHEMA_VERSION, created)


def _month(day: dt.date, add: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + add
    return dt.date(index // 12, index % 12 + 1, 1)


def partition_names(today: dt.date, months_ahead: int) -> list[tuple[str, str, dt.date, dt.date]]:
    """(table, partition, from, to) for this month and `months_ahead` more."""
    out = []
    for table in PARTITIONED:
        for i in range(months_ahead + 1):
            start, end = _month(today, i), _month(today, i + 1)
            out.append((table, f"{table}_{start:%Y_%m}", start, end))
    return out


async def ensure_partitions(conn: Conn, today: dt.date, months_ahead: int = 3) -> list[str]:
    """Create missing monthly partitions; report rows sitting in the default partitions."""
    created = []
    async with translated("partitions"):
        for table, name, start, end in partition_names(today, months_ahead):
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                continue
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
            created.append(name)
        for table in PARTITIONED:
            stray = await conn.fetchval(f"SELECT count(*) FROM {table}_default")
            if stray:
                log.warning("rows_in_default_partition", table=table, rows=stray)
    return created
