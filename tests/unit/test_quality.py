"""Carrier quality (decide/quality.py): what each report adds, the window's summary, and
the order each strategy gives."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdata.decide import quality
from sipdata.decide.quality import QualityConfig, Summary, Tally

CFG = QualityConfig(window_s=900, min_calls=10, asr_floor=0.3, failure_ceiling=0.5)
LEGS = [
    {"uri": "sip:1@10.0.0.1", "carrier_id": "A", "prefix": "1"},
    {"uri": "sip:1@10.0.0.2:5080", "carrier_id": "B", "prefix": "12"},
    {"uri": "sip:ivr@10.0.0.9", "kind": "forward"},
]
TS = "2026-12-04T12:00:30+00:00"
BUCKET = quality.bucket_of(1796385630.0)


def test_a_failed_branch_is_an_attempt_and_a_5xx_a_failure() -> None:
    got = quality.tallies_of(
        {"event": "attempt", "ts": TS, "gateway": "sip:1@10.0.0.2:5080", "sip_code": 503},
        {"legs": LEGS},
        0,
    )
    assert got == [
        ("B", "*", BUCKET, Tally(attempts=1, failed=1)),
        ("B", "12", BUCKET, Tally(attempts=1, failed=1)),
    ]


def test_a_busy_callee_is_an_attempt_but_not_a_failure() -> None:
    ((_, _, _, tally), _) = quality.tallies_of(
        {"event": "attempt", "ts": TS, "gateway": "sip:10.0.0.1", "sip_code": 486},
        {"legs": LEGS},
        0,
    )
    assert tally == Tally(attempts=1)


def test_an_answered_call_brings_its_talk_time_and_post_dial_delay() -> None:
    event = {
        "event": "end",
        "ts": TS,
        "answer_ts": "2026-12-04T12:00:10+00:00",
        "invite_ts": "2026-12-04T12:00:00+00:00",
        "branch_ts": "2026-12-04T12:00:01+00:00",
        "ring_ts": "2026-12-04T12:00:03.500000+00:00",
        "destination_ip": "10.0.0.1",
    }
    ((carrier, _, _, tally), _) = quality.tallies_of(event, {"legs": LEGS}, 20)
    assert carrier == "A"
    assert tally == Tally(attempts=1, answered=1, talk_s=20, pdd_ms=2500, pdd_n=1)


@pytest.mark.parametrize(
    "event",
    [
        {"event": "fail", "ts": TS, "sip_code": 503},  # its branch came as an attempt
        {"event": "start", "ts": TS},
        {"event": "attempt", "ts": TS, "gateway": "sip:ivr@10.0.0.9", "sip_code": 500},
        {"event": "attempt", "ts": TS, "gateway": "sip:1@10.9.9.9", "sip_code": 500},
        {"event": "end", "ts": TS},  # never answered
    ],
)
def test_reports_that_name_no_carrier_add_nothing(event: dict[str, object]) -> None:
    assert quality.tallies_of(event, {"legs": LEGS}, 0) == []


def test_the_summary_of_a_window() -> None:
    s = quality.summarise(
        [
            Tally(attempts=4, answered=1, failed=2, talk_s=90, pdd_ms=3000, pdd_n=1),
            Tally(attempts=6, answered=3, failed=1, talk_s=30, pdd_ms=1000, pdd_n=3),
        ]
    )
    assert s == Summary(10, 4, 0.4, 30.0, 1000.0, 0.3)
    assert quality.summarise([]) == Summary(0, 0, None, None, None, None)
    assert Summary.from_json(s.to_json()) == s


def test_the_window_is_the_last_fifteen_minutes() -> None:
    w = quality.window(1796385630.0, CFG)
    assert len(w) == 15 and w[-1] == BUCKET


def test_tally_from_is_lenient() -> None:
    assert quality.tally_from({b"attempts": b"3", b"bogus": b"1", "failed": b"x"}) == Tally(3)


OFFERS = [("A", Decimal("0.010"), 100), ("B", Decimal("0.005"), 100), ("C", Decimal("0.009"), 1)]


def summary(attempts: int, answered: int, failed: int = 0) -> Summary:
    return quality.summarise([Tally(attempts=attempts, answered=answered, failed=failed)])


def ids(ranked: list[quality.Ranked]) -> list[str]:
    return [r.carrier_id for r in ranked]


counts = st.integers(min_value=0, max_value=10_000)
tallies = st.builds(Tally, counts, counts, counts, counts, counts, counts)
items = st.lists(
    st.tuples(
        st.sampled_from("ab"), st.sampled_from(["*", "44", "4420"]), st.integers(0, 2), tallies
    )
)


@given(items)
def test_combined_tallies_add_up_to_the_same_increments(
    got: list[tuple[str, str, int, Tally]],
) -> None:
    """Combining a batch's tallies (one increment set per bucket) leaves every bucket
    with what adding them one by one would: no outcome lost or counted twice."""

    def totals(xs: list[tuple[str, str, int, Tally]]) -> dict[tuple[str, str, int], Tally]:
        out: dict[tuple[str, str, int], Tally] = {}
        for carrier, prefix, bucket, tally in xs:
            out[(carrier, prefix, bucket)] = out.get((carrier, prefix, bucket), Tally()) + tally
        return out

    combined = quality.combine(got)
    assert len({x[:3] for x in combined}) == len(combined)
    assert totals(combined) == totals(got)


def test_cost_ignores_quality() -> None:
    bad = {"B": summary(100, 0)}
    assert ids(quality.order(OFFERS, bad, "cost", CFG)) == ["B", "C", "A"]


def test_the_floor_demotes_judged_carriers_below_it_and_spares_unjudged_ones() -> None:
    sums = {"B": summary(100, 10), "C": summary(5, 0)}  # C: too few calls to judge
    ranked = quality.order(OFFERS, sums, "quality_floor", CFG)
    assert ids(ranked) == ["C", "A", "B"]
    assert ranked[-1].why == "under the quality floor: demoted"
    failing = {"B": summary(100, 60, failed=55)}  # answers enough, fails too often
    assert ids(quality.order(OFFERS, failing, "quality_floor", CFG))[-1] == "B"


def test_weighted_pays_more_for_a_carrier_that_connects() -> None:
    sums = {"B": summary(1000, 100), "A": summary(1000, 900)}  # B: 10 %, A: 90 %
    assert ids(quality.order(OFFERS, sums, "quality_weighted", CFG))[0] == "A"


strategies = st.sampled_from(quality.STRATEGIES)
summaries = st.dictionaries(
    st.sampled_from(["A", "B", "C"]),
    st.integers(0, 200).flatmap(lambda n: st.builds(summary, st.just(n), st.integers(0, n))),
)


@given(strategies, summaries)
def test_every_strategy_keeps_every_carrier_once(strategy: str, sums: dict[str, Summary]) -> None:
    ranked = quality.order(OFFERS, sums, strategy, CFG)
    assert sorted(ids(ranked)) == ["A", "B", "C"]
    assert all(r.why for r in ranked)


@given(strategies)
def test_with_nothing_known_every_strategy_is_the_cost_order(strategy: str) -> None:
    assert ids(quality.order(OFFERS, {}, strategy, CFG)) == ids(
        quality.order(OFFERS, {}, "cost", CFG)
    )
