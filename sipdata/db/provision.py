"""Provisioning writes: the demo data set (an all-or-nothing transaction)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from sipdata.db.pool import Conn, in_transaction
from sipdata.decide import digest

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
        ("delta", "Delta Prepaid", "active"),
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
        trunk("delta-ip", "delta", "ip"),
        trunk("alpha-gw", "alpha", "ip", allowed=["127.0.0.101/32"]),
        trunk("bravo-gw", "bravo", "ip", allowed=["127.0.0.102/32"]),
        trunk("charlie-gw", "charlie", "ip", allowed=["127.0.0.103/32"]),
    ]
    acl = [
        ("acme-ip", "127.0.0.10", 32),
        ("acme-old", "127.0.0.11", 32),
        ("globex-ip", "127.0.1.0", 24),
        ("delta-ip", "127.0.0.12", 32),
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
        # Delta pays in advance: its calls hold credit and end when it runs out
        # (docs/routing-health.md); 0.50 pays about 100 minutes at bravo's rate.
        "billing_accounts": [
            {
                "id": demo_id("billing:delta"),
                "org_id": demo_id("org:delta"),
                "payment_method": "prepaid",
                "current_balance": Decimal("0.50"),
                "credit_limit": Decimal("0"),
            }
        ],
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
