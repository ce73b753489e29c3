"""The admin API's reads and writes: one transaction per change, its audit row inside it.

Rows are read through each resource's own SELECT, which never names a secret column
(`password_hash`, `key_hash`): what the API can return, the audit trail can record.
Tenancy is a WHERE clause on the row's owning org, so another org's row reads exactly
like a row that does not exist.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from sipdata.db.pool import Conn, Isolation, in_transaction, translated
from sipdata.errors import Conflict, InputError, NotFound, PreconditionFailed, StoreRejected


@dataclass(frozen=True, slots=True)
class Resource:
    name: str  # in URLs, scopes and the audit trail
    table: str
    alias: str
    select: str  # every public column, FROM ... (aliased)
    owner: str  # SQL for the org that owns a row
    filters: tuple[str, ...] = ()  # query parameters that filter lists (column = value)


ORGANIZATIONS = Resource(
    "organizations",
    "organizations",
    "o",
    "SELECT o.id, o.name, o.status, o.tier, o.metadata, o.created_at, o.updated_at "
    "FROM organizations o",
    "o.id",
    ("status",),
)
TRUNKS = Resource(
    "trunks",
    "sip_trunks",
    "t",
    "SELECT t.id, t.org_id, t.name, t.username, t.auth_type, t.status, t.max_channels, "
    "t.channels_in_use, t.transport, t.metadata, t.created_at, t.updated_at, "
    "(t.password_hash IS NOT NULL) AS has_password FROM sip_trunks t",
    "t.org_id",
    ("org_id", "status", "auth_type"),
)
# The network each row admits, as decisions read it (db/reads.acl_network): an IPv4
# row stored without a mask takes subnet_mask.
ACL_NET = (
    "network(set_masklen(a.ip_address, CASE WHEN family(a.ip_address) = 4 AND "
    "masklen(a.ip_address) = 32 THEN COALESCE(a.subnet_mask, 32) "
    "ELSE masklen(a.ip_address) END))"
)
# A network of another org that overlaps $2: its trunk_acl rows, and the allowed_ips
# of its IP trunks (those identify callers too; malformed entries are skipped, as
# the warmer skips them).
OTHER_TENANTS_NET = f"""
SELECT {ACL_NET}::text AS net FROM trunk_acl a JOIN sip_trunks t ON t.id = a.trunk_id
WHERE t.org_id <> $1::uuid AND {ACL_NET} && $2::inet
UNION ALL
SELECT e AS net FROM sip_trunks t, jsonb_array_elements_text(
    CASE WHEN jsonb_typeof(t.allowed_ips) = 'array' THEN t.allowed_ips ELSE '[]' END) AS e
WHERE t.auth_type = 'ip' AND t.org_id <> $1::uuid
  AND e ~ '^[0-9A-Fa-f:.]{{2,45}}(/[0-9]{{1,3}})?$' AND e::inet && $2::inet
LIMIT 1"""
ACL = Resource(
    "acl",
    "trunk_acl",
    "a",
    f"SELECT a.id, a.trunk_id, {ACL_NET}::text AS ip, a.description, a.created_at "
    "FROM trunk_acl a JOIN sip_trunks t ON t.id = a.trunk_id",
    "t.org_id",
    ("trunk_id",),
)
RULES = Resource(
    "rules",
    "routing_rules",
    "r",
    "SELECT r.id, r.org_id, r.trunk_id, r.name, r.priority, r.enabled, r.match_type, "
    "r.match_pattern, r.time_condition, r.action, r.destination, r.transform_rules, "
    "r.weight, r.max_calls, r.metadata, r.created_at, r.updated_at FROM routing_rules r",
    "r.org_id",
    ("org_id", "trunk_id", "action", "enabled"),
)
NUMBERS = Resource(
    "numbers",
    "phone_numbers",
    "n",
    "SELECT n.id, n.number, n.country_code, n.number_type, n.org_id, n.trunk_id, "
    "n.voice_enabled, n.status, n.metadata, n.created_at, n.updated_at FROM phone_numbers n",
    "n.org_id",
    ("org_id", "trunk_id", "status", "number"),
)
API_KEYS = Resource(
    "api_keys",
    "api_keys",
    "k",
    "SELECT k.id, k.org_id, k.name, k.key_prefix, k.permissions AS scopes, k.rate_limit, "
    "k.expires_at, k.status, k.revoked_at, k.last_used, k.created_at FROM api_keys k",
    "k.org_id",
    ("org_id", "status"),
)
# Never password_hash nor mfa_secret.
USERS = Resource(
    "users",
    "users",
    "u",
    "SELECT u.id, u.org_id, u.email, u.username, u.role, u.status, u.mfa_enabled, "
    "u.last_login, u.metadata, u.created_at, u.updated_at FROM users u",
    "u.org_id",
    ("org_id", "role", "status", "email"),
)
# A carrier's deck, as one thing the audit trail names (uploads: http/admin.py).
RATES = Resource(
    "rates",
    "lcr_rates",
    "c",
    "SELECT o.id, o.name FROM organizations o",
    "o.id",
)
AUDIT = Resource(
    "audit",
    "audit_logs",
    "l",
    "SELECT l.id, l.org_id, l.api_key_id, l.action, l.resource_type, l.resource_id, "
    "host(l.ip_address) AS ip_address, l.user_agent, l.metadata->'before' AS before, "
    "l.metadata->'after' AS after, l.created_at FROM audit_logs l",
    "l.org_id",
    ("resource_type", "resource_id", "action", "api_key_id"),
)


def etag(row: dict[str, Any]) -> str:
    """A strong validator of a row's public representation."""
    digest = hashlib.sha256(orjson.dumps(row, option=orjson.OPT_SORT_KEYS, default=str))
    return f'"{digest.hexdigest()[:20]}"'


def _public(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return None if record is None else dict(record.items())


@dataclass(frozen=True, slots=True)
class Actor:
    """Who changes something, for the audit row."""

    key_id: str | None  # None: the command line (`sipdata api-key create`)
    org_id: str | None  # None: a platform key, every org
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    cursor: str | None  # the last id of this page, when there is a next one


class AdminStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- reads -------------------------------------------------------------
    async def get(
        self, res: Resource, row_id: str, org: str | None, conn: Conn | None = None
    ) -> dict[str, Any]:
        """The row, if `org` (None: any) owns it; NotFound otherwise."""
        sql = (
            f"{res.select} WHERE {res.alias}.id = $1::uuid "
            f"AND ($2::uuid IS NULL OR {res.owner} = $2::uuid)"
        )
        async with translated(f"read {res.name}"):
            if conn is not None:
                row = _public(await conn.fetchrow(sql, row_id, org))
            else:
                async with self.pool.acquire() as own:
                    row = _public(await own.fetchrow(sql, row_id, org))
        if row is None:
            raise NotFound(f"no such {res.name} row", field="id")
        return row

    async def list(
        self,
        res: Resource,
        org: str | None,
        filters: dict[str, str],
        *,
        cursor: str | None,
        limit: int,
    ) -> Page:
        """One page in id order (the cursor is the last id seen); filters are equality."""
        where = [f"($1::uuid IS NULL OR {res.owner} = $1::uuid)"]
        args: list[Any] = [org]
        if cursor is not None:
            args.append(cursor)
            where.append(f"{res.alias}.id > ${len(args)}::uuid")
        for name, value in filters.items():
            args.append(value)
            where.append(f"{res.alias}.{name}::text = ${len(args)}")
        args.append(limit + 1)
        sql = f"{res.select} WHERE {' AND '.join(where)} ORDER BY {res.alias}.id LIMIT ${len(args)}"
        async with translated(f"list {res.name}"), self.pool.acquire() as conn:
            rows = [dict(r.items()) for r in await conn.fetch(sql, *args)]
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, str(rows[-1]["id"]) if more and rows else None)

    async def key_by_prefix(self, prefix: str) -> asyncpg.Record | None:
        async with translated("read api key"), self.pool.acquire() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(
                "SELECT id, org_id, key_hash, permissions, rate_limit, expires_at, status, "
                "revoked_at FROM api_keys WHERE key_prefix = $1",
                prefix,
            )
        return row

    # -- writes --------------------------------------------------------------
    async def change(
        self,
        res: Resource,
        actor: Actor,
        action: str,
        work: Callable[[Conn], Awaitable[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]],
        *,
        isolation: Isolation = "read_committed",
    ) -> dict[str, Any] | None:
        """Run `work` (returns id, before, after) and write its audit row, in one
        transaction; a unique or foreign-key refusal becomes 409. A write whose check
        reads other rows (an ACL overlap) runs serializable: of two that would together
        break the check, one is retried (40001) and then sees the other."""

        async def unit(conn: Conn) -> dict[str, Any] | None:
            row_id, before, after = await work(conn)
            await self.audit(conn, res, actor, action, row_id, before=before, after=after)
            return after

        try:
            return await in_transaction(self.pool, unit, isolation=isolation)
        except StoreRejected as exc:
            if exc.sqlstate in ("23505", "23503"):
                raise Conflict(_conflict(exc.sqlstate, res.name)) from exc
            raise

    async def audit(
        self,
        conn: Conn,
        res: Resource,
        actor: Actor,
        action: str,
        row_id: str,
        *,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        """The change's audit row, in the caller's transaction: rows as the API shows
        them, so never a secret."""
        owner = (after or before or {}).get("org_id") if res is not ORGANIZATIONS else row_id
        await conn.execute(
            "INSERT INTO audit_logs (org_id, api_key_id, action, resource_type, "
            "resource_id, ip_address, user_agent, metadata) "
            "VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6::inet, $7, $8)",
            str(owner) if owner is not None else actor.org_id,
            actor.key_id,
            f"{res.name}.{action}",
            res.name,
            str(row_id),
            actor.ip,
            (actor.user_agent or "")[:500] or None,
            {"before": _plain(before), "after": _plain(after)},
        )

    async def lock(
        self, conn: Conn, res: Resource, row_id: str, org: str | None, if_match: str
    ) -> dict[str, Any]:
        """The row, locked for this transaction, if its ETag is still `if_match`."""
        await conn.execute(f"SELECT 1 FROM {res.table} WHERE id = $1::uuid FOR UPDATE", row_id)
        row = await self.get(res, row_id, org, conn)
        if etag(row) != if_match:
            raise PreconditionFailed(
                f"the {res.name} row changed since it was read (If-Match {if_match}, now "
                f"{etag(row)}): read it again"
            )
        return row


def _conflict(sqlstate: str, name: str) -> str:
    if sqlstate == "23505":
        return f"a {name} row with that unique value exists already"
    return f"the {name} row is still referenced by other rows, or names one that is gone"


def _plain(row: dict[str, Any] | None) -> Any:
    """A row as JSON the audit column holds (UUIDs and times as text)."""
    return None if row is None else orjson.loads(orjson.dumps(row, default=str))


def new_id() -> str:
    return str(uuid.uuid4())


# -- statements of the admin service's transactions ----------------------------------
# The ACL's address is text in, inet in the table.
_CASTS = {"ip_address": "inet"}


async def insert(conn: Conn, table: str, values: dict[str, Any]) -> None:
    names = list(values)
    marks = [f"${i}" + (f"::{_CASTS[n]}" if n in _CASTS else "") for i, n in enumerate(names, 1)]
    await conn.execute(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(marks)})",
        *values.values(),
    )


async def set_columns(conn: Conn, table: str, row_id: str, columns: dict[str, Any]) -> None:
    sets = [f"{column} = ${i}" for i, column in enumerate(columns, 2)]
    await conn.execute(
        f"UPDATE {table} SET {', '.join(sets)}, updated_at = now() WHERE id = $1::uuid",
        row_id,
        *columns.values(),
    )


async def delete_row(conn: Conn, table: str, row_id: str) -> None:
    await conn.execute(f"DELETE FROM {table} WHERE id = $1::uuid", row_id)


async def delete_trunk(conn: Conn, trunk_id: str) -> None:
    """The trunk with its ACL rows and its registration, which belong to it; anything
    else that names it (numbers, another trunk's failover) makes the delete a 409."""
    await conn.execute("DELETE FROM trunk_acl WHERE trunk_id = $1::uuid", trunk_id)
    await conn.execute("DELETE FROM trunk_registrations WHERE trunk_id = $1::uuid", trunk_id)
    await delete_row(conn, "sip_trunks", trunk_id)


async def revoke_key(conn: Conn, key_id: str) -> str:
    """Revoke the key; its hash, so the caller can drop it from the key cache."""
    key_hash: str = await conn.fetchval(
        "UPDATE api_keys SET status = 'revoked', revoked_at = COALESCE(revoked_at, now()) "
        "WHERE id = $1::uuid RETURNING key_hash",
        key_id,
    )
    return key_hash


async def other_tenants_net(conn: Conn, org: str, network: str) -> str | None:
    """A network of another org that overlaps `network`. Run it in a serializable
    transaction (AdminStore.change): no advisory lock, which CockroachDB lacks."""
    found = await conn.fetchval(OTHER_TENANTS_NET, org, network)
    return str(found) if found is not None else None


async def org_exists(conn: Conn, org: str) -> None:
    if not await conn.fetchval("SELECT 1 FROM organizations WHERE id = $1::uuid", org):
        raise InputError("names no organization", field="org_id")


async def trunk_of(conn: Conn, trunk_id: Any, org: Any, field: str) -> None:
    """A trunk named by a row must be one of the row's org: a rule or number of one
    tenant never sends calls to another's trunk."""
    owner = await conn.fetchval("SELECT org_id FROM sip_trunks WHERE id = $1::uuid", str(trunk_id))
    if owner is None or org is None or str(owner) != str(org):
        raise InputError("names no trunk of this organization", field=field)
