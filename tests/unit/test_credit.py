"""Credit arithmetic (decide/credit.py): what a call may hold, and that no interleaving of
concurrent calls overdraws an org by more than one billing increment per call in flight."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdata.decide import credit, rating
from sipdata.decide.credit import Ask, Grant, reserve

SIX_SIX = dict(minimum_s=6, increment_s=6, cap_s=14400)


@pytest.mark.parametrize(
    ("free", "rate", "grant"),
    [
        (500_000, 10_000, Grant(3000, 500_000)),  # 0.50 at 0.0100/min: 50 min
        (1_000, 10_000, Grant(6, 1_000)),  # exactly the first block
        (999, 10_000, None),  # a micro-unit short of it
        (0, 0, Grant(14400, 0)),  # a free destination: the cap, nothing held
        (10**12, 10_000, Grant(14400, 2_400_000)),  # rich: the cap
        (1_500, 10_000, Grant(6, 1_000)),  # whole increments only
    ],
)
def test_reserve(free: int, rate: int, grant: Grant | None) -> None:
    assert reserve(free, Ask(rate, **SIX_SIX)) == grant


def test_money_converts_exactly_and_rounds_the_right_way() -> None:
    assert credit.to_micro(Decimal("0.0100")) == 10_000
    assert credit.to_micro(Decimal("0.0000001"), up=True) == 1
    assert credit.to_micro(Decimal("0.0000001")) == 0
    assert credit.from_micro(495_000) == Decimal("0.495000")


asks = st.builds(
    Ask,
    rate_micro=st.integers(1, 2 * 10**6),
    minimum_s=st.integers(0, 60),
    increment_s=st.integers(1, 60),
    cap_s=st.integers(1, 20_000),
)


@given(st.integers(0, 10**10), asks)
def test_a_grant_is_always_affordable_and_covers_its_duration(free: int, ask: Ask) -> None:
    grant = reserve(free, ask)
    first = credit.cost_micro(ask.rate_micro, credit.billable(1, ask.minimum_s, ask.increment_s))
    if grant is None:
        assert free < first
        return
    assert first <= grant.hold_micro <= free
    assert grant.max_s % ask.increment_s == 0 and grant.max_s >= 1
    billed = credit.billable(grant.max_s, ask.minimum_s, ask.increment_s)
    assert credit.cost_micro(ask.rate_micro, billed) == grant.hold_micro


@given(
    balance=st.integers(0, 5 * 10**6),
    rate=st.integers(1, 10**6),
    ops=st.lists(
        st.tuples(st.sampled_from(["start", "end"]), st.integers(0, 30), st.integers(0, 10**5)),
        max_size=60,
    ),
)
def test_no_interleaving_overdraws_more_than_an_increment_per_call(
    balance: int, rate: int, ops: list[tuple[str, int, int]]
) -> None:
    """Calls start (reserve from what is free) and end (talk up to their max_s plus a
    late BYE's second, billed, settled) in any order. What the org has spent never
    passes its balance by more than one increment's cost per call that ended."""
    ask = Ask(rate, minimum_s=6, increment_s=6, cap_s=3600)
    held: dict[int, Grant] = {}
    spent = 0
    reserved = 0
    started = 0
    increment_cost = credit.cost_micro(rate, 6)
    ended = 0
    for op, which, talk in ops:
        if op == "start":
            grant = reserve(balance - spent - reserved, ask)
            if grant is not None:
                held[started] = grant
                reserved += grant.hold_micro
            started += 1
        elif held:
            call = sorted(held)[which % len(held)]
            grant = held.pop(call)
            reserved -= grant.hold_micro
            seconds = min(talk, grant.max_s + 1)  # Kamailio ends it at max_s (+ its timer)
            billed = rating.billable(seconds, 6, 6)
            spent += credit.cost_micro(rate, billed)
            ended += 1
        assert reserved + spent <= balance + ended * increment_cost
        assert reserved >= 0
