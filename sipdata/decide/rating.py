"""CDRs from call reports: durations, the rate of the destination that answered, the cost.

Rating rule (docs/api.md): `duration` is the answered time, end - answer, in
whole seconds rounded half up, at least 1 for an answered call (0 for a call
never answered). `billable_duration` is
0 for an unanswered call, else `duration` rounded up to the billing increment
and never below the minimum (defaults 6 s and 6 s: "6/6"; SIPDATA_BILLING_*).
`cost` = rate per minute x billable seconds / 60, rounded half up to the 4
decimals of `cdrs.cost`. The rate is the rate row of the destination that
answered (matched by the address that sent the 200 OK); a call delivered to a
DID or a forward has no rate and no cost.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlsplit

CENT_PLACES = Decimal("0.0001")
# cdrs.from_number / to_number are VARCHAR(50); a From user may be longer (a name,
# a SIP URI user part). The call is billed all the same with the party clipped,
# rather than refused by the database and dead-lettered.
PARTY_MAX = 50


@dataclass(frozen=True, slots=True)
class Cdr:
    call_id: str
    org_id: str
    trunk_id: str | None
    from_number: str | None
    to_number: str | None
    start_time: dt.datetime
    answer_time: dt.datetime | None
    end_time: dt.datetime
    duration: int
    billable_duration: int
    inbound: bool
    source_ip: str | None
    destination_ip: str | None
    sip_response_code: int | None
    termination_cause: str
    rate: Decimal | None
    cost: Decimal | None
    codecs: tuple[str, ...]
    metadata: dict[str, Any]
    # The org is credit-controlled and the call held credit: its cost is debited
    # from the balance with the CDR (db/billing.py) and its hold settled.
    credit: bool = False


def billable(seconds: int, minimum_s: int, increment_s: int) -> int:
    if seconds <= 0:
        return 0
    return max(minimum_s, math.ceil(seconds / increment_s) * increment_s)


def talk_seconds(answered: dt.datetime | None, ended: dt.datetime) -> int:
    if answered is None or ended <= answered:
        return 0
    exact = Decimal((ended - answered).total_seconds())
    return max(1, int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)))


def cost(rate_per_minute: Decimal, billable_s: int) -> Decimal:
    return (rate_per_minute * billable_s / 60).quantize(CENT_PLACES, rounding=ROUND_HALF_UP)


def _host(uri: str) -> str:
    rest = uri.split(":", 1)[-1].split(";", 1)[0].rsplit("@", 1)[-1]
    host = urlsplit(f"//{rest}").hostname
    return host or rest


def answered_leg(
    legs: Sequence[Mapping[str, Any]], destination_ip: str | None
) -> Mapping[str, Any] | None:
    """The destination whose address answered (a leg's dst_uri wins over its uri)."""
    if not destination_ip:
        return None
    for leg in legs:
        target = leg.get("dst_uri") or leg.get("uri") or ""
        if _host(target) == destination_ip:
            return leg
    return None


def _stamp(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def cdr_of(
    event: Mapping[str, Any], lease: Mapping[str, Any] | None, minimum_s: int, increment_s: int
) -> Cdr | None:
    """The CDR an end or fail event closes (None for other events, or without an org)."""
    if event.get("event") not in ("end", "fail"):
        return None
    lease = lease or {}
    org_id = event.get("org_id") or lease.get("org_id")
    ended = _stamp(event["ts"])
    assert ended is not None
    started = _stamp(event.get("invite_ts")) or ended
    answered = _stamp(event.get("answer_ts"))
    if not org_id:
        return None
    seconds = talk_seconds(answered, ended)
    leg = answered_leg(lease.get("legs") or [], event.get("destination_ip")) if answered else None
    rate = Decimal(leg["rate"]) if leg and leg.get("rate") else None
    bill = billable(seconds, minimum_s, increment_s)
    code: int | None
    if event["event"] == "fail":
        code, cause = event.get("sip_code"), "failed"
    else:
        code, cause = 200, event.get("cause") or "normal_clearing"
    return Cdr(
        call_id=event["call_id"],
        org_id=org_id,
        trunk_id=event.get("trunk_id") or lease.get("trunk_id"),
        from_number=_party(event.get("from")),
        to_number=_party(event.get("to")),
        start_time=started,
        answer_time=answered,
        end_time=ended,
        duration=seconds,
        billable_duration=bill,
        inbound=bool(lease.get("inbound")),
        source_ip=event.get("source_ip"),
        destination_ip=event.get("destination_ip"),
        sip_response_code=code,
        termination_cause=cause,
        rate=rate,
        cost=cost(rate, bill) if rate is not None else None,
        codecs=tuple(event.get("codecs") or ()),
        credit=bool(lease.get("credit")),
        metadata={
            k: v
            for k, v in {
                "carrier_id": leg.get("carrier_id") if leg else None,
                "prefix": leg.get("prefix") if leg else None,
                "sip_reason": event.get("sip_reason"),
            }.items()
            if v
        },
    )


def _party(value: Any) -> str | None:
    return None if value is None else str(value)[:PARTY_MAX]
