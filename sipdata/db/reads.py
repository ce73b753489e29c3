"""Reads: rows to decision models (trunks, DIDs, rates, rules) and the warm snapshot."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import structlog

from sipdata.db.pool import Conn, in_transaction, translated
from sipdata.decide import acl, digest
from sipdata.decide.lcr import RateRow
from sipdata.decide.models import (
    Carrier,
    Credential,
    Did,
    Gateway,
    Registration,
    Trunk,
    is_uuid,
)
from sipdata.decide.routes import trunk_address

log = structlog.get_logger(__name__)
T = TypeVar("T")
# Changed LCR prefixes read one index range each up to this many; above, one scan.
INDEXED_ROOTS = 100

# -- trunks -------------------------------------------------------------------

_TRUNK_SQL = """
SELECT t.id::text AS id, t.org_id::text AS org_id, t.name, t.username, t.password_hash,
       COALESCE(t.auth_type, 'digest') AS auth_type, COALESCE(t.status, 'active') AS status,
       COALESCE(o.status, 'active') AS org_status, COALESCE(t.max_channels, -1) AS max_channels,
       COALESCE(s.max_concurrent_calls, -1) AS org_max_calls,
       COALESCE(CASE WHEN t.metadata->>'max_cps' ~ '^[0-9]{1,9}$'
                     THEN (t.metadata->>'max_cps')::int END,
                CASE WHEN s.rate_limits->>'calls_per_second' ~ '^[0-9]{1,9}$'
                     THEN (s.rate_limits->>'calls_per_second')::int END, -1) AS max_cps,
       COALESCE(s.features->>'routing_strategy', 'cost') AS routing_strategy,
       CASE WHEN s.features->>'sell_rate' ~ '^[0-9]{1,6}([.][0-9]{1,6})?$'
            THEN s.features->>'sell_rate' END AS sell_rate,
       (COALESCE(b.payment_method = 'prepaid', false)
        OR COALESCE(s.features->>'credit_control' = 'true', false)) AS credit,
       COALESCE(t.transport, 'UDP') AS transport, t.outbound_proxy, t.allowed_ips,
       EXISTS (SELECT 1 FROM lcr_rates r WHERE r.carrier_id = t.org_id) AS is_carrier
FROM sip_trunks t JOIN organizations o ON o.id = t.org_id
LEFT JOIN organization_settings s ON s.org_id = t.org_id
LEFT JOIN billing_accounts b ON b.org_id = t.org_id
"""
_ACL_SQL = """SELECT trunk_id::text AS trunk_id, host(ip_address) AS ip,
                    masklen(ip_address) AS masklen, subnet_mask FROM trunk_acl"""


def acl_network(host: str, masklen: int, subnet_mask: int | None) -> str:
    """A `trunk_acl` row's network. An IPv4 address stored without a mask
    (masklen 32) takes `subnet_mask` (the seed's column, default 32); one stored
    in CIDR form keeps its own mask. IPv6 rows always use the mask stored with
    the address: the seed's default of 32 would be absurdly wide there."""
    if host.lower().startswith("::ffff:") and "." in host:
        if masklen < 96:
            raise ValueError("an IPv4-mapped network needs a mask of at least /96")
        masklen -= 96  # the IPv4 address it maps, with the mask it covers there
    addr = acl.canonical_ip(host)
    if addr.version == 4 and masklen == 32:
        masklen = subnet_mask if subnet_mask is not None else 32
    return str(acl.parse_network(str(addr), masklen))


def _networks(row: asyncpg.Record, acl_rows: Iterable[asyncpg.Record]) -> tuple[str, ...]:
    nets: list[str] = []
    for a in acl_rows:
        try:
            nets.append(acl_network(a["ip"], a["masklen"], a["subnet_mask"]))
        except ValueError:
            log.warning("acl_row_invalid", trunk_id=row["id"], ip=a["ip"])
    for entry in row["allowed_ips"] or []:
        try:
            nets.append(str(acl.parse_network(str(entry))))
        except ValueError:
            log.warning("allowed_ip_invalid", trunk_id=row["id"], entry=entry)
    return tuple(dict.fromkeys(nets))


def _trunk(row: asyncpg.Record, acl_rows: Iterable[asyncpg.Record]) -> Trunk:
    networks = _networks(row, acl_rows)
    return Trunk(
        id=row["id"],
        org_id=row["org_id"],
        name=row["name"],
        status=row["status"],
        org_status=row["org_status"],
        auth_type=row["auth_type"],
        is_carrier=row["is_carrier"],
        address=trunk_address(row["outbound_proxy"], networks),
        transport=row["transport"],
        networks=networks,
        max_channels=row["max_channels"],
        org_max_calls=row["org_max_calls"],
        max_cps=row["max_cps"],
        routing_strategy=row["routing_strategy"],
        sell_rate=row["sell_rate"],
        credit=row["credit"],
    )


def _group(rows: Iterable[asyncpg.Record], key: str) -> dict[str, list[asyncpg.Record]]:
    out: dict[str, list[asyncpg.Record]] = {}
    for r in rows:
        out.setdefault(r[key], []).append(r)
    return out


def credential_of(row: asyncpg.Record, trunk: Trunk) -> Credential | None:
    """A trunk row's digest credential, None for IP trunks and unusable hashes."""
    if trunk.auth_type != "digest":
        return None
    stored = digest.parse(row["password_hash"])
    if stored is None:
        return None
    return Credential(username=row["username"], trunk=trunk, ha1=stored)


def _carriers(trunks: Iterable[Trunk], names: dict[str, str]) -> dict[str, Carrier]:
    gateways: dict[str, list[Gateway]] = {cid: [] for cid in names}
    for t in sorted(trunks, key=lambda t: t.name):
        if t.org_id in gateways and t.usable and t.address:
            gateways[t.org_id].append(Gateway(t.id, t.address, t.transport))
    return {cid: Carrier(cid, names[cid], tuple(gws)) for cid, gws in gateways.items()}


def _did(row: asyncpg.Record, trunk: Trunk | None) -> Did:
    return Did(
        number=row["number"],
        org_id=row["org_id"],
        status=row["status"] or "available",
        voice_enabled=bool(row["voice_enabled"]),
        trunk=trunk,
    )


def _rate(row: asyncpg.Record) -> RateRow:
    # Positional, in RateRow's field order: a full load makes a million of these.
    carrier_id, prefix, rate, priority, effective, expiry = row
    return RateRow(
        carrier_id, prefix, rate, 100 if priority is None else priority, effective, expiry
    )


_DID_SQL = """SELECT number, org_id::text AS org_id, trunk_id::text AS trunk_id, status,
                     voice_enabled FROM phone_numbers"""
_RATE_SQL = """SELECT carrier_id::text AS carrier_id, prefix, rate, priority, effective_date,
                      expiry_date FROM lcr_rates
               WHERE carrier_id IS NOT NULL AND (expiry_date IS NULL OR expiry_date > $1)"""
_RULE_SQL = """SELECT id::text AS id, org_id::text AS org_id, trunk_id::text AS trunk_id, name,
                      priority, match_type, match_pattern, time_condition, action, destination,
                      transform_rules, weight, max_calls FROM routing_rules WHERE enabled"""
_CARRIER_SQL = """SELECT o.id::text AS id, o.name FROM organizations o
                  WHERE EXISTS (SELECT 1 FROM lcr_rates r WHERE r.carrier_id = o.id)"""
_REG_SQL = """SELECT trunk_id::text AS trunk_id, contact, received, user_agent, expires_at
              FROM trunk_registrations
              WHERE status = 'online' AND contact IS NOT NULL AND expires_at > $1"""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent read of everything the serving store holds but the decks (which
    are streamed: see Store.snapshot)."""

    trunks: dict[str, Trunk]
    credentials: dict[str, Credential]
    dids: dict[str, Did]
    rules: list[dict[str, Any]]
    carriers: dict[str, Carrier]
    registrations: list[asyncpg.Record]


RateGroups = AsyncIterator[tuple[str, list[RateRow]]]


async def _by_prefix(rows: AsyncIterator[asyncpg.Record]) -> RateGroups:
    """Consecutive rows of one prefix as one group (the cursor reads in prefix order)."""
    prefix: str | None = None
    group: list[RateRow] = []
    async for r in rows:
        if r["prefix"] != prefix:
            if group and prefix is not None:
                yield prefix, group
            prefix, group = r["prefix"], []
        group.append(_rate(r))
    if group and prefix is not None:
        yield prefix, group


class Store:
    """The database as sipdata reads it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ping(self) -> None:
        async with translated("ping"), self.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def _trunk_rows(
        self, conn: Conn, where: str, *args: Any
    ) -> list[tuple[asyncpg.Record, Trunk]]:
        """Trunk rows (which also carry the credential columns) with their models."""
        rows = await conn.fetch(f"{_TRUNK_SQL} {where}", *args)
        acl_rows = _group(
            await conn.fetch(
                f"{_ACL_SQL} WHERE trunk_id = ANY($1::uuid[])", [r["id"] for r in rows]
            ),
            "trunk_id",
        )
        return [(r, _trunk(r, acl_rows.get(r["id"], []))) for r in rows]

    async def _trunks(self, conn: Conn, where: str, *args: Any) -> list[Trunk]:
        return [t for _, t in await self._trunk_rows(conn, where, *args)]

    async def trunks(self, ids: Sequence[str]) -> dict[str, Trunk]:
        """Trunks by id; an id that is not a UUID (a mistyped rule target) matches nothing."""
        valid = [i for i in ids if is_uuid(i)]
        async with translated("read trunks"), self.pool.acquire() as conn:
            found = await self._trunks(conn, "WHERE t.id = ANY($1::uuid[])", valid)
        return {t.id: t for t in found}

    async def credential(self, username: str) -> Credential | None:
        async with translated("read credential"), self.pool.acquire() as conn:
            found = await self._trunk_rows(conn, "WHERE t.username = $1", username)
        return credential_of(*found[0]) if found else None

    async def did(self, number: str) -> Did | None:
        return (await self.dids([number], ())).get(number)

    async def ip_trunks(self) -> list[Trunk]:
        """Every IP-authenticated trunk with its networks (the cold-cache ACL)."""
        async with translated("read ACL"), self.pool.acquire() as conn:
            return await self._trunks(conn, "WHERE t.auth_type = 'ip'")

    async def rates_for(self, prefixes: Sequence[str], today: dt.date) -> list[RateRow]:
        async with translated("read rates"), self.pool.acquire() as conn:
            rows = await conn.fetch(f"{_RATE_SQL} AND prefix = ANY($2)", today, list(prefixes))
        return [_rate(r) for r in rows]

    async def rules(self, org_id: str) -> list[dict[str, Any]]:
        async with translated("read rules"), self.pool.acquire() as conn:
            rows = await conn.fetch(f"{_RULE_SQL} AND org_id = $1::uuid", org_id)
        return [dict(r) for r in rows]

    async def carriers(self, ids: Sequence[str]) -> dict[str, Carrier]:
        async with translated("read carriers"), self.pool.acquire() as conn:
            names = {
                r["id"]: r["name"]
                for r in await conn.fetch(f"{_CARRIER_SQL} AND o.id = ANY($1::uuid[])", list(ids))
            }
            trunks = await self._trunks(conn, "WHERE t.org_id = ANY($1::uuid[])", list(names))
        return _carriers(trunks, names)

    async def snapshot(
        self, today: dt.date, now: dt.datetime, deck: Callable[[RateGroups], Awaitable[T]]
    ) -> tuple[Snapshot, T]:
        """Everything, read in one REPEATABLE READ read-only transaction; the rate rows
        are handed to `deck` as they stream from a cursor in prefix order (byte order,
        COLLATE "C", as lcr.compile_sorted needs), never held all at once."""

        async def read(conn: Conn) -> tuple[Snapshot, T]:
            pairs = await self._trunk_rows(conn, "")
            trunk_list = [t for _, t in pairs]
            trunks = {t.id: t for t in trunk_list}
            creds = {c.username: c for c in (credential_of(r, t) for r, t in pairs) if c}
            dids = {
                r["number"]: _did(r, trunks.get(r["trunk_id"]) if r["trunk_id"] else None)
                for r in await conn.fetch(_DID_SQL)
            }
            rules = [dict(r) for r in await conn.fetch(_RULE_SQL)]
            names = {r["id"]: r["name"] for r in await conn.fetch(_CARRIER_SQL)}
            regs = await conn.fetch(_REG_SQL, now)
            cursor = conn.cursor(f'{_RATE_SQL} ORDER BY prefix COLLATE "C"', today, prefetch=20000)
            compiled = await deck(_by_prefix(cursor.__aiter__()))
            snap = Snapshot(trunks, creds, dids, rules, _carriers(trunk_list, names), list(regs))
            return snap, compiled

        return await in_transaction(self.pool, read, isolation="repeatable_read", readonly=True)

    # -- what a captured change needs re-read (jobs/follow.py) ---------------------

    async def changed_trunks(
        self, ids: Iterable[str], orgs: Iterable[str]
    ) -> list[tuple[asyncpg.Record, Trunk]]:
        """The trunks named, and every trunk of the orgs named, as they are now."""
        async with translated("read changed trunks"), self.pool.acquire() as conn:
            return await self._trunk_rows(
                conn,
                "WHERE t.id = ANY($1::uuid[]) OR t.org_id = ANY($2::uuid[])",
                [i for i in ids if is_uuid(i)],
                [o for o in orgs if is_uuid(o)],
            )

    async def dids(self, numbers: Iterable[str], trunk_ids: Iterable[str]) -> dict[str, Did]:
        """The DIDs named, and those of the trunks named, with their trunks as they are now."""
        async with translated("read DIDs"), self.pool.acquire() as conn:
            # Two index reads, not one OR: an OR across two columns plans as a scan of
            # every number (EXPLAIN on 200,000 DIDs).
            rows = await conn.fetch(f"{_DID_SQL} WHERE number = ANY($1::varchar[])", list(numbers))
            valid = [t for t in trunk_ids if is_uuid(t)]
            if valid:
                rows += await conn.fetch(f"{_DID_SQL} WHERE trunk_id = ANY($1::uuid[])", valid)
            wanted = [r["trunk_id"] for r in rows if r["trunk_id"]]
            trunks = {
                t.id: t for t in await self._trunks(conn, "WHERE t.id = ANY($1::uuid[])", wanted)
            }
        return {r["number"]: _did(r, trunks.get(r["trunk_id"])) for r in rows}

    async def changed_rules(
        self, orgs: Iterable[str], targets: Iterable[str]
    ) -> tuple[set[str], list[dict[str, Any]], dict[str, Trunk]]:
        """(orgs, their enabled rule rows, the trunks those rules send to) for the orgs
        named and every org with a rule sending to one of the trunks named."""
        async with translated("read changed rules"), self.pool.acquire() as conn:
            found = await conn.fetch(
                "SELECT DISTINCT org_id::text AS org_id FROM routing_rules "
                "WHERE action = 'trunk' AND destination = ANY($1::varchar[])",
                list(targets),
            )
            wanted = {o for o in orgs if is_uuid(o)} | {r["org_id"] for r in found}
            rows = [
                dict(r)
                for r in await conn.fetch(f"{_RULE_SQL} AND org_id = ANY($1::uuid[])", list(wanted))
            ]
            ids = {str(r["destination"]) for r in rows if r["action"] == "trunk"}
            trunks = await self._trunks(
                conn, "WHERE t.id = ANY($1::uuid[])", [i for i in ids if is_uuid(i)]
            )
        return wanted, rows, {t.id: t for t in trunks}

    async def rates_under(
        self, ancestors: Iterable[str], roots: Iterable[str], today: dt.date, limit: int
    ) -> list[RateRow] | None:
        """Rows at the prefixes named and at every prefix under a root (index range
        reads), or None when more than `limit` rows lie under the roots: the caller
        then rebuilds rather than hold and compile them here."""
        async with translated("read changed rates"), self.pool.acquire() as conn:
            rows = list(
                await conn.fetch(
                    f"{_RATE_SQL} AND prefix = ANY($2::varchar[])", today, list(ancestors)
                )
            )
            patterns = [f"{root}%" for root in roots]
            under: list[asyncpg.Record] = []
            if len(patterns) <= INDEXED_ROOTS:
                for pattern in patterns:  # each an index range read
                    under += await conn.fetch(
                        f"{_RATE_SQL} AND prefix LIKE $2 LIMIT $3",
                        today,
                        pattern,
                        limit + 1 - len(under),
                    )
                    if len(under) > limit:
                        return None
            else:  # one scan beats thousands of range reads
                under = await conn.fetch(
                    f"{_RATE_SQL} AND prefix LIKE ANY($2::varchar[]) LIMIT $3",
                    today,
                    patterns,
                    limit + 1,
                )
        if len(under) > limit:
            return None
        return [_rate(r) for r in rows + under]

    async def registrations(self, trunk_ids: Sequence[str]) -> dict[str, Registration]:
        """Live registrations from the database (when Redis cannot say)."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        async with translated("read registrations"), self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"{_REG_SQL} AND trunk_id = ANY($2::uuid[])", now, list(trunk_ids)
            )
        return {r["trunk_id"]: registration_of(r) for r in rows}

    async def saved_channels(self) -> list[tuple[str, str, int]]:
        """(trunk id, org id, channels_in_use) of every trunk the write-back last saw busy."""
        async with translated("read channel counts"), self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id::text, org_id::text, channels_in_use FROM sip_trunks"
                " WHERE channels_in_use > 0"
            )
        return [(r["id"], r["org_id"], int(r["channels_in_use"])) for r in rows]


def registration_of(row: asyncpg.Record) -> Registration:
    expires = row["expires_at"].replace(tzinfo=dt.UTC)
    return Registration(
        contact=row["contact"],
        expires=int(expires.timestamp()),
        user_agent=row["user_agent"],
        received=row["received"],
    )
