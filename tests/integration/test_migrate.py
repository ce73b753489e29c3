"""The schema: every seed table loads, migrate is idempotent, partitions receive rows."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from sipdata.db import migrate

SEED_TABLES = {
    "organizations",
    "organization_settings",
    "users",
    "api_keys",
    "audit_logs",
    "sip_trunks",
    "trunk_registrations",
    "trunk_acl",
    "phone_numbers",
    "e911_addresses",
    "routing_rules",
    "lcr_rates",
    "cdrs",
    "billing_accounts",
    "usage_records",
    "invoices",
    "messages",
    "messaging_campaigns",
}


async def catalog(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1"
    )
    return [(r["relname"], r["relkind"]) for r in rows]


async def test_every_seed_table_exists(pool: asyncpg.Pool) -> None:
    """Every table of the seed schema exists after migrate."""
    async with pool.acquire() as conn:
        names = {name for name, _ in await catalog(conn)}
    assert names >= SEED_TABLES


async def test_second_migrate_changes_nothing(pool: asyncpg.Pool) -> None:
    """A second migrate applies nothing and creates no partition."""
    async with pool.acquire() as conn:
        before = await catalog(conn)
        result = await migrate.migrate(conn, dt.date.today())
        assert (result.applied, result.partitions_created) == (False, [])
        assert await catalog(conn) == before
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1


async def test_partitions_exist_ahead_and_rows_land_in_them(pool: asyncpg.Pool) -> None:
    """Monthly partitions exist ahead of time and a CDR lands in its month's."""
    today = dt.date.today()
    async with pool.acquire() as conn:
        org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('p') RETURNING id")
        this_month = f"cdrs_{today:%Y_%m}"
        where = await conn.fetchval(
            "INSERT INTO cdrs (call_id, org_id, start_time) VALUES ('c1', $1, $2) "
            "RETURNING tableoid::regclass::text",
            org,
            dt.datetime.now(),
        )
        assert where == this_month
        far = await conn.fetchval(
            "INSERT INTO cdrs (call_id, org_id, start_time) VALUES ('c2', $1, '2099-01-01') "
            "RETURNING tableoid::regclass::text",
            org,
        )
        assert far == "cdrs_default"  # never lost, even without a partition
        names = {n for n, _ in await catalog(conn)}
        for table, name, _, _ in migrate.partition_names(today, 3):
            assert name in names, f"{table} lacks {name}"


async def test_cdr_unique_per_call_and_start(pool: asyncpg.Pool) -> None:
    """Two CDRs with one Call-ID and start time are refused by the database."""
    async with pool.acquire() as conn:
        org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('u') RETURNING id")
        start = dt.datetime.now().replace(microsecond=0)
        await conn.execute(
            "INSERT INTO cdrs (call_id, org_id, start_time) VALUES ('d', $1, $2)", org, start
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO cdrs (call_id, org_id, start_time) VALUES ('d', $1, $2)", org, start
            )


def test_partition_names_roll_over_the_year() -> None:
    """Partition names roll over into the next year."""
    names = [n for t, n, _, _ in migrate.partition_names(dt.date(2026, 11, 27), 3) if t == "cdrs"]
    assert names == ["cdrs_2026_11", "cdrs_2026_12", "cdrs_2027_01", "cdrs_2027_02"]


async def test_a_version_1_database_is_upgraded_once(database_url: str) -> None:
    """A database migrated before the registration ordering columns, the change
    capture and the admin API's columns gets migrations 2, 3 and 4, recorded, and a
    second run applies nothing."""
    admin = await asyncpg.connect(database_url.rsplit("/", 1)[0] + "/postgres")
    name = "sipdata_upgrade_test"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(database_url.rsplit("/", 1)[0] + "/" + name)
    try:
        await migrate.migrate(conn, dt.date.today())
        await conn.execute(
            "ALTER TABLE trunk_registrations DROP COLUMN call_id, DROP COLUMN cseq;"
            "DROP FUNCTION sipdata_capture() CASCADE; DROP TABLE sipdata_changes;"
            "ALTER TABLE api_keys DROP COLUMN key_prefix, DROP COLUMN revoked_at;"
            "DELETE FROM api_keys; ALTER TABLE api_keys ALTER COLUMN org_id SET NOT NULL;"
            "TRUNCATE schema_migrations; INSERT INTO schema_migrations (version, checksum) "
            "VALUES (1, 'v1')"
        )
        result = await migrate.migrate(conn, dt.date.today())
        assert (result.applied, result.version) == (True, migrate.SCHEMA_VERSION)
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'trunk_registrations' AND column_name IN ('call_id', 'cseq')"
        )
        assert len(columns) == 2
        assert (
            await conn.fetchval("SELECT max(version) FROM schema_migrations")
            == migrate.SCHEMA_VERSION
        )
        assert (
            await conn.fetchval(
                "SELECT is_nullable FROM information_schema.columns "
                "WHERE table_name = 'api_keys' AND column_name = 'org_id'"
            )
            == "YES"
        )
        triggers = await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'sipdata_capture'"
        )
        assert triggers == 8  # changes.sql's seven tables and billing_accounts (billing.sql)
        assert (
            await conn.fetchval(
                "SELECT numeric_scale FROM information_schema.columns "
                "WHERE table_name = 'billing_accounts' AND column_name = 'current_balance'"
            )
            == 4
        )
        again = await migrate.migrate(conn, dt.date.today())
        assert again.applied is False
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
