"""The change log the capture triggers write (changes.sql): read pending rows, drop applied ones.

The log is a queue, not a stream read from a high-water mark: a row becomes
visible when its transaction commits, whatever its id, so "every row still in
the table" is exactly "every committed change not yet applied", with no gap
left by a transaction that took a lower id and committed later. NOTIFY
(PostgreSQL only) wakes the follower at once; the periodic poll is what
guarantees delivery, so a lost notification only delays a change by one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import structlog

from sipdata.db.pool import translated
from sipdata.decide.changes import Change
from sipdata.errors import SchemaOutdated

log = structlog.get_logger(__name__)

CHANNEL = "sipdata_changes"
DELETE_CHUNK = 50_000


def _keys(doc: Any) -> dict[str, Any] | None:
    """A keys column as the pool's jsonb codec decoded it (a JSON object, or None)."""
    return doc if isinstance(doc, dict) else None


@contextlib.asynccontextmanager
async def _log(what: str) -> AsyncIterator[None]:
    """`translated`, plus a missing change log said as what it is."""
    try:
        async with translated(what):
            yield
    except asyncpg.UndefinedTableError as exc:
        raise SchemaOutdated(
            "the database has no sipdata_changes table: run `sipdata migrate` "
            "(schema version 3 adds the change capture)"
        ) from exc


class ChangeLog:
    """sipdata_changes as the follower reads it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def pending(self, limit: int) -> list[Change]:
        """The oldest committed changes not yet applied."""
        async with _log("read changes"), self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, table_name, op, old_keys AS old, new_keys AS new, "
                "EXTRACT(EPOCH FROM created_at)::float8 AS at "
                "FROM sipdata_changes ORDER BY id LIMIT $1",
                limit,
            )
        return [
            Change(r["id"], r["table_name"], r["op"], _keys(r["old"]), _keys(r["new"]), r["at"])
            for r in rows
        ]

    async def waiting(self) -> bool:
        """Whether any change waits (the follower's idle round: one index probe)."""
        async with _log("check changes"), self.pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM sipdata_changes)"))

    async def backlog(self, limit: int) -> list[int]:
        """Ids of the pending changes, oldest first, at most `limit`."""
        async with _log("read change backlog"), self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT id FROM sipdata_changes ORDER BY id LIMIT $1", limit)
        return [r["id"] for r in rows]

    async def done(self, ids: Sequence[int]) -> None:
        """Forget applied changes (after Redis holds them: a crash before re-applies)."""
        async with _log("drop applied changes"), self.pool.acquire() as conn:
            for start in range(0, len(ids), DELETE_CHUNK):
                await conn.execute(
                    "DELETE FROM sipdata_changes WHERE id = ANY($1::bigint[])",
                    ids[start : start + DELETE_CHUNK],
                )


class Wakeup:
    """A LISTEN connection that sets `event` on every notification of CHANNEL.

    Best effort by design: without it (CockroachDB, a dropped connection, a
    notification lost) the follower's poll still carries every change.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.event = asyncio.Event()
        self._conn: asyncpg.Connection | None = None

    def _notified(self, *_: object) -> None:
        self.event.set()

    async def ensure(self) -> None:
        """(Re)connect and LISTEN if not listening; failures only log."""
        if self._conn is not None and not self._conn.is_closed():
            return
        try:
            self._conn = await asyncpg.connect(self.dsn, timeout=2.0)
            await self._conn.add_listener(CHANNEL, self._notified)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            await self.close()  # a connection whose LISTEN failed is not kept open
            log.info("change_wakeup_unavailable", error=str(exc))

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
