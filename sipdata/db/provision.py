"""Provisioning writes: rate-deck import and the demo data set (all-or-nothing transactions)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from sipdata.db.pool import Conn, in_transaction
from sipdata.decide import digest
from sipdata.decide.changes import MAX_PATCHED_PREFIXES
from sipdata.decide.ratedeck import DeckRow
from sipdata.errors import InputError

IMPORT_BATCH = 10_000  # rows per statement: bounded message size, few round trips


@dataclass(frozen=True, slots=True)
class ImportResult:
    carrier_id: str
    rows: int
    removed: int


async def resolve_carrier(conn: Conn, carrier: str) -> str:
    rows = await conn.fetch(
        "SELECT id::text AS id FROM organizations WHERE id::text = $1 OR name = $1", carrier
    )
    if not rows:
        raise InputError(f"no organization with id or name {carrier!r}", field="carrier")
    if len(rows) > 1:
        raise InputError(
            f"several organizations are named {carrier!r}; use the id", field="carrier"
        )
    return str(rows[0]["id"])


async def _touched_prefixes(
    conn: Conn, carrier_id: str, rows: Sequence[DeckRow], *, replace: bool
) -> list[str] | None:
    """The prefixes whose compiled entries an import changes (the new deck's, and with
    `replace` the old deck's too), or None past MAX_PATCHED_PREFIXES."""
    touched = {r.prefix for r in rows}
    if len(touched) > MAX_PATCHED_PREFIXES:
        return None
    if replace:
        old = await conn.fetch(
            "SELECT DISTINCT prefix FROM lcr_rates WHERE carrier_id = $1::uuid LIMIT $2",
            carrier_id,
            MAX_PATCHED_PREFIXES + 1,
        )
        touched |= {r["prefix"] for r in old}
    return sorted(touched) if len(touched) <= MAX_PATCHED_PREFIXES else None


async def import_rates(
    pool: asyncpg.Pool, carrier: str, rows: Sequence[DeckRow], *, replace: bool
) -> ImportResult:
    """Upsert a whole deck in one transaction; `replace` also drops the carrier's other rows."""

    async def work(conn: Conn) -> ImportResult:
        carrier_id = await resolve_carrier(conn, carrier)
        # One change row for the deck instead of one per rate row (changes.sql). It
        # names the prefixes the import touches when they are few enough for the
        # follower to recompile just those in one MULTI; else none, and the follower
        # builds a new generation. Either way no decision sees half a deck.
        touched = await _touched_prefixes(conn, carrier_id, rows, replace=replace)
        await conn.execute("SET LOCAL sipdata.capture = 'off'")
        await conn.execute(
            "INSERT INTO sipdata_changes (table_name, op, new_keys) VALUES ('lcr_rates', 'B', "
            "jsonb_build_object('carrier_id', $1::text, 'prefixes', $2::text[]))",
            carrier_id,
            touched,
        )
        # unnest() batches instead of COPY into a temp table: the same statement runs
        # on CockroachDB, where temporary tables are still experimental.
        for start in range(0, len(rows), IMPORT_BATCH):
            batch = rows[start : start + IMPORT_BATCH]
            await conn.execute(
                """INSERT INTO lcr_rates (carrier_id, prefix, rate, effective_date, expiry_date,
                                          priority, description)
                   SELECT $1::uuid, d.prefix, d.rate, d.effective_date, d.expiry_date,
                          d.priority, d.description
                   FROM unnest($2::varchar[], $3::numeric[], $4::date[], $5::date[], $6::int[],
                               $7::varchar[])
                        AS d(prefix, rate, effective_date, expiry_date, priority, description)
                   ON CONFLICT (carrier_id, prefix, effective_date) DO UPDATE
                   SET rate = EXCLUDED.rate, expiry_date = EXCLUDED.expiry_date,
                       priority = EXCLUDED.priority, description = EXCLUDED.description""",
                carrier_id,
                [r.prefix for r in batch],
                [r.rate for r in batch],
                [r.effective_date for r in batch],
                [r.expiry_date for r in batch],
                [r.priority for r in batch],
                [r.description for r in batch],
            )
        removed = 0
        if replace:
            # NOT EXISTS plans as a hash anti-join; the NOT IN it replaces ran a
            # nested scan that timed out on a 1,000,000-row deck (make bench).
            status = await conn.execute(
                """DELETE FROM lcr_rates r WHERE r.carrier_id = $1::uuid
                   AND NOT EXISTS (
                     SELECT 1 FROM unnest($2::varchar[], $3::date[]) AS d(prefix, effective_date)
                     WHERE d.prefix = r.prefix AND d.effective_date = r.effective_date)""",
                carrier_id,
                [r.prefix for r in rows],
                [r.effective_date for r in rows],
            )
            removed = int(status.split()[-1])
        return ImportResult(carrier_id, len(rows), removed)

    return await in_transaction(pool, work)


# -- demo data ------------------------------------------------------------------

DEMO_NS = uuid.UUID("6f1d7c3e-2b1a-4c55-9b0e-5d2f3a9c1e01")


def demo_id(name: str) -> str:
    """Stable ids, so the demo loads idempotently and docs can name them."""
    return str(uuid.uuid5(DEMO_NS, name))


def demo_rows(realm: str, today: dt.date) -> dict[str, list[dict[str, Any]]]:
    """The demo data set: two customers (one more suspended), three carriers."""
    orgs = [
        ("acme", "Acme Corp", "active"),
        ("globex", "Globex Inc", "active"),
        ("initech", "Initech (suspended)", "suspended"),
        ("alpha", "Alpha Telecom", "active"),
        ("bravo", "Bravo Networks", "active"),
        ("charlie", "Charlie Global", "active"),
    ]

    def trunk(
        key: str,
        org: str,
        auth: str,
        *,
        password: str | None = None,
        status: str = "active",
        allowed: Sequence[str] = (),
        max_channels: int = 100,
        proxy: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": demo_id(f"trunk:{key}"),
            "org_id": demo_id(f"org:{org}"),
            "name": key,
            "username": key,
            "auth_type": auth,
            "status": status,
            "password_hash": digest.encode(key, realm, password) if password else None,
            "allowed_ips": list(allowed),
            "max_channels": max_channels,
            "outbound_proxy": proxy,
        }

    # Demo passwords are public on purpose: the README's SIPp commands use them.
    trunks = [
        trunk("acme-ip", "acme", "ip"),
        trunk("acme-pbx", "acme", "digest", password="acme-secret", max_channels=10),
        trunk("acme-old", "acme", "ip", status="suspended"),
        trunk("globex-ip", "globex", "ip", allowed=["2001:db8:20::/48"]),
        trunk(
            "globex-sip",
            "globex",
            "digest",
            password="globex-secret",
            allowed=["127.0.0.0/8", "::1/128"],
        ),
        trunk("initech-pbx", "initech", "digest", password="initech-secret"),
        trunk("alpha-gw", "alpha", "ip", allowed=["127.0.0.101/32"]),
        trunk("bravo-gw", "bravo", "ip", allowed=["127.0.0.102/32"]),
        trunk("charlie-gw", "charlie", "ip", allowed=["127.0.0.103/32"]),
    ]
    acl = [
        ("acme-ip", "127.0.0.10", 32),
        ("acme-old", "127.0.0.11", 32),
        ("globex-ip", "127.0.1.0", 24),
    ]
    d = dt.date.fromisoformat
    rates = [
        ("alpha", "1", "0.0120", d("2025-01-01"), None),
        ("alpha", "1212", "0.0100", d("2025-01-01"), None),
        ("alpha", "44", "0.0200", d("2025-01-01"), None),
        ("alpha", "4420", "0.0180", d("2025-01-01"), None),
        ("bravo", "1", "0.0060", d("2024-01-01"), None),
        ("bravo", "1", "0.0050", d("2025-06-01"), None),  # supersedes the 2024 row
        ("bravo", "44", "0.0150", d("2025-01-01"), None),
        ("bravo", "1900", "0.5000", d("2025-01-01"), None),
        ("charlie", "1", "0.0090", d("2025-01-01"), None),
        ("charlie", "12125", "0.0040", today + dt.timedelta(days=30), None),  # not yet
        ("charlie", "44", "0.0100", d("2025-01-01"), today + dt.timedelta(days=365)),
    ]
    dids = [
        ("12125550100", "acme", "acme-pbx", "active"),
        ("12125550101", "acme", "acme-ip", "active"),
        ("442071234567", "globex", "globex-ip", "active"),
        ("12125550199", None, None, "available"),
    ]
    london_hours = {
        "timezone": "Europe/London",
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "08:00",
        "end": "18:00",
    }
    rules = [
        (
            "acme-premium",
            "acme",
            10,
            "prefix",
            "1900",
            {},
            "reject",
            "403 Premium Numbers Blocked",
            {},
            100,
        ),
        (
            "acme-uk-hours",
            "acme",
            20,
            "prefix",
            "44",
            london_hours,
            "trunk",
            demo_id("trunk:charlie-gw"),
            {},
            100,
        ),
        (
            "acme-ivr",
            "acme",
            30,
            "exact",
            "18005550199",
            {},
            "forward",
            "sip:ivr@127.0.0.30:5060",
            {},
            100,
        ),
        (
            "globex-1800-alpha",
            "globex",
            50,
            "prefix",
            "1800",
            {},
            "trunk",
            demo_id("trunk:alpha-gw"),
            {},
            70,
        ),
        (
            "globex-1800-bravo",
            "globex",
            50,
            "prefix",
            "1800",
            {},
            "trunk",
            demo_id("trunk:bravo-gw"),
            {},
            30,
        ),
        (
            "globex-uk-national",
            "globex",
            60,
            "regex",
            "^0[1-9]",
            {},
            "lcr",
            None,
            {"strip": 1, "prefix": "44"},
            100,
        ),
    ]
    return {
        "organizations": [{"id": demo_id(f"org:{k}"), "name": n, "status": s} for k, n, s in orgs],
        "organization_settings": [
            {"org_id": demo_id(f"org:{k}"), "max_concurrent_calls": 50} for k, _, _ in orgs
        ],
        "sip_trunks": trunks,
        "trunk_acl": [
            {
                "id": demo_id(f"acl:{t}:{ip}"),
                "trunk_id": demo_id(f"trunk:{t}"),
                "ip_address": ip,
                "subnet_mask": m,
            }
            for t, ip, m in acl
        ],
        "lcr_rates": [
            {
                "id": demo_id(f"rate:{c}:{p}:{e}"),
                "carrier_id": demo_id(f"org:{c}"),
                "prefix": p,
                "rate": Decimal(r),
                "effective_date": e,
                "expiry_date": x,
                "description": f"demo {c} {p}",
            }
            for c, p, r, e, x in rates
        ],
        "phone_numbers": [
            {
                "id": demo_id(f"did:{n}"),
                "number": n,
                "country_code": n[:1] if n.startswith("1") else n[:2],
                "org_id": demo_id(f"org:{o}") if o else None,
                "trunk_id": demo_id(f"trunk:{t}") if t else None,
                "status": s,
            }
            for n, o, t, s in dids
        ],
        "routing_rules": [
            {
                "id": demo_id(f"rule:{k}"),
                "org_id": demo_id(f"org:{o}"),
                "name": k,
                "priority": pr,
                "match_type": mt,
                "match_pattern": pat,
                "time_condition": tc,
                "action": a,
                "destination": dst,
                "transform_rules": tr,
                "weight": w,
            }
            for k, o, pr, mt, pat, tc, a, dst, tr, w in rules
        ],
    }


_CONFLICT_KEY = {"organization_settings": "org_id"}


async def load_demo(pool: asyncpg.Pool, realm: str, today: dt.date) -> dict[str, int]:
    """Insert (or refresh) the demo rows; safe to run again."""
    data = demo_rows(realm, today)

    async def work(conn: Conn) -> dict[str, int]:
        counts = {}
        for table, rows in data.items():
            key = _CONFLICT_KEY.get(table, "id")
            for row in rows:
                cols = list(row)
                casts = [
                    "::jsonb"
                    if isinstance(row[c], dict | list)
                    else "::inet"
                    if c == "ip_address"
                    else "::uuid"
                    if c.endswith("id") and row[c] is not None
                    else "::numeric"
                    if c == "rate"
                    else ""
                    for c in cols
                ]
                placeholders = ", ".join(f"${i + 1}{cast}" for i, cast in enumerate(casts))
                updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != key)
                await conn.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({placeholders}) "
                    f"ON CONFLICT ({key}) DO UPDATE SET {updates}",
                    *row.values(),
                )
            counts[table] = len(rows)
        return counts

    return await in_transaction(pool, work)
