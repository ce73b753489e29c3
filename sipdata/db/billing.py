"""Credit control in the database: the available credit of controlled orgs, and the
settlement of a rated call (its balance debit and usage row, with its CDR)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg

from sipdata.db.pool import Conn, translated
from sipdata.decide.rating import Cdr

# Credit-controlled orgs (decide/credit.py) and what they may spend: balance plus
# credit limit. An org controlled by its settings alone, with no billing
# account, has nothing to spend.
_CREDIT_SQL = """
SELECT o.id::text AS org_id,
       COALESCE(b.current_balance, 0) + COALESCE(b.credit_limit, 0) AS available
  FROM organizations o
  LEFT JOIN billing_accounts b ON b.org_id = o.id
  LEFT JOIN organization_settings s ON s.org_id = o.id
 WHERE (b.payment_method = 'prepaid' OR s.features->>'credit_control' = 'true')"""

# Run only when the CDR insert wrote a row, in its transaction: the CDR's
# uniqueness by Call-ID makes the debit once per call, whatever retries.
_DEBIT_SQL = """
UPDATE billing_accounts SET current_balance = COALESCE(current_balance, 0) - $2::numeric
 WHERE org_id = $1::uuid"""
_USAGE_SQL = """
INSERT INTO usage_records (org_id, usage_type, quantity, unit, rate, amount,
                           period_start, period_end, metadata)
VALUES ($1::uuid, 'voice', $2::numeric, 'second', $3::numeric, $4::numeric,
        $5::timestamp, $6::timestamp, $7::jsonb)"""


class Billing:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def available(self, org_ids: Sequence[str] | None = None) -> dict[str, Decimal]:
        """Balance + credit limit of the credit-controlled orgs (all, or these)."""
        sql, args = _CREDIT_SQL, []
        if org_ids is not None:
            sql += " AND o.id = ANY($1::uuid[])"
            args = [list(org_ids)]
        async with translated("read credit"), self.pool.acquire() as conn:
            rows = await conn.fetch(sql, *args)
        return {r["org_id"]: Decimal(r["available"]) for r in rows}


async def debit(conn: Conn, cdr: Cdr, naive_start: object, naive_end: object) -> None:
    """The org's balance less the call's cost, and its usage row."""
    if not cdr.cost:
        return
    await conn.execute(_DEBIT_SQL, cdr.org_id, cdr.cost)
    await conn.execute(
        _USAGE_SQL,
        cdr.org_id,
        cdr.billable_duration,
        cdr.rate,
        cdr.cost,
        naive_start,
        naive_end,
        {"call_id": cdr.call_id, "cdr": "cdrs", "to": cdr.to_number},
    )
