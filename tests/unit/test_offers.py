"""From offers to destinations (decide/offers.py): dead gateways left out, half-open ones
kept in place, the sell rate applied, and every reason in explain."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from sipdata.decide.breaker import HALF_OPEN, OPEN
from sipdata.decide.invite import Identity, RoutingFacts, route
from sipdata.decide.models import Carrier, Gateway
from sipdata.decide.offers import Health, Policy, lcr_legs
from sipdata.decide.quality import QualityConfig

from .factories import carrier, query, rate, trunk

DAY = dt.date(2026, 12, 4)
ROWS = [rate("a", "1", "0.010"), rate("b", "1", "0.005"), rate("c", "1", "0.009")]
ENTRY = ("1", ROWS)
CARRIERS = {
    "a": carrier("a", "10.0.0.1"),
    "b": Carrier(
        "b", "B", (Gateway("gw-b1", "10.0.0.2", "UDP"), Gateway("gw-b2", "10.0.0.3", "UDP"))
    ),
    "c": carrier("c", "10.0.0.4"),
}


COST = Policy()


def legs_of(health: Health, policy: Policy = COST) -> tuple[list[str], dict[str, object]]:
    legs, doc = lcr_legs(
        "12125551234", ENTRY, DAY, carriers=CARRIERS, policy=policy, health=health, rule_id=None
    )
    return [leg.uri.split("@")[1] for leg in legs], doc


def test_healthy_gateways_in_cost_order() -> None:
    uris, doc = legs_of(Health())
    assert uris == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.1"]
    assert "gateways_down" not in doc and doc["strategy"] == "cost"


def test_an_open_gateway_is_left_out_and_its_carrier_keeps_its_other_one() -> None:
    uris, doc = legs_of(Health({"10.0.0.2:5060": OPEN}))
    assert uris == ["10.0.0.3", "10.0.0.4", "10.0.0.1"]
    assert doc["gateways_down"] == [{"carrier_id": "b", "gateway": "10.0.0.2"}]
    offers = doc["offers"]
    assert isinstance(offers, list)
    assert offers[0]["gateways"] == [
        {"address": "10.0.0.2", "state": "open"},
        {"address": "10.0.0.3", "state": "closed"},
    ]


def test_a_half_open_gateway_stays_in_its_place() -> None:
    assert legs_of(Health({"10.0.0.2:5060": HALF_OPEN}))[0][0] == "10.0.0.2"


def test_the_sell_rate_drops_carriers_that_cost_more_than_it() -> None:
    uris, doc = legs_of(Health(), Policy(sell_rate=Decimal("0.0090")))
    assert uris == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert doc["margin"] == {
        "sell_rate": "0.0090",
        "not_offered": [{"carrier_id": "a", "rate": "0.010", "reason": "rate above the sell rate"}],
    }


def test_every_gateway_down_offers_them_all_in_order_as_a_last_resort() -> None:
    """A breaker can be wrong (probes filtered, a partition on the edge's side): with
    every gateway open the call still gets them all, and explain says why."""
    facts = RoutingFacts(
        did=None,
        rules=[],
        registrations={},
        lcr_entries={"12125551234": ENTRY},
        carriers=CARRIERS,
        trunks={},
        health=Health({f"10.0.0.{i}:5060": OPEN for i in range(1, 5)}),
    )
    verdict = route(
        Identity(trunk(), "ip"), query(), [], facts, dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    )
    assert verdict.verdict == "route"
    assert [leg.uri.split("@")[1] for leg in verdict.legs] == [
        "10.0.0.2",
        "10.0.0.3",
        "10.0.0.4",
        "10.0.0.1",
    ]
    (doc,) = verdict.explain["lcr"]
    assert doc["last_resort"] is True and len(doc["gateways_down"]) == 4


def test_an_unknown_strategy_or_sell_rate_is_plain_cost() -> None:
    policy = Policy.of(trunk(routing_strategy="cheapest-ever", sell_rate="lots"), QualityConfig())
    assert policy == Policy(quality=QualityConfig())


ALL = {f"10.0.0.{i}:5060" for i in range(1, 5)}


@given(st.sets(st.sampled_from(sorted(ALL))))
def test_no_open_gateway_is_offered_while_another_one_is_not_open(down: set[str]) -> None:
    uris, doc = legs_of(Health(dict.fromkeys(down, OPEN)))
    offered = {f"{u}:5060" for u in uris}
    assert offered == (ALL - down or ALL)
    assert doc.get("last_resort", False) is (down == ALL)
