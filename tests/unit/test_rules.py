"""Custom routing rules: validation, matching, time windows, transforms, weighted order."""

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdata.decide.rules import RuleError, ordered_matches, parse_rule, parse_window

UTC = dt.UTC


def rule(**over: Any) -> dict[str, Any]:
    base = {
        "id": "r1",
        "org_id": "o1",
        "name": "n",
        "trunk_id": None,
        "priority": 100,
        "match_type": "prefix",
        "match_pattern": "1212",
        "time_condition": {},
        "action": "lcr",
        "destination": None,
        "transform_rules": {},
        "weight": 100,
        "max_calls": None,
    }
    return {**base, **over}


NOW = dt.datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # a Wednesday, 15:00 UTC


@pytest.mark.parametrize(
    ("over", "number", "hit"),
    [
        ({}, "12125551234", True),
        ({}, "1213", False),
        ({"match_pattern": "+1 212"}, "12125551234", True),  # patterns are canonicalised
        ({"match_type": "exact", "match_pattern": "12125551234"}, "12125551234", True),
        ({"match_type": "exact", "match_pattern": "12125551234"}, "121255512345", False),
        ({"match_type": "regex", "match_pattern": "^1(212|646)"}, "16465550000", True),
        ({"match_type": "regex", "match_pattern": "^1(212|646)"}, "17185550000", False),
        ({"match_type": "regex", "match_pattern": "555"}, "17185550000", True),  # search
        ({"trunk_id": "t1"}, "12125551234", True),
        ({"trunk_id": "t2"}, "12125551234", False),
    ],
)
def test_matching(over: dict[str, Any], number: str, hit: bool) -> None:
    """Prefix, exact and RE2 patterns match the canonical number as the table says."""
    assert parse_rule(rule(**over)).matches(number, NOW, "t1") is hit


def test_regex_is_linear_time_even_for_evil_patterns() -> None:
    """A catastrophic-backtracking pattern still answers at once (RE2)."""
    r = parse_rule(rule(match_type="regex", match_pattern="^(1+)+$"))
    assert r.matches("1" * 15, NOW, None)
    assert not r.matches("1" * 14 + "2", NOW, None)  # would take ages with backtracking


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"match_type": "glob"}, "match_type"),
        ({"action": "teleport"}, "action"),
        ({"match_type": "regex", "match_pattern": "(a"}, "RE2"),
        ({"match_type": "regex", "match_pattern": r"(1)\1"}, "RE2"),  # backreference
        ({"match_pattern": "12a"}, "ASCII"),
        ({"action": "trunk"}, "destination"),
        ({"action": "trunk", "destination": "carrier-a"}, "UUID"),
        ({"action": "forward", "destination": "http://x"}, "sip:"),
        ({"action": "reject", "destination": "nope"}, "SIP code"),
        ({"action": "reject", "destination": "200 OK"}, "400..699"),
        ({"time_condition": {"timezone": "Mars/Base"}}, "IANA"),
        ({"time_condition": {"days": ["funday"]}}, "days"),
        ({"time_condition": {"start": "09:00"}}, "both"),
        ({"time_condition": {"start": "9am", "end": "5pm"}}, "HH:MM"),
        ({"time_condition": {"when": "always"}}, "unknown"),
        ({"transform_rules": {"strip": -1}}, "strip"),
        ({"transform_rules": {"prefix": "+44"}}, "digits"),
        ({"transform_rules": {"replace": {"pattern": "(("}}}, "RE2"),
        ({"transform_rules": {"rot13": True}}, "unknown"),
        ({"weight": -5}, "weight"),
    ],
)
def test_invalid_rules_are_refused_with_reason(over: dict[str, Any], message: str) -> None:
    """A rule that cannot be applied is refused with a reason naming what is wrong."""
    with pytest.raises(RuleError, match=message):
        parse_rule(rule(**over))


@pytest.mark.parametrize(
    ("window", "when", "inside"),
    [
        ({"start": "09:00", "end": "17:00"}, "2026-11-25T09:00:00+00:00", True),
        ({"start": "09:00", "end": "17:00"}, "2026-11-25T17:00:00+00:00", False),  # end exclusive
        ({"start": "22:00", "end": "06:00"}, "2026-11-25T23:30:00+00:00", True),  # wraps midnight
        ({"start": "22:00", "end": "06:00"}, "2026-11-25T05:59:00+00:00", True),
        ({"start": "22:00", "end": "06:00"}, "2026-11-25T12:00:00+00:00", False),
        ({"days": ["sat", "sun"]}, "2026-11-28T12:00:00+00:00", True),
        ({"days": [6, 7]}, "2026-11-25T12:00:00+00:00", False),
        # 23:30 UTC Friday is already Saturday in Tokyo
        ({"timezone": "Asia/Tokyo", "days": ["sat"]}, "2026-11-27T23:30:00+00:00", True),
        # New York is UTC-5 in November: 14:00 UTC is 09:00 local
        (
            {"timezone": "America/New_York", "start": "09:00", "end": "10:00"},
            "2026-11-25T14:00:00+00:00",
            True,
        ),
        # ... and UTC-4 in July
        (
            {"timezone": "America/New_York", "start": "09:00", "end": "10:00"},
            "2026-07-15T14:00:00+00:00",
            False,
        ),
    ],
)
def test_time_windows(window: dict[str, Any], when: str, inside: bool) -> None:
    """Time windows hold from start (inclusive) to end (exclusive), across midnight and in
    the rule's time zone."""
    parsed = parse_window(window)
    assert parsed is not None
    assert parsed.contains(dt.datetime.fromisoformat(when)) is inside


def test_empty_time_condition_means_always() -> None:
    """No time condition means the rule applies at every hour."""
    assert parse_window({}) is None
    assert parse_rule(rule()).window is None


@pytest.mark.parametrize(
    ("transform", "number", "expected"),
    [
        ({}, "02071234567", "02071234567"),
        ({"strip": 1, "prefix": "44"}, "02071234567", "442071234567"),
        ({"replace": {"pattern": "^011", "with": ""}}, "011442071234567", "442071234567"),
        (
            {"strip": 2, "replace": {"pattern": "^(\\d{3})", "with": "9\\1"}, "prefix": "1"},
            "00212555",
            "19212555",
        ),
    ],
)
def test_transforms_apply_strip_replace_prefix_in_order(
    transform: dict[str, Any], number: str, expected: str
) -> None:
    """Transforms strip, then replace, then prefix, in that order."""
    assert parse_rule(rule(transform_rules=transform)).transform.apply(number) == expected


def test_reject_code_and_reason() -> None:
    """A reject rule's destination gives its SIP code and reason; none given means 403 Forbidden."""
    assert parse_rule(rule(action="reject", destination="486 Busy Here")).reject_code() == (
        486,
        "Busy Here",
    )
    assert parse_rule(rule(action="reject", destination=None)).reject_code() == (403, "Forbidden")


def _group() -> list:
    return [
        parse_rule(
            rule(id="heavy", priority=50, weight=70, action="forward", destination="sip:a@h")
        ),
        parse_rule(
            rule(id="light", priority=50, weight=30, action="forward", destination="sip:b@h")
        ),
        parse_rule(rule(id="first", priority=10, action="forward", destination="sip:c@h")),
        parse_rule(
            rule(id="never", priority=50, weight=0, action="forward", destination="sip:d@h")
        ),
    ]


def test_order_is_priority_then_weighted_and_fixed_per_call_id() -> None:
    """Rules order by priority, then by weight at random, and the same Call-ID always gets
    the same order."""
    order = [r.id for r in ordered_matches(_group(), "12125", NOW, "call-1", None)]
    assert order[0] == "first" and order[-1] == "never"
    assert set(order[1:3]) == {"heavy", "light"}
    again = [r.id for r in ordered_matches(_group(), "12125", NOW, "call-1", None)]
    assert again == order  # a retransmission routes alike


def test_weights_split_first_choice_in_proportion() -> None:
    """Over 10,000 fixed Call-IDs the 70/30 split lands within 2 points (deterministic)."""
    firsts = Counter(
        ordered_matches(_group(), "12125", NOW, f"call-{i}", None)[1].id for i in range(10_000)
    )
    assert 0.68 <= firsts["heavy"] / 10_000 <= 0.72
    assert firsts["never"] == 0


@given(st.text(min_size=1, max_size=40))
def test_weight_zero_rule_is_always_last(call_id: str) -> None:
    """A weight-0 rule is tried last whatever the Call-ID."""
    assert ordered_matches(_group(), "12125", NOW, call_id, None)[-1].id == "never"
