"""Write-back SQL: registrations, CDRs, channel counts, lapsed registrations.

Every write is idempotent, because `in_transaction` retries a whole transaction
on 40001 and a 40003 (commit outcome unknown) may be retried by the drainer:
a repeated write must find its own earlier effect and change nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg

from sipdata.db import billing
from sipdata.db.pool import Conn, in_transaction
from sipdata.decide.rating import Cdr
from sipdata.decide.reports import RegistrationReport

# A report is stale, and changes nothing, when the stored one is newer by
# Kamailio's clock or is the same registration (Call-ID) at a higher CSeq; a
# repeated report rewrites the same values.
_SAVE_REG_SQL = """
INSERT INTO trunk_registrations AS r
       (trunk_id, contact, received, user_agent, expires_at, last_seen, status, call_id, cseq)
VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (trunk_id) DO UPDATE
   SET contact = EXCLUDED.contact, received = EXCLUDED.received,
       user_agent = EXCLUDED.user_agent, expires_at = EXCLUDED.expires_at,
       last_seen = EXCLUDED.last_seen, status = EXCLUDED.status,
       call_id = EXCLUDED.call_id, cseq = EXCLUDED.cseq
 WHERE (r.last_seen IS NULL OR r.last_seen <= EXCLUDED.last_seen)
   AND NOT (r.call_id IS NOT DISTINCT FROM EXCLUDED.call_id AND r.cseq > EXCLUDED.cseq)
RETURNING trunk_id"""

# One CDR per call: the unique key is (call_id, start_time) (partitioned
# table), and NOT EXISTS also covers a repeat whose start_time differs.
_CDR_SQL = """
INSERT INTO cdrs (call_id, org_id, trunk_id, from_number, to_number, start_time, answer_time,
                  end_time, duration, billable_duration, inbound, source_ip, destination_ip,
                  sip_response_code, termination_cause, rate, cost, codecs_used, metadata)
SELECT $1::varchar, $2::uuid, $3::uuid, $4::varchar, $5::varchar, $6::timestamp,
       $7::timestamp, $8::timestamp, $9::int, $10::int, $11::bool, $12::inet, $13::inet,
       $14::int, $15::varchar, $16::numeric, $17::numeric, $18::jsonb, $19::jsonb
WHERE NOT EXISTS (SELECT 1 FROM cdrs WHERE call_id = $1::varchar)
ON CONFLICT (call_id, start_time) DO NOTHING
RETURNING call_id"""

# Counts are absolute, so a repeated sync changes nothing; trunks with no
# lease left go back to 0.
_SET_CHANNELS_SQL = """
UPDATE sip_trunks t SET channels_in_use = v.n
  FROM unnest($1::uuid[], $2::int[]) AS v(id, n)
 WHERE t.id = v.id AND t.channels_in_use IS DISTINCT FROM v.n"""
_CLEAR_CHANNELS_SQL = """
UPDATE sip_trunks SET channels_in_use = 0
 WHERE channels_in_use <> 0 AND NOT (id = ANY($1::uuid[]))"""

_SWEEP_SQL = """
UPDATE trunk_registrations SET status = 'offline'
 WHERE status = 'online' AND expires_at <= $1
RETURNING trunk_id::text"""


def _naive(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)


class Records:
    def __init__(self, pool: asyncpg.Pool, on_retry: Callable[[], None] | None = None) -> None:
        self.pool = pool
        self.on_retry = on_retry

    async def save_registration(self, trunk_id: str, report: RegistrationReport) -> bool:
        """Upsert the trunk's registration; False when a newer report is already stored."""

        async def write(conn: Conn) -> bool:
            row = await conn.fetchrow(
                _SAVE_REG_SQL,
                trunk_id,
                report.contact,
                report.received,
                report.user_agent,
                _naive(report.expires_at),
                _naive(report.ts),
                "online" if report.online else "offline",
                report.call_id,
                report.cseq,
            )
            return row is not None

        return await in_transaction(self.pool, write, on_retry=self.on_retry)

    async def write_cdr(self, cdr: Cdr) -> bool:
        """Insert the call's CDR unless it has one; True when this call wrote it. A
        credit-controlled call's cost leaves the balance with it (db/billing.py)."""

        async def write(conn: Conn) -> bool:
            return await _insert_charged(conn, cdr)

        return await in_transaction(
            self.pool, write, isolation="read_committed", on_retry=self.on_retry
        )

    async def write_cdrs(self, cdrs: Sequence[Cdr]) -> None:
        """write_cdr for a batch, in one transaction (a call's repeated report is written once)."""

        # In stream order either way: a call's first report (with its lease, so its
        # rate and its hold) is the one that writes its CDR.
        charged = any(c.credit for c in cdrs)

        async def write(conn: Conn) -> None:
            if not charged:
                await conn.executemany(_CDR_SQL, [_cdr_args(c) for c in cdrs])
                return
            for cdr in cdrs:
                await _insert_charged(conn, cdr)

        await in_transaction(self.pool, write, isolation="read_committed", on_retry=self.on_retry)

    async def sync_channels(self, counts: Mapping[str, int]) -> None:
        """sip_trunks.channels_in_use := the live lease counts (0 for trunks without any)."""
        ids = list(counts)

        async def write(conn: Conn) -> None:
            await conn.execute(_SET_CHANNELS_SQL, ids, [counts[i] for i in ids])
            await conn.execute(_CLEAR_CHANNELS_SQL, ids)

        await in_transaction(self.pool, write, isolation="read_committed", on_retry=self.on_retry)

    async def sweep_registrations(self, now: dt.datetime) -> list[str]:
        """Mark lapsed registrations offline; the trunks that went offline."""

        async def write(conn: Conn) -> list[str]:
            return [r["trunk_id"] for r in await conn.fetch(_SWEEP_SQL, _naive(now))]

        return await in_transaction(
            self.pool, write, isolation="read_committed", on_retry=self.on_retry
        )


async def _insert_charged(conn: Conn, cdr: Cdr) -> bool:
    inserted = await conn.fetchrow(_CDR_SQL, *_cdr_args(cdr)) is not None
    if inserted and cdr.credit:
        await billing.debit(conn, cdr, _naive(cdr.start_time), _naive(cdr.end_time))
    return inserted


def _cdr_args(cdr: Cdr) -> tuple[Any, ...]:
    return (
        cdr.call_id,
        cdr.org_id,
        cdr.trunk_id,
        cdr.from_number,
        cdr.to_number,
        _naive(cdr.start_time),
        _naive(cdr.answer_time) if cdr.answer_time else None,
        _naive(cdr.end_time),
        cdr.duration,
        cdr.billable_duration,
        cdr.inbound,
        cdr.source_ip,
        cdr.destination_ip,
        cdr.sip_response_code,
        cdr.termination_cause,
        cdr.rate,
        cdr.cost,
        list(cdr.codecs),
        cdr.metadata,
    )
