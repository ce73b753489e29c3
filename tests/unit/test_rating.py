"""CDR rating: durations, billing increments, the answering leg's rate, the cost."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdata.decide import rating

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
LEASE = {
    "org_id": "o",
    "trunk_id": "t",
    "inbound": False,
    "legs": [
        {"uri": "sip:1@192.0.2.1", "rate": "0.0050", "carrier_id": "bravo", "prefix": "1"},
        {"uri": "sip:1@gw.example:5070", "dst_uri": "sip:192.0.2.2:5070", "rate": "0.009"},
        {"uri": "sip:1@[2001:db8::7]:5060", "rate": "0.02"},
    ],
}


def event(kind: str = "end", talk_s: float | None = 61.5, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event": kind,
        "call_id": "c",
        "org_id": "o",
        "invite_ts": T0.isoformat(),
        "ts": (T0 + dt.timedelta(seconds=2 + (talk_s or 0))).isoformat(),
        "destination_ip": "192.0.2.1",
    }
    if talk_s is not None:
        doc["answer_ts"] = (T0 + dt.timedelta(seconds=2)).isoformat()
    doc.update(over)
    return doc


@pytest.mark.parametrize(
    ("seconds", "minimum", "increment", "billed"),
    [
        (0, 6, 6, 0),
        (1, 6, 6, 6),
        (6, 6, 6, 6),
        (7, 6, 6, 12),
        (61, 60, 6, 66),
        (30, 60, 6, 60),
        (59, 1, 1, 59),
        (61, 60, 60, 120),
    ],
)
def test_billable_seconds(seconds: int, minimum: int, increment: int, billed: int) -> None:
    """Billable seconds: 0 unanswered, else rounded up to the increment and at least the minimum."""
    assert rating.billable(seconds, minimum, increment) == billed


@pytest.mark.parametrize(
    ("talk", "seconds"),
    [(None, 0), (-1.0, 0), (0.0, 0), (0.2, 1), (2.004, 2), (2.5, 3), (61.49, 61), (61.5, 62)],
)
def test_talk_time_rounds_half_up_and_an_answered_call_has_a_second(
    talk: float | None, seconds: int
) -> None:
    """Talk time rounds half up, and an answered call lasts at least one second."""
    answered = None if talk is None else T0
    ended = T0 + dt.timedelta(seconds=talk or 0)
    assert rating.talk_seconds(answered, ended) == seconds


@pytest.mark.parametrize(
    ("rate", "seconds", "cost"),
    [("0.005", 66, "0.0055"), ("0.01", 6, "0.0010"), ("0.0123", 7, "0.0014"), ("0", 60, "0")],
)
def test_cost_rounds_half_up_to_four_places(rate: str, seconds: int, cost: str) -> None:
    """Cost is rate per minute times billed seconds, rounded half up to four decimals."""
    assert rating.cost(Decimal(rate), seconds) == Decimal(cost)


@pytest.mark.parametrize(
    ("destination", "rate"),
    [
        ("192.0.2.1", "0.0050"),
        ("192.0.2.2", "0.009"),
        ("2001:db8::7", "0.02"),
        ("198.51.100.1", None),
    ],
)
def test_rate_is_the_leg_whose_address_answered(destination: str, rate: str | None) -> None:
    """The rate is that of the destination whose address sent the 200 OK; an unknown
    answerer has no rate and no cost."""
    cdr = rating.cdr_of(event(destination_ip=destination), LEASE, 6, 6)
    assert cdr is not None
    assert cdr.rate == (Decimal(rate) if rate else None)
    assert (cdr.cost is None) == (rate is None)


def test_answered_call() -> None:
    """An answered call's CDR carries its times, durations, cost, cause, codecs and carrier."""
    cdr = rating.cdr_of(event(cause="callee_bye", codecs=["PCMA"]), LEASE, 6, 6)
    assert cdr is not None
    assert (cdr.duration, cdr.billable_duration, cdr.cost) == (62, 66, Decimal("0.0055"))
    assert (cdr.sip_response_code, cdr.termination_cause) == (200, "callee_bye")
    assert cdr.start_time == T0 and cdr.answer_time == T0 + dt.timedelta(seconds=2)
    assert cdr.metadata == {"carrier_id": "bravo", "prefix": "1"} and cdr.codecs == ("PCMA",)


def test_failed_call_costs_nothing_and_keeps_its_code() -> None:
    """A failed call's CDR costs nothing and keeps the final SIP code and reason."""
    cdr = rating.cdr_of(event("fail", None, sip_code=486, sip_reason="Busy Here"), LEASE, 6, 6)
    assert cdr is not None
    assert (cdr.duration, cdr.billable_duration, cdr.rate, cdr.cost) == (0, 0, None, None)
    assert (cdr.sip_response_code, cdr.termination_cause) == (486, "failed")
    assert cdr.metadata == {"sip_reason": "Busy Here"}


@pytest.mark.parametrize("kind", ["start", "answer"])
def test_only_end_and_fail_close_a_cdr(kind: str) -> None:
    """Start and answer reports close no CDR."""
    assert rating.cdr_of(event(kind), LEASE, 6, 6) is None


def test_org_comes_from_the_lease_when_the_report_lacks_it() -> None:
    """The billed org comes from the lease when the report lacks it; with neither there is
    no CDR."""
    cdr = rating.cdr_of(event(org_id=None), LEASE, 6, 6)
    assert cdr is not None and cdr.org_id == "o"
    assert rating.cdr_of(event(org_id=None), None, 6, 6) is None


@given(
    st.integers(0, 10**6),
    st.integers(0, 600),
    st.integers(1, 600),
    st.decimals("0", "10", places=6),
)
def test_billing_never_undercharges(
    seconds: int, minimum: int, increment: int, rate: Decimal
) -> None:
    """Billed time covers the talk time, is a whole number of increments (or the minimum),
    and the cost is never negative."""
    billed = rating.billable(seconds, minimum, increment)
    assert billed >= seconds
    if seconds:
        assert billed == minimum or billed % increment == 0
        assert billed - seconds < max(increment, minimum)
    assert rating.cost(rate, billed) >= 0
