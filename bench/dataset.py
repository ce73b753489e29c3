"""The benchmark data sets: the demo data alone, or the demo plus a carrier-sized bulk load."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

# Country codes weighted roughly like a wholesale deck: NANP and Europe dominate.
COUNTRY_CODES = ["1"] * 6 + ["44", "49", "33", "39", "34", "31", "61", "81", "55", "52", "91"]
NS = uuid.UUID("0b7e1c2a-5d8e-4f3b-9a61-2c4d6e8f0a13")


def bid(name: str) -> uuid.UUID:
    return uuid.uuid5(NS, name)


@dataclass(frozen=True)
class Size:
    """How big the bulk part is (the issue's floor: 100k prefixes, 10k trunks, 100k DIDs)."""

    prefixes: int = 100_000
    carriers: int = 5
    carriers_per_prefix: int = 3
    orgs: int = 2_000
    trunks: int = 10_000
    dids: int = 100_000
    rule_orgs: int = 500


@dataclass
class Cases:
    """What the load generator rotates through: (source_ip, to) pairs by kind."""

    outbound: list[tuple[str, str]]
    inbound: list[tuple[str, str]]


def carrier_address(i: int) -> str:
    return f"127.0.2.{i + 1}"


def trunk_address(i: int) -> str:
    return str(ipaddress.IPv4Address("10.0.0.0") + 1 + i)


def _prefixes(rng: random.Random, n: int) -> list[str]:
    seen: set[str] = set()
    while len(seen) < n:
        cc = rng.choice(COUNTRY_CODES)
        seen.add(cc + "".join(rng.choices("0123456789", k=rng.randint(1, 6))))
    return sorted(seen)


def _dialled(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choices("0123456789", k=max(0, 11 - len(prefix))))


async def load_bulk(conn: asyncpg.Connection, size: Size, seed: int = 5) -> Cases:
    """COPY the bulk rows (idempotent: a second run finds them and only rebuilds the cases)."""
    rng = random.Random(seed)
    prefixes = _prefixes(rng, size.prefixes)
    carriers = [bid(f"carrier:{i}") for i in range(size.carriers)]
    orgs = [bid(f"org:{i}") for i in range(size.orgs)]
    trunks = [
        (bid(f"trunk:{i}"), orgs[i % size.orgs], trunk_address(i)) for i in range(size.trunks)
    ]
    dids = sorted({"1" + "".join(rng.choices("23456789", k=10)) for _ in range(size.dids)})
    loaded = await conn.fetchval("SELECT count(*) FROM organizations WHERE id = $1", carriers[0])
    if not loaded:
        await _copy(conn, rng, size, prefixes, carriers, orgs, trunks, dids)
    outbound = [(t[2], _dialled(rng, rng.choice(prefixes))) for t in rng.sample(trunks, 4000)]
    inbound = [(carrier_address(rng.randrange(size.carriers)), d) for d in rng.sample(dids, 1000)]
    return Cases(outbound=outbound, inbound=inbound)


async def _copy(
    conn: asyncpg.Connection,
    rng: random.Random,
    size: Size,
    prefixes: list[str],
    carriers: list[uuid.UUID],
    orgs: list[uuid.UUID],
    trunks: list[tuple[uuid.UUID, uuid.UUID, str]],
    dids: list[str],
) -> None:
    async with conn.transaction():
        org_rows: list[tuple[Any, ...]] = [
            (c, f"Bench Carrier {i}") for i, c in enumerate(carriers)
        ]
        org_rows += [(o, f"Bench Customer {i}") for i, o in enumerate(orgs)]
        await conn.copy_records_to_table("organizations", records=org_rows, columns=["id", "name"])
        await conn.copy_records_to_table(
            "organization_settings",
            records=[(o, 5000) for o in orgs],
            columns=["org_id", "max_concurrent_calls"],
        )
        gw_rows = [
            (
                bid(f"gw:{i}"),
                c,
                f"gw-{i}",
                f"bench-gw-{i}",
                "ip",
                f'["{carrier_address(i)}/32"]',
                None,
            )
            for i, c in enumerate(carriers)
        ]
        cust_rows = [
            (t, o, f"trunk-{i}", f"bench-trunk-{i}", "ip", "[]", 1000)
            for i, (t, o, _) in enumerate(trunks)
        ]
        await conn.copy_records_to_table(
            "sip_trunks",
            records=gw_rows + cust_rows,
            columns=[
                "id",
                "org_id",
                "name",
                "username",
                "auth_type",
                "allowed_ips",
                "max_channels",
            ],
        )
        await conn.copy_records_to_table(
            "trunk_acl",
            records=[(t, ipaddress.IPv4Address(a), 32) for t, _, a in trunks],
            columns=["trunk_id", "ip_address", "subnet_mask"],
        )
        start = dt.date(2025, 1, 1)
        rate_rows = [
            (c, p, Decimal(rng.randint(10, 5000)) / 100000, start)
            for p in prefixes
            for c in rng.sample(carriers, size.carriers_per_prefix)
        ]
        await conn.copy_records_to_table(
            "lcr_rates",
            records=rate_rows,
            columns=["carrier_id", "prefix", "rate", "effective_date"],
        )
        await conn.copy_records_to_table(
            "phone_numbers",
            records=[
                (d, "1", trunks[i % len(trunks)][1], trunks[i % len(trunks)][0], "active")
                for i, d in enumerate(dids)
            ],
            columns=["number", "country_code", "org_id", "trunk_id", "status"],
        )
        rules: list[tuple[Any, ...]] = []
        for o in orgs[: size.rule_orgs]:
            rules.append(
                (o, "block premium", 10, "prefix", "1900", "reject", "403 Premium Blocked")
            )
            rules.append((o, "uk to carrier 0", 20, "prefix", "44", "trunk", str(bid("gw:0"))))
        await conn.copy_records_to_table(
            "routing_rules",
            records=rules,
            columns=[
                "org_id",
                "name",
                "priority",
                "match_type",
                "match_pattern",
                "action",
                "destination",
            ],
        )


async def lift_demo_limits(conn: asyncpg.Connection) -> None:
    """The demo trunks' channel limits (100, org 50) would turn a load test into a test
    of refusals: the HTTP benchmark measures routing, so they are lifted in its database."""
    await conn.execute(
        "UPDATE sip_trunks SET max_channels = NULL WHERE username NOT LIKE 'bench-%'"
    )
    await conn.execute("UPDATE organization_settings SET max_concurrent_calls = NULL")


DEMO_CASES = Cases(
    # acme-ip: LCR (bravo), a UK number (business-hours rule or LCR), an unknown
    # source (407 challenge), and globex's /24 through its UK-national rule.
    outbound=[("127.0.0.10", "12125551234")] * 6
    + [("127.0.0.10", "442079460000"), ("127.0.1.7", "02079460000"), ("192.0.2.1", "12125551234")],
    inbound=[("127.0.0.102", "12125550101")],
)


def write_cases(path: str, cases: Cases, inbound_share: float = 0.1, seed: int = 7) -> int:
    """One `source_ip to` pair per line; inbound pairs make `inbound_share` of them."""
    rng = random.Random(seed)
    lines = [f"{s} {t}" for s, t in cases.outbound]
    n_in = max(1, round(len(lines) * inbound_share / (1 - inbound_share)))
    lines += [f"{s} {t}" for s, t in rng.choices(cases.inbound, k=n_in)]
    rng.shuffle(lines)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines)
