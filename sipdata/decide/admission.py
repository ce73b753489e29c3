"""Admission: which channel and call-rate limits a routed call counts against, and the SIP
answer when one is full.

A call is admitted only while, at that instant, every one of these is below its limit:
the calling trunk's channels (`sip_trunks.max_channels`), its org's channels
(`organization_settings.max_concurrent_calls`), the matched rule's channels
(`routing_rules.max_calls`, the rule that produced the first destination) and the
trunk's calls in the current one-second window (`max_cps`). A limit of -1 (NULL
in the database) is no limit; 0 admits nothing. The check and the admission are
one Redis script (cache/scripts/admit.lua), so concurrent INVITEs cannot both take the
last channel.

Rejections are 503 with a reason naming the limit. 503 rather than 486 or 403:
the callee is not busy and the caller is not forbidden; the caller's own
capacity with us is full for now, and 503 is the answer that makes a customer's
PBX try its next provider (RFC 3261 21.5.4) instead of giving up. It carries
`Retry-After` (Kamailio adds it), and `explain.admission` names the limit, so
it can never be mistaken for sipdata being down (`degraded` is absent).
"""

from __future__ import annotations

from dataclasses import dataclass

from sipdata.decide.invite import Verdict, reject
from sipdata.decide.models import Trunk

# Script answer -> reason. "ok" and "dup" admit; so does "unchecked" (the
# service could not reach Redis and routes without limits rather than refuse
# every call).
REFUSALS = {
    "trunk": "Trunk Channel Limit Reached",
    "org": "Account Channel Limit Reached",
    "rule": "Route Channel Limit Reached",
    "rate": "Call Rate Limit Exceeded",
    # Redis lost its leases a moment ago and the saved counts are not back yet:
    # admitting now would count from zero (docs/operations.md, "Redis restarts").
    "restoring": "Channel Counts Restoring",
}
ADMITTED = ("ok", "dup", "unchecked", "ended")
RESTORING = "restoring"


@dataclass(frozen=True, slots=True)
class Limits:
    """What one call counts against; -1 = unlimited."""

    trunk_id: str
    org_id: str
    rule_id: str | None
    trunk_max: int
    org_max: int
    rule_max: int
    cps_max: int


def limits_of(verdict: Verdict, rule_max_calls: dict[str, int | None]) -> Limits | None:
    """The limits of a route verdict (None for other verdicts: nothing to admit)."""
    if verdict.verdict != "route" or verdict.identity is None:
        return None
    rule_id = verdict.legs[0].rule_id if verdict.legs else None
    return limits_for(verdict.identity.trunk, rule_id, rule_max_calls)


def limits_for(trunk: Trunk, rule_id: str | None, rule_max_calls: dict[str, int | None]) -> Limits:
    """The limits of a call from `trunk` whose first destination came from `rule_id`."""
    rule_max = rule_max_calls.get(rule_id) if rule_id else None
    return Limits(
        trunk_id=trunk.id,
        org_id=trunk.org_id,
        rule_id=rule_id if rule_max is not None else None,
        trunk_max=trunk.max_channels,
        org_max=trunk.org_max_calls,
        rule_max=-1 if rule_max is None else rule_max,
        cps_max=trunk.max_cps,
    )


def refused(verdict: Verdict, outcome: str) -> Verdict | None:
    """The reject that replaces a route verdict when the admission script said no."""
    if outcome in ADMITTED:
        return None
    reason = REFUSALS.get(outcome, "Admission Refused")
    return reject(503, reason, verdict.identity, **{**verdict.explain, "admission": outcome})
