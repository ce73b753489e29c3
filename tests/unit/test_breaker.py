"""The gateway breaker's state machine (decide/breaker.py): a table of transitions, and
properties over any sequence of events."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdata.decide import breaker
from sipdata.decide.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerConfig, step

CFG = BreakerConfig(fail_threshold=3, open_ms=1000)


@pytest.mark.parametrize(
    ("before", "event", "now", "after"),
    [
        (Breaker(), "fail", 5, Breaker(CLOSED, 1, 0)),
        (Breaker(CLOSED, 2, 0), "fail", 5, Breaker(OPEN, 0, 5)),  # the third in a row
        (Breaker(CLOSED, 2, 0), "ok", 5, Breaker()),  # an answer resets the count
        (Breaker(), "probe_down", 7, Breaker(OPEN, 0, 7)),
        (Breaker(), "probe_up", 7, Breaker()),
        (Breaker(OPEN, 0, 100), "fail", 500, Breaker(OPEN, 0, 100)),  # no extension while open
        (Breaker(OPEN, 0, 100), "probe_up", 500, Breaker(HALF_OPEN, 0, 100)),
        (Breaker(OPEN, 0, 100), "ok", 500, Breaker()),  # it answered a call after all
        (Breaker(OPEN, 0, 100), "fail", 1100, Breaker(OPEN, 0, 1100)),  # the trial failed
        (Breaker(HALF_OPEN, 0, 100), "fail", 200, Breaker(OPEN, 0, 200)),
        (Breaker(HALF_OPEN, 0, 100), "ok", 200, Breaker()),
        (Breaker(HALF_OPEN, 0, 100), "probe_down", 200, Breaker(OPEN, 0, 200)),
        (Breaker(HALF_OPEN, 0, 100), "probe_up", 200, Breaker(HALF_OPEN, 0, 100)),
    ],
)
def test_transitions(before: Breaker, event: str, now: int, after: Breaker) -> None:
    assert step(before, event, now, CFG) == after


def test_an_open_breaker_turns_half_open_by_itself_after_open_ms() -> None:
    b = Breaker(OPEN, 0, 100)
    assert b.effective(1099, CFG) == OPEN
    assert b.effective(1100, CFG) == HALF_OPEN


def test_an_unknown_event_is_a_bug_not_a_silent_no_op() -> None:
    with pytest.raises(ValueError, match="unknown breaker event"):
        step(Breaker(), "sideways", 0, CFG)


events = st.lists(st.tuples(st.sampled_from(breaker.EVENTS), st.integers(0, 2000)), max_size=40)


@given(events)
def test_the_stored_form_round_trips_and_plain_closed_is_not_stored(
    seq: list[tuple[str, int]],
) -> None:
    b, now = Breaker(), 0
    for event, gap in seq:
        now += gap
        b = step(b, event, now, CFG)
        packed = breaker.pack(b)
        assert (packed is None) == (b == Breaker())
        assert breaker.unpack(packed) == b


@given(events)
def test_only_failures_open_and_an_answer_always_closes(seq: list[tuple[str, int]]) -> None:
    b, now = Breaker(), 0
    for event, gap in seq:
        now += gap
        was = b.effective(now, CFG)
        b = step(b, event, now, CFG)
        is_ = b.effective(now, CFG)
        if event == "ok":
            assert is_ == CLOSED
        if is_ == OPEN and was != OPEN:
            assert event in ("fail", "probe_down")
        assert b.failures < CFG.fail_threshold


@given(st.integers(1, 6), st.lists(st.sampled_from(["ok", "fail"]), max_size=30))
def test_threshold_failures_in_a_row_and_no_fewer_open_it(
    threshold: int, outcomes: list[str]
) -> None:
    cfg = BreakerConfig(threshold, 10**9)
    b, run = Breaker(), 0
    for i, outcome in enumerate(outcomes):
        b = step(b, outcome, i, cfg)
        run = run + 1 if outcome == "fail" else 0
        if b.state == OPEN:
            assert run >= threshold
            return
    assert run < threshold


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("sip:12125551234@127.0.0.102", "127.0.0.102:5060"),
        ("sip:127.0.0.102:5060", "127.0.0.102:5060"),
        ("127.0.0.102", "127.0.0.102:5060"),
        ("sip:+1212@GW.Example.COM:5080;transport=tcp", "gw.example.com:5080"),
        ("sips:gw.example.com", "gw.example.com:5061"),
        ("sip:1@gw.example.com;transport=TLS", "gw.example.com:5061"),
        ("[2001:db8::1]:5070", "[2001:db8::1]:5070"),
        ("sip:1@[2001:DB8::1]", "[2001:db8::1]:5060"),
        ("sip:gw:²", "gw:5060"),  # not a port: the default one
        ("sip:", ":5060"),
    ],
)
def test_one_name_per_gateway_whichever_way_it_is_written(text: str, key: str) -> None:
    assert breaker.gateway_key(text) == key


@pytest.mark.parametrize("value", [None, b"", b"garbage", b"open x 1", b"weird 1 2"])
def test_an_unreadable_stored_breaker_is_a_closed_one(value: bytes | None) -> None:
    assert breaker.unpack(value) == Breaker()


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        (408, True),
        (500, True),
        (503, True),
        (599, True),
        (486, False),
        (404, False),
        (600, False),
        (200, False),
    ],
)
def test_which_codes_count_against_a_gateway(code: int, failure: bool) -> None:
    assert breaker.is_failure(code) is failure


@given(st.text(max_size=60))
def test_any_text_names_some_gateway_and_never_raises(text: str) -> None:
    key = breaker.gateway_key(text)
    assert key.rsplit(":", 1)[1].isascii() and key.rsplit(":", 1)[1].isdigit()
