"""Which limits a routed call counts against, and the answer when one is full."""

from __future__ import annotations

import pytest

from sipdata.decide import admission
from sipdata.decide.invite import Identity, Verdict
from sipdata.decide.routes import Leg

from .factories import trunk


def routed(rule_id: str | None = None, **trunk_over: object) -> Verdict:
    ident = Identity(trunk(**trunk_over), "ip")  # type: ignore[arg-type]
    leg = Leg(uri="sip:1@192.0.2.50", rule_id=rule_id)
    return Verdict("route", 200, "OK", ident, (leg,), {"method": "ip"})


def test_route_verdict_carries_trunk_org_and_rate_limits() -> None:
    """A routed call counts against its trunk, its org and its calls-per-second limit."""
    limits = admission.limits_of(routed(max_channels=5, org_max_calls=50, max_cps=3), {})
    assert limits == admission.Limits("t-cust", "o-cust", None, 5, 50, -1, 3)


@pytest.mark.parametrize(
    ("rule_id", "rule_max", "expected_rule", "expected_max"),
    [
        ("r1", {"r1": 2}, "r1", 2),
        ("r1", {"r1": 0}, "r1", 0),  # 0 admits nothing
        ("r1", {"r1": None}, None, -1),  # NULL: no limit, no set to keep
        (None, {"r1": 2}, None, -1),  # LCR legs: no rule limit
    ],
)
def test_rule_limit_is_the_rule_that_produced_the_first_destination(
    rule_id: str | None,
    rule_max: dict[str, int | None],
    expected_rule: str | None,
    expected_max: int,
) -> None:
    """The rule limit counted is that of the rule that produced the first destination."""
    limits = admission.limits_of(routed(rule_id), rule_max)
    assert limits is not None
    assert (limits.rule_id, limits.rule_max) == (expected_rule, expected_max)


@pytest.mark.parametrize("verdict", ["reject", "challenge"])
def test_only_routed_calls_take_a_channel(verdict: str) -> None:
    """Rejected and challenged calls take no channel."""
    assert admission.limits_of(Verdict(verdict, 403, "Forbidden"), {}) is None


@pytest.mark.parametrize("outcome", ["ok", "dup", "unchecked"])
def test_admitting_outcomes_keep_the_route(outcome: str) -> None:
    """ok, dup and unchecked admissions keep the route."""
    assert admission.refused(routed(), outcome) is None


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        ("trunk", "Trunk Channel Limit Reached"),
        ("org", "Account Channel Limit Reached"),
        ("rule", "Route Channel Limit Reached"),
        ("rate", "Call Rate Limit Exceeded"),
        ("surprise", "Admission Refused"),
    ],
)
def test_full_limits_answer_503_naming_the_limit(outcome: str, reason: str) -> None:
    """A full limit refuses the call 503 with the limit named, keeping who called but no
    destinations."""
    refused = admission.refused(routed(), outcome)
    assert refused is not None
    assert (refused.verdict, refused.code, refused.reason) == ("reject", 503, reason)
    assert refused.explain["admission"] == outcome
    assert refused.identity is not None and not refused.legs
