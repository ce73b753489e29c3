"""The database connection: pool, error translation, and the transaction retry loop."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal, TypeVar

import asyncpg
import orjson

from sipdata.errors import StoreRejected, StoreUnavailable
from sipdata.settings import Settings

T = TypeVar("T")
# What `pool.acquire()` hands out; queries accept either.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Isolation = Literal["read_committed", "serializable", "repeatable_read"]

# SQLSTATE classes that mean "the database is away or overloaded", not "bug".
_UNAVAILABLE_CLASSES = ("08", "40", "53", "57", "58")
# Classes that mean "the database refuses this data": 22 data exception (a value
# out of range, a bad type), 23 integrity constraint (a foreign key names a row
# that does not exist). The same write fails the same way every time.
_REJECTED_CLASSES = ("22", "23")
MAX_TX_ATTEMPTS = 6


@asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Turn connection-level asyncpg/OS errors into StoreUnavailable."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        sqlstate = str(exc.sqlstate or "")
        if sqlstate[:2] in _UNAVAILABLE_CLASSES:
            raise StoreUnavailable(f"database: {what} failed ({sqlstate})") from exc
        if sqlstate[:2] in _REJECTED_CLASSES:
            detail = str(exc).splitlines()[0][:300] if str(exc) else exc.__class__.__name__
            raise StoreRejected(
                f"database refused {what} ({sqlstate}): {detail}", sqlstate=sqlstate
            ) from exc
        raise
    except asyncpg.exceptions._base.DataError as exc:
        # The client could not encode an argument (an InterfaceError subclass, but
        # about the data, not the connection): as final as a server-side 22xxx.
        raise StoreRejected(f"database refused {what}: {exc}", sqlstate="22000") from exc
    except (TimeoutError, OSError, asyncpg.InterfaceError) as exc:
        raise StoreUnavailable(f"database: {what} failed: {exc.__class__.__name__}") from exc


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def create_pool(settings: Settings, *, min_size: int | None = None) -> asyncpg.Pool:
    """A pool that may start while the database is away (min_size 0 connects lazily)."""
    async with translated("connect"):
        pool: asyncpg.Pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=settings.db_pool_min if min_size is None else min_size,
            max_size=settings.db_pool_max,
            command_timeout=settings.db_timeout_ms / 1000 * 20,
            timeout=settings.db_timeout_ms / 1000 * 4,
            init=_init_connection,
        )
    return pool


async def in_transaction(
    pool: asyncpg.Pool,
    work: Callable[[Conn], Awaitable[T]],
    *,
    isolation: Isolation = "serializable",
    readonly: bool = False,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run `work` in a transaction, retrying the whole of it on SQLSTATE 40001.

    CockroachDB aborts conflicting serializable transactions with 40001 and
    expects the client to retry; backoff with full jitter keeps retries from
    colliding again. `work` must be idempotent (40003 means "maybe committed").
    """
    for attempt in range(MAX_TX_ATTEMPTS):
        try:
            async with (
                translated("transaction"),
                pool.acquire() as conn,
                conn.transaction(isolation=isolation, readonly=readonly),
            ):
                return await work(conn)
        except StoreUnavailable as exc:
            cause = exc.__cause__
            retryable = isinstance(cause, asyncpg.PostgresError) and cause.sqlstate == "40001"
            if not retryable or attempt == MAX_TX_ATTEMPTS - 1:
                raise
            if on_retry is not None:
                on_retry()
            await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
    raise AssertionError("unreachable")
