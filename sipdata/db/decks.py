"""Rate-deck import: one carrier's deck in one transaction, streamed, with one change row."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from sipdata.db.pool import Conn, in_transaction
from sipdata.decide.changes import MAX_PATCHED_PREFIXES
from sipdata.decide.ratedeck import DeckRow
from sipdata.errors import InputError, StoreUnavailable

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


_UPSERT = """INSERT INTO lcr_rates (carrier_id, prefix, rate, effective_date, expiry_date,
                                   priority, description)
   SELECT $1::uuid, d.prefix, d.rate, d.effective_date, d.expiry_date, d.priority, d.description
   FROM unnest($2::varchar[], $3::numeric[], $4::date[], $5::date[], $6::int[], $7::varchar[])
        AS d(prefix, rate, effective_date, expiry_date, priority, description)
   ON CONFLICT (carrier_id, prefix, effective_date) DO UPDATE
   SET rate = EXCLUDED.rate, expiry_date = EXCLUDED.expiry_date,
       priority = EXCLUDED.priority, description = EXCLUDED.description"""
_COPY_COLUMNS = [
    "carrier_id",
    "prefix",
    "rate",
    "effective_date",
    "expiry_date",
    "priority",
    "description",
]


@dataclass(slots=True)
class _Tally:
    """What an import has written so far, against the rows it replaces."""

    old: set[tuple[str, dt.date]]
    rows: int = 0
    kept: int = 0  # written rows whose (prefix, effective_date) the old deck had
    prefixes: set[str] | None = None  # touched so far; None past MAX_PATCHED_PREFIXES

    def add(self, batch: Sequence[DeckRow]) -> None:
        self.rows += len(batch)
        self.kept += sum(1 for r in batch if (r.prefix, r.effective_date) in self.old)
        if self.prefixes is not None:
            self.prefixes.update(r.prefix for r in batch)
            if len(self.prefixes) > MAX_PATCHED_PREFIXES:
                self.prefixes = None


async def _write(conn: Conn, carrier_id: str, batch: Sequence[DeckRow], *, copy: bool) -> None:
    """COPY a batch (the carrier's old rows are gone: no conflict is possible), or
    upsert it."""
    if copy:
        await conn.copy_records_to_table(
            "lcr_rates",
            records=[
                (
                    carrier_id,
                    r.prefix,
                    r.rate,
                    r.effective_date,
                    r.expiry_date,
                    r.priority,
                    r.description,
                )
                for r in batch
            ],
            columns=_COPY_COLUMNS,
        )
        return
    await conn.execute(
        _UPSERT,
        carrier_id,
        [r.prefix for r in batch],
        [r.rate for r in batch],
        [r.effective_date for r in batch],
        [r.expiry_date for r in batch],
        [r.priority for r in batch],
        [r.description for r in batch],
    )


async def import_rates(
    pool: asyncpg.Pool,
    carrier: str,
    rows: Iterable[DeckRow],
    *,
    replace: bool,
    then: Callable[[Conn, ImportResult], Awaitable[None]] | None = None,
) -> ImportResult:
    """Write a deck in one transaction as it is read (`rows` may be a generator over a
    file being parsed: the next batch is parsed in a thread while the database writes
    this one). `replace` drops the carrier's old rows first and COPYs the new ones
    (their ids the database's default);
    otherwise rows are upserted. A bad row met half-way rolls everything back. `then`
    runs in the same transaction once the deck is written (the admin API's audit row)."""
    source = iter(rows)
    attempts = 0

    def take() -> list[DeckRow]:
        return list(itertools.islice(source, IMPORT_BATCH))

    async def work(conn: Conn) -> ImportResult:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            # A streamed deck cannot be read twice; the transaction left nothing behind.
            raise StoreUnavailable("the import met a serialization conflict; run it again")
        carrier_id = await resolve_carrier(conn, carrier)
        # One import of a carrier at a time (a row lock is portable; advisory locks are not).
        await conn.execute("SELECT 1 FROM organizations WHERE id = $1::uuid FOR UPDATE", carrier_id)
        tally = _Tally(old=set())
        if replace:
            query = "SELECT prefix, effective_date FROM lcr_rates WHERE carrier_id = $1::uuid"
            async for r in conn.cursor(query, carrier_id, prefetch=50_000):
                tally.old.add((r["prefix"], r["effective_date"]))
        if len(tally.old) <= MAX_PATCHED_PREFIXES:
            tally.prefixes = {p for p, _ in tally.old}
        # One change row for the deck instead of one per rate row (changes.sql).
        await conn.execute("SET LOCAL sipdata.capture = 'off'")
        if replace:
            await conn.execute("DELETE FROM lcr_rates WHERE carrier_id = $1::uuid", carrier_id)
        pending = asyncio.ensure_future(asyncio.to_thread(take))
        try:
            while batch := await pending:
                pending = asyncio.ensure_future(asyncio.to_thread(take))
                tally.add(batch)
                await _write(conn, carrier_id, batch, copy=replace)
        finally:
            pending.cancel()  # a failed write leaves no parse of the next batch behind
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await pending
        # The change names the prefixes the import touched when there are few enough
        # for the follower to recompile just those in one MULTI; else none, and the
        # follower builds a new generation. Either way no decision sees half a deck.
        await conn.execute(
            "INSERT INTO sipdata_changes (table_name, op, new_keys) VALUES ('lcr_rates', 'B', "
            "jsonb_build_object('carrier_id', $1::text, 'prefixes', $2::text[]))",
            carrier_id,
            sorted(tally.prefixes) if tally.prefixes is not None else None,
        )
        result = ImportResult(carrier_id, tally.rows, len(tally.old) - tally.kept)
        if then is not None:
            await then(conn, result)
        return result

    # READ COMMITTED: a million-row write needs no serializable bookkeeping; the
    # carrier's row lock above orders concurrent imports of one carrier.
    return await in_transaction(pool, work, isolation="read_committed")
