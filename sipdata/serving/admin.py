"""The admin API's service: who a key is, and each change as one transaction with its
audit row (rows through db/admin.py, the key cache through cache/apikeys.py).

Every write checks the caller's org inside the transaction, so another org's row is
"not found" whatever the verb, and an update compares If-Match under the row's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog

from sipdata.admin import keys, routing, users, validate
from sipdata.cache import keys as redis_keys
from sipdata.cache.apikeys import ApiKeyCache
from sipdata.db import admin as db
from sipdata.db import decks
from sipdata.db.admin import Actor, Page, etag
from sipdata.db.decks import ImportResult
from sipdata.db.pool import Conn, Isolation
from sipdata.decide import digest, ratedeck
from sipdata.errors import (
    CacheUnavailable,
    Conflict,
    ImportFileError,
    NotFound,
    RateLimited,
    Unauthorized,
)

__all__ = ["RESOURCES", "Actor", "AdminService", "Page", "etag"]
log = structlog.get_logger(__name__)
Row = dict[str, Any]
Check = Callable[[Conn], Awaitable[None]]
RESOURCES = {
    r.name: r
    for r in (
        db.ORGANIZATIONS,
        db.TRUNKS,
        db.ACL,
        db.RULES,
        db.NUMBERS,
        db.USERS,
        db.API_KEYS,
        db.AUDIT,
    )
}


def _epoch(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC).timestamp() if value.tzinfo is None else value.timestamp()


def _principal(row: Any) -> keys.Principal:
    return keys.Principal(
        key_id=str(row["id"]),
        org_id=str(row["org_id"]) if row["org_id"] is not None else None,
        scopes=tuple(s for s in row["permissions"] or [] if isinstance(s, str)),
        rate_limit=int(row["rate_limit"] or 1000),
        expires_at=_epoch(row["expires_at"]),
        active=row["status"] == "active" and row["revoked_at"] is None,
    )


class AdminService:
    def __init__(self, store: db.AdminStore, cache: ApiKeyCache, realm: str) -> None:
        self.store, self.cache, self.realm = store, cache, realm

    # -- who asks ----------------------------------------------------------------
    async def authenticate(self, token: str, now: float | None = None) -> keys.Principal:
        """The key's principal, or Unauthorized; RateLimited past its rate. Redis away:
        the database answers; the database away: StoreUnavailable (503), never 401."""
        now = time.time() if now is None else now
        principal = await self._lookup(token)
        if principal is None or not principal.usable(now):
            raise Unauthorized("unknown, revoked or expired API key")
        window = int(now // keys.RATE_WINDOW_S)
        try:
            used = await self.cache.count(principal.key_id, window, keys.RATE_WINDOW_S)
        except CacheUnavailable:
            # No count is shared between nodes without Redis: the limit is not
            # enforced rather than every operator locked out while Redis is away.
            log.warning("api_rate_unchecked", key_id=principal.key_id)
            used = 0
        if used > principal.rate_limit:
            raise RateLimited(
                f"this key's {principal.rate_limit} requests per minute are used up",
                retry_after=max(1, keys.RATE_WINDOW_S - int(now % keys.RATE_WINDOW_S)),
            )
        return principal

    async def _lookup(self, token: str) -> keys.Principal | None:
        prefix = keys.prefix_of(token)
        if prefix is None:
            return None
        key_hash = keys.hash_key(token)
        try:
            cached = await self.cache.get(key_hash)
        except CacheUnavailable:
            cached = None
        if cached == redis_keys.NEGATIVE:
            return None
        if cached is not None:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                # Written by another release in a rolling upgrade: read the row instead.
                doc = orjson.loads(cached)
                return keys.Principal(**{**doc, "scopes": tuple(doc["scopes"])})
        row = await self.store.key_by_prefix(prefix)
        found = row is not None and keys.same_hash(token, row["key_hash"])
        principal = _principal(row) if found else None
        with contextlib.suppress(CacheUnavailable):
            # orjson writes the dataclass as its fields, read back above
            await self.cache.put(
                key_hash, orjson.dumps(principal) if principal else redis_keys.NEGATIVE
            )
        return principal

    # -- reads ---------------------------------------------------------------------
    async def list(
        self, name: str, org: str | None, filters: dict[str, str], cursor: str | None, limit: int
    ) -> Page:
        return await self.store.list(RESOURCES[name], org, filters, cursor=cursor, limit=limit)

    async def get(self, name: str, row_id: str, org: str | None) -> Row:
        return await self.store.get(RESOURCES[name], row_id, org)

    # -- writes --------------------------------------------------------------------
    async def create(
        self,
        name: str,
        who: Actor,
        table: str,
        values: Row,
        check: Check | None = None,
        *,
        isolation: Isolation = "read_committed",
    ) -> Row:
        res = RESOURCES[name]

        async def work(conn: Conn) -> tuple[str, None, Row]:
            if check is not None:
                await check(conn)
            row_id = db.new_id()
            await db.insert(conn, table, {"id": row_id, **values})
            return row_id, None, await self.store.get(res, row_id, None, conn)

        row = await self.store.change(res, who, "create", work, isolation=isolation)
        assert row is not None
        return row

    async def create_org(self, who: Actor, fields: Row) -> Row:
        return await self.create("organizations", who, "organizations", fields)

    async def create_trunk(self, who: Actor, given: validate.TrunkInput, org: str) -> Row:
        columns = self._trunk_columns(given, given.columns["username"])
        return await self.create(
            "trunks", who, "sip_trunks", {**columns, "org_id": org}, lambda c: db.org_exists(c, org)
        )

    async def update(
        self,
        name: str,
        who: Actor,
        row_id: str,
        if_match: str,
        columns: Row,
        *,
        check: Check | None = None,
    ) -> Row:
        res = RESOURCES[name]

        async def work(conn: Conn) -> tuple[str, Row, Row]:
            before = await self.store.lock(conn, res, row_id, who.org_id, if_match)
            if check is not None:
                await check(conn)
            await db.set_columns(conn, res.table, row_id, columns)
            return row_id, before, await self.store.get(res, row_id, None, conn)

        row = await self.store.change(res, who, "update", work)
        assert row is not None
        return row

    async def update_trunk(
        self, who: Actor, row_id: str, if_match: str, given: validate.TrunkInput
    ) -> Row:
        current = await self.store.get(db.TRUNKS, row_id, who.org_id)
        # A stale read here is caught by If-Match under the lock (the ETag covers it).
        username = given.columns.get("username") or current["username"]
        columns = self._trunk_columns(given, username)
        return await self.update("trunks", who, row_id, if_match, columns)

    def _trunk_columns(self, given: validate.TrunkInput, username: str) -> Row:
        columns = dict(given.columns)
        if given.password is not None:
            # Only the HA1s are stored (schema.sql, sip_trunks.password_hash).
            columns["password_hash"] = digest.encode(username, self.realm, given.password)
        return columns

    async def delete(self, name: str, who: Actor, row_id: str, if_match: str) -> None:
        """Delete a trunk (with the rows that belong to it) or a rule, if still as read."""
        res = RESOURCES[name]

        async def work(conn: Conn) -> tuple[str, Row, None]:
            before = await self.store.lock(conn, res, row_id, who.org_id, if_match)
            if res is db.TRUNKS:
                await db.delete_trunk(conn, row_id)
            else:
                await db.delete_row(conn, res.table, row_id)
            return row_id, before, None

        await self.store.change(res, who, "delete", work)

    async def create_acl(self, who: Actor, trunk_id: str, given: validate.AclInput) -> Row:
        async def check(conn: Conn) -> None:
            trunk = await self.store.get(db.TRUNKS, trunk_id, who.org_id, conn)
            # Serializable (below): two orgs adding overlapping networks at once must
            # not both pass the overlap check.
            other = await db.other_tenants_net(conn, str(trunk["org_id"]), given.network)
            if other is not None:
                raise Conflict(
                    f"{given.network} overlaps {other}, which another organization's "
                    "trunk holds: a source must identify one tenant"
                )

        values = {
            "trunk_id": trunk_id,
            "ip_address": given.network,
            "subnet_mask": given.prefixlen,
            "description": given.description,
        }
        return await self.create("acl", who, "trunk_acl", values, check, isolation="serializable")

    async def delete_acl(self, who: Actor, trunk_id: str, acl_id: str) -> None:
        async def work(conn: Conn) -> tuple[str, Row, None]:
            before = await self.store.get(db.ACL, acl_id, who.org_id, conn)
            if str(before["trunk_id"]) != trunk_id:
                raise NotFound("no such acl row", field="id")
            await db.delete_row(conn, "trunk_acl", acl_id)
            return acl_id, before, None

        await self.store.change(db.ACL, who, "delete", work)

    async def create_rule(self, who: Actor, columns: Row, org: str) -> Row:
        row = {**columns, "org_id": org}
        routing.compiled(row)
        return await self.create("rules", who, "routing_rules", row, lambda c: _rule_refs(c, row))

    async def update_rule(self, who: Actor, row_id: str, if_match: str, columns: Row) -> Row:
        merged = {**await self.store.get(db.RULES, row_id, who.org_id), **columns}
        routing.compiled(merged)  # the whole rule as it would be, not just the change
        return await self.update(
            "rules", who, row_id, if_match, columns, check=lambda c: _rule_refs(c, merged)
        )

    async def create_number(self, who: Actor, columns: Row) -> Row:
        return await self.create(
            "numbers", who, "phone_numbers", columns, lambda c: _number_refs(c, columns)
        )

    async def update_number(self, who: Actor, row_id: str, if_match: str, columns: Row) -> Row:
        merged = {**await self.store.get(db.NUMBERS, row_id, who.org_id), **columns}
        return await self.update(
            "numbers", who, row_id, if_match, columns, check=lambda c: _number_refs(c, merged)
        )

    async def create_user(self, who: Actor, columns: Row, password: str) -> Row:
        hashed = await asyncio.to_thread(users.hash_password, password)  # CPU: off the loop
        org = str(columns["org_id"])
        values = {**columns, "password_hash": hashed}
        return await self.create("users", who, "users", values, lambda c: db.org_exists(c, org))

    async def update_user(
        self, who: Actor, row_id: str, if_match: str, columns: Row, password: str | None
    ) -> Row:
        if password is not None:
            columns = {
                **columns,
                "password_hash": await asyncio.to_thread(users.hash_password, password),
            }
        return await self.update("users", who, row_id, if_match, columns)

    async def import_rates(self, who: Actor, carrier_id: str, path: Path, *, replace: bool) -> Row:
        """A deck file (an upload spooled to disk) imported as `import-rates` imports it:
        one transaction, all or nothing, a bad line named; its audit row inside. The
        caller has checked the key may touch this carrier, before reading the upload."""

        async def audit(conn: Conn, result: ImportResult) -> None:
            summary = {
                "org_id": carrier_id,
                "rows": result.rows,
                "removed": result.removed,
                "replace": replace,
            }
            await self.store.audit(
                conn, db.RATES, who, "import", carrier_id, before=None, after=summary
            )

        fh = await asyncio.to_thread(path.open, newline="", encoding="utf-8")
        with fh:
            result = await decks.import_rates(
                self.store.pool, carrier_id, deck_rows(fh), replace=replace, then=audit
            )
        return {"carrier_id": result.carrier_id, "rows": result.rows, "removed": result.removed}

    async def create_key(
        self, who: Actor, given: validate.KeyInput, org: str | None
    ) -> tuple[Row, str]:
        """A new key row; its secret is returned here once and stored only as a hash."""
        made = keys.new_key()
        values = {
            "org_id": org,
            "name": given.name,
            "key_hash": made.hash,
            "key_prefix": made.prefix,
            "permissions": list(given.scopes),
            "rate_limit": given.rate_limit,
            "expires_at": given.expires_at,
        }
        check = (lambda c: db.org_exists(c, org)) if org is not None else None
        return await self.create("api_keys", who, "api_keys", values, check), made.secret

    async def revoke_key(self, who: Actor, row_id: str) -> Row:
        revoked: list[str] = []

        async def work(conn: Conn) -> tuple[str, Row, Row]:
            before = await self.store.get(db.API_KEYS, row_id, who.org_id, conn)
            revoked.append(await db.revoke_key(conn, row_id))
            return row_id, before, await self.store.get(db.API_KEYS, row_id, None, conn)

        row = await self.store.change(db.API_KEYS, who, "revoke", work)
        assert row is not None
        with contextlib.suppress(CacheUnavailable):  # this node at once; others within the TTL
            await self.cache.forget(revoked[-1])
        return row


def deck_rows(fh: TextIO) -> Iterator[ratedeck.DeckRow]:
    """The file's rows as they are parsed; bytes that are not UTF-8 name their line."""
    try:
        yield from ratedeck.rows(fh)
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"not UTF-8 text ({exc.reason})", line=1) from None


async def _rule_refs(conn: Conn, row: Row) -> None:
    await db.org_exists(conn, str(row["org_id"]))
    if row.get("trunk_id"):
        await db.trunk_of(conn, row["trunk_id"], row["org_id"], "trunk_id")
    if row.get("action") == "trunk":
        await db.trunk_of(conn, row["destination"], row["org_id"], "destination")


async def _number_refs(conn: Conn, row: Row) -> None:
    if row.get("org_id") is not None:
        await db.org_exists(conn, str(row["org_id"]))
    if row.get("trunk_id"):
        await db.trunk_of(conn, row["trunk_id"], row.get("org_id"), "trunk_id")
