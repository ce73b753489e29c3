"""The combined INVITE decision: identification table, then routing table."""

import datetime as dt
from typing import Any

import pytest

from sipdata.decide.invite import Identity, RoutingFacts, Verdict, identify, route
from sipdata.decide.models import Registration
from sipdata.decide.rules import ordered_matches, parse_rule

from .factories import REALM, carrier, credential, did, query, rate, trunk

NOW = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)


def test_ip_trunk_is_identified_by_its_network() -> None:
    who = identify(query(), ("192.0.2.10/32", [trunk()]), None, REALM)
    assert isinstance(who, Identity) and who.method == "ip" and who.trunk.id == "t-cust"


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"status": "suspended"}, "Trunk Suspended"),
        ({"org_status": "suspended"}, "Account Suspended"),
    ],
)
def test_suspended_ip_trunk_or_org_is_rejected_403(over: dict[str, Any], reason: str) -> None:
    who = identify(query(), ("192.0.2.10/32", [trunk(**over)]), None, REALM)
    assert isinstance(who, Verdict) and (who.verdict, who.code, who.reason) == (
        "reject",
        403,
        reason,
    )


def test_unknown_address_without_credentials_is_challenged() -> None:
    who = identify(query("203.0.113.9"), None, None, REALM)
    assert isinstance(who, Verdict) and (who.verdict, who.code) == ("challenge", 407)


def test_shared_network_is_ambiguous_and_falls_to_digest() -> None:
    owners = [trunk("a"), trunk("b")]
    assert isinstance(identify(query(), ("192.0.2.0/24", owners), None, REALM), Verdict)
    who = identify(query(auth_user="alice"), ("192.0.2.0/24", owners), credential(), REALM)
    assert isinstance(who, Identity) and who.method == "digest"


@pytest.mark.parametrize(
    ("q", "cred", "expected"),
    [
        (dict(auth_user="alice"), credential(), ("digest", "MD5")),
        (dict(auth_user="alice", auth_algorithm="SHA-256"), credential(), ("digest", "SHA-256")),
        (dict(auth_user="bob"), None, (403, "Forbidden")),
        (dict(auth_user="alice", auth_realm="other"), credential(), (403, "Wrong Realm")),
        (
            dict(auth_user="alice", auth_algorithm="MD5-sess"),
            credential(),
            (403, "Unsupported Digest Algorithm"),
        ),
        (dict(auth_user="alice"), credential(status="disabled"), (403, "Trunk Suspended")),
        (dict(auth_user="alice"), credential(org_status="suspended"), (403, "Account Suspended")),
    ],
)
def test_digest_identification(q: dict[str, Any], cred: Any, expected: tuple) -> None:
    who = identify(query("203.0.113.9", **q), None, cred, REALM)
    if isinstance(who, Identity):
        assert (who.method, who.algorithm) == expected
        assert who.ha1 == cred.ha1.for_algorithm(expected[1])
    else:
        assert (who.code, who.reason) == expected
        assert who.identity is None  # a reject never carries credentials


def test_digest_trunk_source_restriction() -> None:
    cred = credential(networks=("198.51.100.0/24",))
    bad = identify(query("203.0.113.9", auth_user="alice"), None, cred, REALM)
    assert isinstance(bad, Verdict) and bad.reason == "Source Address Not Allowed"
    ok = identify(query("198.51.100.7", auth_user="alice"), None, cred, REALM)
    assert isinstance(ok, Identity)


def facts(**over: Any) -> RoutingFacts:
    base: dict[str, Any] = dict(
        did=None,
        rules=(),
        registrations={},
        lcr_entries={
            "12125551234": ("1212", [rate("A", "1212", "0.010"), rate("B", "1", "0.005")])
        },
        carriers={"A": carrier("a", "198.51.100.1"), "B": carrier("b", "198.51.100.2")},
        trunks={},
    )
    base["carriers"] = {"A": base["carriers"]["A"], "B": base["carriers"]["B"]}
    base.update(over)
    return RoutingFacts(**base)


def ident(**over: Any) -> Identity:
    return Identity(trunk(**over), "ip", acl_network="192.0.2.10/32")


def test_lcr_routes_cheapest_first_in_rtjson() -> None:
    v = route(ident(), query(), [], facts(), NOW)
    doc = v.to_json()
    assert doc["verdict"] == "route"
    assert doc["routing"]["routing"] == "serial"
    assert [r["uri"] for r in doc["routing"]["routes"]] == [
        "sip:12125551234@198.51.100.2",
        "sip:12125551234@198.51.100.1",
    ]
    assert doc["legs"][0]["rate"] == "0.005"
    assert doc["explain"]["lcr"][0]["prefix"] == "1212"


def test_no_lcr_entry_is_404_no_route() -> None:
    v = route(ident(), query(to="999"), [], facts(lcr_entries={}), NOW)
    assert (v.code, v.reason) == (404, "No Route")


def test_carrier_without_gateways_is_skipped_and_explained() -> None:
    f = facts(carriers={"A": carrier("a", "198.51.100.1")})
    v = route(ident(), query(), [], f, NOW)
    assert len(v.legs) == 1 and v.explain["lcr"][0]["carriers_without_gateways"] == ["B"]


def _rules(*rows: dict[str, Any]) -> list:
    base = {
        "org_id": "o-cust",
        "name": "r",
        "match_type": "prefix",
        "time_condition": {},
        "transform_rules": {},
        "weight": 100,
        "trunk_id": None,
    }
    return [parse_rule({**base, **r}) for r in rows]


def test_first_matching_reject_rule_rejects_with_its_code() -> None:
    rules = _rules(
        {
            "id": "r1",
            "priority": 1,
            "match_pattern": "1212",
            "action": "reject",
            "destination": "603 Decline",
        }
    )
    matched = ordered_matches(rules, "12125551234", NOW, "c1", "t-cust")
    v = route(ident(), query(), matched, facts(), NOW)
    assert (v.verdict, v.code, v.reason) == ("reject", 603, "Decline")
    assert v.explain["rule_id"] == "r1"


def test_rules_chain_in_priority_order_and_stop_at_a_reject() -> None:
    rules = _rules(
        {
            "id": "fwd",
            "priority": 1,
            "match_pattern": "1",
            "action": "forward",
            "destination": "sip:ivr.example.net",
        },
        {"id": "lcr", "priority": 2, "match_pattern": "1", "action": "lcr"},
        {"id": "stop", "priority": 3, "match_pattern": "1", "action": "reject"},
        {
            "id": "late",
            "priority": 4,
            "match_pattern": "1",
            "action": "forward",
            "destination": "sip:late@x",
        },
    )
    matched = ordered_matches(rules, "12125551234", NOW, "c1", "t-cust")
    v = route(ident(), query(), matched, facts(), NOW)
    uris = [leg.uri for leg in v.legs]
    assert uris[0] == "sip:12125551234@ivr.example.net"
    assert uris[1:] == ["sip:12125551234@198.51.100.2", "sip:12125551234@198.51.100.1"]
    assert "sip:late@x" not in uris


def test_rule_to_unreachable_trunk_gives_480() -> None:
    rules = _rules(
        {"id": "t", "priority": 1, "match_pattern": "1", "action": "trunk", "destination": "t-pbx"}
    )
    pbx = trunk("t-pbx", auth_type="digest", address=None, networks=())
    matched = ordered_matches(rules, "12125551234", NOW, "c1", "t-cust")
    v = route(ident(), query(), matched, facts(trunks={"t-pbx": pbx}), NOW)
    assert v.code == 480
    reg = Registration("sip:pbx@203.0.113.5:5080", 2_000_000_000, received="sip:203.0.113.5:5080")
    v = route(
        ident(), query(), matched, facts(trunks={"t-pbx": pbx}, registrations={"t-pbx": reg}), NOW
    )
    assert v.verdict == "route"
    assert v.to_json()["routing"]["routes"] == [
        {"uri": "sip:pbx@203.0.113.5:5080", "dst_uri": "sip:203.0.113.5:5080"}
    ]


@pytest.mark.parametrize(
    ("the_did", "registered", "expected"),
    [
        (did(), True, (200, "OK")),
        (did(), False, (480, "Temporarily Unavailable")),
        (None, False, (404, "Not Found")),
        (did(status="available"), True, (404, "Not Found")),
        (did(voice_enabled=False), True, (403, "Voice Not Enabled")),
        (did(trunk=trunk("t-pbx", status="suspended")), True, (403, "Destination Suspended")),
    ],
)
def test_inbound_from_carrier_goes_to_the_did_trunk(
    the_did: Any, registered: bool, expected: tuple
) -> None:
    regs = {"t-pbx": Registration("sip:pbx@203.0.113.5", 2_000_000_000)} if registered else {}
    carrier_trunk = ident(is_carrier=True, org_id="o-carrier")
    v = route(
        carrier_trunk, query(to="12125550100"), [], facts(did=the_did, registrations=regs), NOW
    )
    assert (v.code, v.reason) == expected
    assert v.explain["direction"] == "inbound"


def test_customer_call_to_on_net_did_stays_on_net() -> None:
    regs = {"t-pbx": Registration("sip:pbx@203.0.113.5", 2_000_000_000)}
    v = route(ident(), query(to="12125550100"), [], facts(did=did(), registrations=regs), NOW)
    assert v.explain["on_net"] == "12125550100"
    assert [leg.kind for leg in v.legs] == ["did"]


def test_carrier_calls_never_transit_to_lcr() -> None:
    v = route(ident(is_carrier=True), query(), [], facts(), NOW)
    assert (v.code, v.reason) == (404, "Not Found")


def test_rule_whose_transform_breaks_the_number_is_skipped() -> None:
    rules = _rules(
        {
            "id": "bad",
            "priority": 1,
            "match_pattern": "1",
            "action": "lcr",
            "transform_rules": {"strip": 20},
        },
        {
            "id": "good",
            "priority": 2,
            "match_pattern": "1",
            "action": "forward",
            "destination": "sip:backup.example.net",
        },
    )
    matched = ordered_matches(rules, "12125551234", NOW, "c1", "t-cust")
    v = route(ident(), query(), matched, facts(), NOW)
    assert [leg.uri for leg in v.legs] == ["sip:12125551234@backup.example.net"]
    assert v.explain["transform_invalid"] == ["bad"]
