"""Least-cost routing: the deck semantics, and the compiled table equals a brute-force scan."""

import datetime as dt
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sipdata.decide.lcr import (
    RateRow,
    brute_force,
    compile_deck,
    longest_entry,
    resolve,
    stored_entry,
)

D = dt.date
TODAY = D(2026, 6, 15)
DECK_START = D(2025, 1, 1)


def row(
    carrier: str,
    prefix: str,
    rate: str,
    eff: dt.date = DECK_START,
    exp: dt.date | None = None,
    priority: int = 100,
) -> RateRow:
    return RateRow(carrier, prefix, Decimal(rate), priority, eff, exp)


def lookup(rows: list[RateRow], number: str, day: dt.date, compiled_on: dt.date = TODAY):
    table = compile_deck(rows, compiled_on)
    hit = longest_entry(number, table)
    return resolve(hit[1], day) if hit else []


def carriers(offers) -> list[str]:
    return [o.carrier_id for o in offers]


def test_each_carrier_rated_by_its_own_longest_prefix() -> None:
    """B's '1' at 0.005 beats A's '1212' at 0.010; A follows as failover."""
    rows = [row("A", "1212", "0.010"), row("A", "1", "0.020"), row("B", "1", "0.005")]
    offers = lookup(rows, "12125551234", TODAY)
    assert carriers(offers) == ["B", "A"]
    assert [str(o.rate) for o in offers] == ["0.005", "0.010"]
    assert offers[1].prefix == "1212"


def test_latest_effective_row_supersedes_older() -> None:
    """Of one carrier's rows for a prefix, the latest in effect on the day wins."""
    rows = [row("A", "1", "0.006", D(2024, 1, 1)), row("A", "1", "0.005", D(2025, 6, 1))]
    assert str(lookup(rows, "1555", TODAY)[0].rate) == "0.005"
    assert str(lookup(rows, "1555", D(2025, 5, 31), compiled_on=D(2025, 5, 31))[0].rate) == "0.006"


def test_row_not_yet_in_effect_takes_over_on_its_day_without_rebuild() -> None:
    """A row effective in two days takes over on that day from the same compiled table."""
    rows = [row("A", "1", "0.010"), row("A", "1212", "0.001", eff=TODAY + dt.timedelta(days=2))]
    table_day = TODAY
    assert str(lookup(rows, "12125", TODAY, table_day)[0].rate) == "0.010"
    assert str(lookup(rows, "12125", TODAY + dt.timedelta(days=2), table_day)[0].rate) == "0.001"


def test_expired_specific_row_falls_back_to_shorter_prefix_on_expiry_day() -> None:
    """When a longer prefix's row expires, the shorter prefix's row answers from that day on."""
    rows = [row("A", "1", "0.010"), row("A", "1212", "0.002", exp=TODAY + dt.timedelta(days=1))]
    assert lookup(rows, "1212555", TODAY)[0].prefix == "1212"
    after = lookup(rows, "1212555", TODAY + dt.timedelta(days=1))
    assert after[0].prefix == "1" and str(after[0].rate) == "0.010"


def test_ties_break_on_priority_then_carrier_id() -> None:
    """Equal rates order by priority, then by carrier id, so the order is stable."""
    rows = [
        row("C", "1", "0.01", priority=5),
        row("A", "1", "0.01", priority=5),
        row("B", "1", "0.01", priority=1),
    ]
    assert carriers(lookup(rows, "15", TODAY)) == ["B", "A", "C"]


def test_no_matching_prefix_means_no_offers() -> None:
    """A number no prefix covers gets no offers."""
    assert lookup([row("A", "44", "0.01")], "12125", TODAY) == []


def test_compiled_entry_keeps_seed_fields() -> None:
    """A compiled entry keeps the seed's carrier_id, rate and priority and reads back equal."""
    doc = row("A", "1", "0.010").to_json()
    assert {"carrier_id", "rate", "priority"} <= set(doc)
    assert RateRow.from_json(doc) == row("A", "1", "0.010")


def test_compile_prunes_ancestors_behind_a_permanent_row() -> None:
    """Ancestor rows that can never win below a permanent longer row are pruned; ones that
    may win after an expiry are kept."""
    rows = [row("A", "1", "0.02"), row("A", "12", "0.01")]
    table = compile_deck(rows, TODAY)
    assert [r.prefix for r in table["12"]] == ["12"]  # '1' can never win below '12'
    expiring = [row("A", "1", "0.02"), row("A", "12", "0.01", exp=TODAY + dt.timedelta(days=9))]
    assert sorted(r.prefix for r in compile_deck(expiring, TODAY)["12"]) == ["1", "12"]


days = st.integers(-40, 40).map(lambda n: TODAY + dt.timedelta(days=n))


@st.composite
def decks(draw):
    n = draw(st.integers(0, 25))
    rows = {}
    for _ in range(n):
        carrier = draw(st.sampled_from("ABCD"))
        prefix = draw(st.from_regex(r"\A[12][0-9]{0,3}\Z"))
        eff = draw(days)
        lifetime = draw(st.one_of(st.none(), st.integers(1, 40)))
        exp = None if lifetime is None else eff + dt.timedelta(days=lifetime)
        rate = Decimal(draw(st.integers(1, 30))) / 1000
        prio = draw(st.integers(1, 3))
        rows[(carrier, prefix, eff)] = RateRow(carrier, prefix, rate, prio, eff, exp)
    return list(rows.values())


@settings(max_examples=400, deadline=None)
@given(decks(), st.from_regex(r"\A[12][0-9]{0,6}\Z"), st.integers(0, 60))
def test_compiled_answer_equals_brute_force_on_every_later_day(rows, number, later) -> None:
    """Compile once; for any day from then on, the lookup equals scanning every deck."""
    day = TODAY + dt.timedelta(days=later)
    assert lookup(rows, number, day) == brute_force(rows, number, day)


@settings(max_examples=200)
@given(
    prefix=st.text(alphabet="0123456789", min_size=1, max_size=6),
    own=st.booleans(),
    days=st.tuples(st.integers(0, 4000), st.none() | st.integers(1, 400)),
    priority=st.integers(0, 1000),
    rate=st.decimals(min_value=0, max_value=9999, places=6, allow_nan=False),
)
def test_the_compact_stored_row_reads_back_as_the_row(
    prefix: str, own: bool, days: tuple[int, int | None], priority: int, rate: Decimal
) -> None:
    """A row stored in the generation's compact form (defaults left off, the entry's own
    prefix as "") reads back as the same row; so does the format-2 dict."""
    start = dt.date(2020, 1, 1) + dt.timedelta(days=days[0])
    until = start + dt.timedelta(days=days[1]) if days[1] else None
    carrier = "abc891d8-18fa-5547-913b-94727dca0008" if own else "c-1"
    r = RateRow(carrier, prefix if own else prefix + "7", rate, priority, start, until)
    assert RateRow.from_stored(r.to_stored(prefix), prefix) == r
    assert RateRow.from_stored(r.to_json(), prefix) == r


def test_the_compact_form_leaves_defaults_off() -> None:
    """An own-prefix, open-ended row at the default priority is three values, and a
    one-row entry with a UUID carrier stays under 60 bytes (Redis's 64-byte class)."""
    assert row("A", "44", "0.0120").to_stored("44") == ["A", 0.012, 20250101]
    wide = row("abc891d8-18fa-5547-913b-94727dca0008", "44", "1234.567891")
    assert len(orjson.dumps(stored_entry("44", [wide]))) < 60
