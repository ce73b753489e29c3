"""Credit control: whether an org can afford a call, how long it may last, what it holds.

Money is counted in micro-units (1e-6 of the account's currency) as integers,
here and in `cache/scripts/credit.lua`, which repeats `reserve` inside Redis so
that concurrent calls of one org take from one balance atomically.

An org is credit-controlled when its billing account is prepaid
(`billing_accounts.payment_method = 'prepaid'`) or its settings ask for it
(`organization_settings.features.credit_control = true`). Its available
credit is `current_balance + credit_limit`, less what its calls in flight hold.

A call may start only if that covers its first billing block (`billable(1)`:
the minimum, or one increment) at its rate. It then gets a maximum duration:
the whole increments the free credit pays for, at most `cap_s`, and holds the
cost of that duration until its CDR settles it. Kamailio ends the call at the
maximum (a dialog timeout), so a call can cost more than it held only by the
increment a late BYE starts: the org never overdraws by more than one increment
per call in flight (tests/unit/test_credit.py, a property over interleavings).

The rate is the dearest of the call's destinations: a failover may answer at
any of them, and the duration must be affordable at whichever does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

MICRO = 1_000_000
PAYMENT_REQUIRED = (402, "Insufficient Funds")


def to_micro(amount: Decimal, *, up: bool = False) -> int:
    """Currency to micro-units (rounded down, or up for what must be covered)."""
    scaled = amount * MICRO
    return int(scaled.to_integral_value(rounding=ROUND_CEILING)) if up else int(scaled)


def from_micro(micro: int) -> Decimal:
    return (Decimal(micro) / MICRO).quantize(Decimal("0.000001"))


def billable(seconds: int, minimum_s: int, increment_s: int) -> int:
    """As rating.billable: what `seconds` of talk is billed as."""
    if seconds <= 0:
        return 0
    return max(minimum_s, -(-seconds // increment_s) * increment_s)


def cost_micro(rate_micro_per_min: int, seconds: int) -> int:
    """The cost of billed `seconds`, rounded up to a micro-unit."""
    return -(-(rate_micro_per_min * seconds) // 60)


@dataclass(frozen=True, slots=True)
class Ask:
    rate_micro: int  # per minute
    minimum_s: int
    increment_s: int
    cap_s: int  # the longest a call may be given (max_call_s)


@dataclass(frozen=True, slots=True)
class Grant:
    max_s: int
    hold_micro: int


def reserve(free_micro: int, ask: Ask) -> Grant | None:
    """What a call may take from `free_micro`, or None when its first block is not
    covered. credit.lua computes exactly this."""
    cap = max(ask.cap_s // ask.increment_s * ask.increment_s, ask.increment_s)
    if ask.rate_micro <= 0:
        return Grant(cap, 0)
    first = billable(1, ask.minimum_s, ask.increment_s)
    if free_micro < cost_micro(ask.rate_micro, first):
        return None
    affordable = free_micro * 60 // ask.rate_micro  # whole seconds
    max_s = min(cap, affordable // ask.increment_s * ask.increment_s)
    max_s = max(max_s, ask.increment_s)
    hold = cost_micro(ask.rate_micro, billable(max_s, ask.minimum_s, ask.increment_s))
    return Grant(max_s, hold)
