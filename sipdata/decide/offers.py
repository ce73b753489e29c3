"""From a number's carrier offers to destinations: health, margin, then the org's order.

1. Margin: with a sell rate (`organization_settings.features.sell_rate`, per
   minute), a carrier whose rate is above it is not offered; the call would
   lose money on every minute.
2. Order: the org's strategy (decide/quality.py: cost, quality floor, quality
   weighted).
3. Health: a gateway whose breaker is open (decide/breaker.py) is left out; a
   half-open one stays in its place (its first outcome decides). A carrier
   whose every gateway is open is left out with them. Left out, not moved
   last: a call sent to a dead gateway waits for the failure timer before the
   next one is tried. But when every gateway the number could use is open,
   all are offered, in order (`last_resort` in explain): a breaker can be
   wrong (probes filtered on the way, a partition on the edge's own side), and
   trying costs the failure timer where refusing costs the call.

Every reason lands in the explain document next to the offer it concerns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sipdata.decide import lcr
from sipdata.decide.breaker import OPEN, gateway_key
from sipdata.decide.models import Carrier, Gateway, Trunk
from sipdata.decide.quality import COST, STRATEGIES, QualityConfig, Summary, order
from sipdata.decide.routes import Leg, request_uri


@dataclass(frozen=True, slots=True)
class Policy:
    """How an org's calls pick among carriers."""

    strategy: str = COST
    sell_rate: Decimal | None = None
    quality: QualityConfig = field(default_factory=QualityConfig)

    @classmethod
    def of(cls, trunk: Trunk, config: QualityConfig) -> Policy:
        strategy = trunk.routing_strategy if trunk.routing_strategy in STRATEGIES else COST
        sell: Decimal | None = None
        if trunk.sell_rate:
            try:
                sell = Decimal(trunk.sell_rate)
            except InvalidOperation:
                sell = None
        return cls(strategy, sell, config)


@dataclass(frozen=True, slots=True)
class Health:
    """What the decision knows of gateways and carriers now."""

    gateways: Mapping[str, str] = field(default_factory=dict)  # gateway key -> state (not closed)
    quality: Mapping[str, Summary] = field(default_factory=dict)  # carrier id -> summary


def lcr_legs(
    number: str,
    entry: tuple[str, Sequence[lcr.RateRow]] | None,
    day: dt.date,
    *,
    carriers: Mapping[str, Carrier],
    policy: Policy,
    health: Health,
    rule_id: str | None,
) -> tuple[list[Leg], dict[str, Any]]:
    """The destinations of `number` by rate deck, and the explain entry saying why."""
    if entry is None:
        return [], {"number": number, "prefix": None, "offers": []}
    prefix, rows = entry
    offers = lcr.resolve(rows, day)
    by_id = {o.carrier_id: o for o in offers}
    not_offered: list[str] = []
    kept = []
    for o in offers:
        if policy.sell_rate is not None and o.rate > policy.sell_rate:
            not_offered.append(o.carrier_id)
        else:
            kept.append((o.carrier_id, o.rate, o.priority))
    ranked = order(kept, health.quality, policy.strategy, policy.quality)
    legs: list[Leg] = []
    without_gateways: list[str] = []
    down: list[dict[str, str]] = []
    every: list[tuple[str, Gateway]] = []
    notes: dict[str, dict[str, Any]] = {}
    for r in ranked:
        o = by_id[r.carrier_id]
        carrier = carriers.get(o.carrier_id)
        note: dict[str, Any] = {"order": r.why, "gateways": []}
        notes[o.carrier_id] = note
        if carrier is None or not carrier.gateways:
            without_gateways.append(o.carrier_id)
            continue
        for gw in carrier.gateways:
            state = health.gateways.get(gateway_key(gw.address), "closed")
            note["gateways"].append({"address": gw.address, "state": state})
            every.append((o.carrier_id, gw))
            if state == OPEN:
                down.append({"carrier_id": o.carrier_id, "gateway": gw.address})
                continue
            legs.append(_leg(number, gw, o, rule_id))
    if down and not legs:
        legs = [_leg(number, gw, by_id[c], rule_id) for c, gw in every]
    explain: dict[str, Any] = {
        "number": number,
        "prefix": prefix,
        "strategy": policy.strategy,
        "offers": [_offer(by_id[r.carrier_id], notes[r.carrier_id], health) for r in ranked],
        "carriers_without_gateways": without_gateways,
    }
    if down:
        explain["gateways_down"] = down
        explain["last_resort"] = len(down) == len(every)
    if policy.sell_rate is not None:
        explain["margin"] = {
            "sell_rate": str(policy.sell_rate),
            "not_offered": [
                {"carrier_id": c, "rate": str(by_id[c].rate), "reason": "rate above the sell rate"}
                for c in not_offered
            ],
        }
    return legs, explain


def _leg(number: str, gw: Gateway, o: lcr.Offer, rule_id: str | None) -> Leg:
    return Leg(
        uri=request_uri(number, gw.address, gw.transport),
        kind="lcr",
        carrier_id=o.carrier_id,
        trunk_id=gw.trunk_id,
        rate=str(o.rate),
        prefix=o.prefix,
        rule_id=rule_id,
    )


def _offer(o: lcr.Offer, note: Mapping[str, Any], health: Health) -> dict[str, Any]:
    out: dict[str, Any] = {
        "carrier_id": o.carrier_id,
        "rate": str(o.rate),
        "priority": o.priority,
        "prefix": o.prefix,
        "from": o.effective.isoformat(),
        **note,
    }
    summary = health.quality.get(o.carrier_id)
    if summary is not None:
        out["quality"] = summary.to_json()
    return out
