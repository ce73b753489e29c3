"""The combined INVITE decision: identification table, then routing table."""

import datetime as dt
from typing import Any

import pytest

from sipdata.decide.invite import Identity, RoutingFacts, Verdict, identify, route
from sipdata.decide.models import Registration
from sipdata.decide.rules import ordered_matches, parse_rule

from .factories import REALM, carrier, credential, did, query, rate, trunk

NOW = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)
PBX = "6f1d7c3e-0000-4000-8000-000000000001"  # rule targets are trunk ids


def test_ip_trunk_is_identified_by_its_network() -> None:
    """A source address inside one IP trunk's network names that trunk as the caller."""
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
    """A suspended trunk or organisation may not call: 403 with the reason that names which."""
    who = identify(query(), ("192.0.2.10/32", [trunk(**over)]), None, REALM)
    assert isinstance(who, Verdict) and (who.verdict, who.code, who.reason) == (
        "reject",
        403,
        reason,
    )


def test_unknown_address_without_credentials_is_challenged() -> None:
    """An address no trunk owns, without credentials, gets the 407 that lets digest trunks in."""
    who = identify(query("203.0.113.9"), None, None, REALM)
    assert isinstance(who, Verdict) and (who.verdict, who.code) == ("challenge", 407)


def test_shared_network_is_ambiguous_and_falls_to_digest() -> None:
    """A network two IP trunks share cannot name the caller: it is challenged, and digest
    decides."""
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
    """A digest caller is named by its username with the HA1 of the algorithm it used; an
    unknown user or algorithm is refused 403, never with credentials."""
    who = identify(query("203.0.113.9", **q), None, cred, REALM)
    if isinstance(who, Identity):
        assert (who.method, who.algorithm) == expected
        assert who.ha1 == cred.ha1.for_algorithm(expected[1])
    else:
        assert (who.code, who.reason) == expected
        assert who.identity is None  # a reject never carries credentials


def test_digest_trunk_source_restriction() -> None:
    """A digest trunk with allowed networks is refused from any other address."""
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
    """LCR orders carriers cheapest first, as an rtjson serial document, with the rate and
    matched prefix explained."""
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
    """A number no rate deck covers is 404 No Route."""
    v = route(ident(), query(to="999"), [], facts(lcr_entries={}), NOW)
    assert (v.code, v.reason) == (404, "No Route")


def test_carrier_without_gateways_is_skipped_and_explained() -> None:
    """A carrier with a rate but no gateway is left out, and explain names it."""
    f = facts(carriers={"A": carrier("a", "198.51.100.1")})
    v = route(ident(), query(), [], f, NOW)
    assert len(v.legs) == 1 and v.explain["lcr"][0]["carriers_without_gateways"] == ["B"]


def rule(
    id: str, priority: int, action: str, destination: str | None = None, **over: Any
) -> dict[str, Any]:
    """A routing_rules row matching every number starting with 1 unless overridden."""
    return {
        "id": id,
        "org_id": "o-cust",
        "name": id,
        "priority": priority,
        "match_type": "prefix",
        "match_pattern": "1",
        "time_condition": {},
        "action": action,
        "destination": destination,
        "transform_rules": {},
        "weight": 100,
        "trunk_id": None,
        **over,
    }


def route_with(*rows: dict[str, Any], **facts_over: Any) -> Verdict:
    """Route 12125551234 from the customer trunk with these rules."""
    matched = ordered_matches(map(parse_rule, rows), "12125551234", NOW, "c1", "t-cust")
    return route(ident(), query(), matched, facts(**facts_over), NOW)


def test_first_matching_reject_rule_rejects_with_its_code() -> None:
    """A reject rule that matches first answers with its own code and reason."""
    v = route_with(rule("r1", 1, "reject", "603 Decline", match_pattern="1212"))
    assert (v.verdict, v.code, v.reason) == ("reject", 603, "Decline")
    assert v.explain["rule_id"] == "r1"


def test_rules_chain_in_priority_order_and_stop_at_a_reject() -> None:
    """Matching rules add destinations in priority order; a later reject rule ends the
    failover chain."""
    v = route_with(
        rule("fwd", 1, "forward", "sip:ivr.example.net"),
        rule("lcr", 2, "lcr"),
        rule("stop", 3, "reject"),
        rule("late", 4, "forward", "sip:late@x"),
    )
    uris = [leg.uri for leg in v.legs]
    assert uris[0] == "sip:12125551234@ivr.example.net"
    assert uris[1:] == ["sip:12125551234@198.51.100.2", "sip:12125551234@198.51.100.1"]
    assert "sip:late@x" not in uris


def test_rule_to_unreachable_trunk_gives_480() -> None:
    """A rule to a trunk with no address is 480 until the trunk registers, then routes to
    its contact."""
    pbx = trunk(PBX, auth_type="digest", address=None, networks=())
    to_pbx = rule("t", 1, "trunk", PBX)
    assert route_with(to_pbx, trunks={PBX: pbx}).code == 480
    reg = Registration("sip:pbx@203.0.113.5:5080", 2_000_000_000, received="sip:203.0.113.5:5080")
    v = route_with(to_pbx, trunks={PBX: pbx}, registrations={PBX: reg})
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
    """A carrier's call goes to the DID's trunk, or is refused with the code that says why
    (404, 403, 480)."""
    regs = {"t-pbx": Registration("sip:pbx@203.0.113.5", 2_000_000_000)} if registered else {}
    carrier_trunk = ident(is_carrier=True, org_id="o-carrier")
    v = route(
        carrier_trunk, query(to="12125550100"), [], facts(did=the_did, registrations=regs), NOW
    )
    assert (v.code, v.reason) == expected
    assert v.explain["direction"] == "inbound"


def test_customer_call_to_on_net_did_stays_on_net() -> None:
    """A customer dialling a DID the platform holds reaches its trunk without LCR."""
    regs = {"t-pbx": Registration("sip:pbx@203.0.113.5", 2_000_000_000)}
    v = route(ident(), query(to="12125550100"), [], facts(did=did(), registrations=regs), NOW)
    assert v.explain["on_net"] == "12125550100"
    assert [leg.kind for leg in v.legs] == ["did"]


def test_carrier_calls_never_transit_to_lcr() -> None:
    """A carrier's call to a number that is not a DID is refused, never sent on to another
    carrier."""
    v = route(ident(is_carrier=True), query(), [], facts(), NOW)
    assert (v.code, v.reason) == (404, "Not Found")


def test_rule_whose_transform_breaks_the_number_is_skipped() -> None:
    """A rule whose transform leaves no valid number is skipped and explained; the next
    rule still routes."""
    v = route_with(
        rule("bad", 1, "lcr", transform_rules={"strip": 20}),
        rule("good", 2, "forward", "sip:backup.example.net"),
    )
    assert [leg.uri for leg in v.legs] == ["sip:12125551234@backup.example.net"]
    assert v.explain["transform_invalid"] == ["bad"]
