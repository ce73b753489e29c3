"""Every lookup endpoint against real Redis + PostgreSQL with the demo data warmed."""

from __future__ import annotations

from typing import Any

import pytest

from sipdata.db.provision import demo_id
from sipdata.decide import digest

from .conftest import Api

pytestmark = pytest.mark.usefixtures("warm")

ACME = demo_id("org:acme")
ALPHA, BRAVO, CHARLIE = (demo_id(f"org:{c}") for c in ("alpha", "bravo", "charlie"))


async def test_credentials_return_both_ha1_and_the_requested_one(api: Api) -> None:
    """/v1/credentials gives the HA1 of the asked algorithm and both stored HA1s, never the
    password."""
    status, body = await api.get("/v1/credentials", username="acme-pbx", algorithm="SHA-256")
    assert status == 200 and body["verdict"] == "ok" and body["source"] == "generation"
    assert body["ha1"] == digest.ha1("SHA-256", "acme-pbx", "sipdata.local", "acme-secret")
    assert body["ha1_md5"] == digest.ha1("MD5", "acme-pbx", "sipdata.local", "acme-secret")
    assert body["trunk"]["trunk_id"] == demo_id("trunk:acme-pbx")
    assert "acme-secret" not in str(body)


@pytest.mark.parametrize(
    ("username", "reason"),
    [("initech-pbx", "Account Suspended"), ("nobody", "Forbidden")],
)
async def test_credentials_refused_without_ha1(api: Api, username: str, reason: str) -> None:
    """A suspended or unknown user is refused 403 and gets no HA1."""
    status, body = await api.get("/v1/credentials", username=username)
    assert status == 200
    assert (body["verdict"], body["code"], body["reason"]) == ("reject", 403, reason)
    assert "ha1" not in body and "ha1_md5" not in body


async def test_acl_most_specific_network_and_mapped_ipv6(api: Api) -> None:
    """/v1/acl answers the most specific network holding the address, IPv4-mapped and IPv6 alike."""
    status, body = await api.get("/v1/acl", ip="::ffff:127.0.1.200")
    assert status == 200 and body["network"] == "127.0.1.0/24"
    assert body["trunk"]["trunk_id"] == demo_id("trunk:globex-ip")
    _, v6 = await api.get("/v1/acl", ip="2001:db8:20:ffff::1")
    assert v6["network"] == "2001:db8:20::/48"
    _, none = await api.get("/v1/acl", ip="198.51.100.1")
    assert none["found"] is False


async def test_did_lookup_reports_registration_state(api: Api) -> None:
    """/v1/did canonicalises the number and says whether its trunk can take a call now."""
    status, body = await api.get("/v1/did", number="+1 212 555 0100")
    assert status == 200 and body["found"] and body["number"] == "12125550100"
    assert body["trunk"]["name"] == "acme-pbx" and body["routable"] is False
    _, static = await api.get("/v1/did", number="12125550101")
    assert static["routable"] is True


async def test_lcr_orders_carriers_by_their_own_longest_prefix(api: Api) -> None:
    """/v1/lcr ranks carriers each by its own longest matching prefix, with its gateways."""
    status, body = await api.get("/v1/lcr", number="12125551234")
    assert status == 200 and body["prefix"] == "12125"  # compiled from Charlie's future row
    assert [o["carrier_id"] for o in body["offers"]] == [BRAVO, CHARLIE, ALPHA]
    assert [o["prefix"] for o in body["offers"]] == ["1", "1", "1212"]
    assert body["offers"][0]["gateways"] == ["127.0.0.102"]


async def test_custom_rules_lookup(api: Api) -> None:
    """/v1/routes/custom lists the org's rules that match the number."""
    status, body = await api.get("/v1/routes/custom", org_id=ACME, number="19005550000")
    assert status == 200 and [m["name"] for m in body["matched"]] == ["acme-premium"]


async def test_decide_ip_trunk_routes_by_lcr_in_rtjson(api: Api) -> None:
    """An IP trunk's INVITE decision routes by LCR, cheapest first, in rtjson."""
    body = await api.decide(source_ip="127.0.0.10", to="+12125551234", **{"from": "15550001111"})
    assert body["verdict"] == "route" and body["caller"]["identified_by"] == "ip"
    assert [r["uri"] for r in body["routing"]["routes"]] == [
        "sip:12125551234@127.0.0.102",
        "sip:12125551234@127.0.0.103",
        "sip:12125551234@127.0.0.101",
    ]
    assert body["explain"]["sources"]["acl"] == "generation"
    assert body["call_id"] == "test-call"


async def test_decide_accepts_post_json_like_get(api: Api) -> None:
    """The decision takes a POSTed JSON body as it takes a query string."""
    status, body = await api.post(
        "/v1/decide/invite", {"source_ip": "127.0.0.10", "to": "12125551234", "call_id": "post-1"}
    )
    assert status == 200 and body["verdict"] == "route" and body["call_id"] == "post-1"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"source_ip": "198.51.100.7"}, ("challenge", 407)),
        ({"source_ip": "198.51.100.7", "auth_user": "nobody"}, ("reject", 403)),
        ({"source_ip": "127.0.0.11"}, ("reject", 403)),  # suspended trunk
        ({"source_ip": "198.51.100.7", "auth_user": "initech-pbx"}, ("reject", 403)),
        ({"source_ip": "198.51.100.7", "auth_user": "globex-sip"}, ("reject", 403)),  # not 127/8
        ({"source_ip": "127.0.0.10", "to": "19005550000"}, ("reject", 403)),  # rule
        ({"source_ip": "127.0.0.10", "to": "9999"}, ("reject", 404)),  # no route
        ({"source_ip": "127.0.0.101", "to": "12125550100"}, ("reject", 480)),  # not registered
        ({"source_ip": "127.0.0.101", "to": "12125550199"}, ("reject", 404)),  # unassigned DID
        ({"source_ip": "127.0.0.101", "to": "12125550101"}, ("route", 200)),  # static trunk
        (
            {"source_ip": "127.0.0.50", "auth_user": "globex-sip", "auth_algorithm": "SHA-256"},
            ("route", 200),
        ),
    ],
)
async def test_decide_verdicts(api: Api, params: dict[str, str], expected: tuple) -> None:
    """Each kind of caller and number gets its documented verdict, and a reject never
    carries credentials."""
    params.setdefault("to", "12125551234")
    body = await api.decide(**params)
    assert (body["verdict"], body["code"]) == expected
    if expected[0] != "route":
        assert "routing" not in body
    if params.get("auth_user") and expected[0] == "reject":
        assert "auth" not in body  # never credentials with a reject


async def test_decide_digest_caller_gets_ha1_for_its_algorithm(api: Api) -> None:
    """A digest caller's route carries the HA1 for the algorithm it used, for Kamailio to verify."""
    body = await api.decide(
        source_ip="127.0.0.50",
        to="12125551234",
        auth_user="acme-pbx",
        auth_realm="sipdata.local",
        auth_algorithm="SHA-256",
    )
    assert body["auth"] == {
        "ha1": digest.ha1("SHA-256", "acme-pbx", "sipdata.local", "acme-secret"),
        "algorithm": "SHA-256",
        "realm": "sipdata.local",
    }


async def test_decide_rule_transform_then_lcr(api: Api) -> None:
    """A rule's transform rewrites the number before LCR picks the carriers."""
    body = await api.decide(source_ip="127.0.1.9", to="02071234567")
    assert body["legs"][0]["uri"].startswith("sip:442071234567@")
    assert body["legs"][0]["rule_id"] == demo_id("rule:globex-uk-national")


async def test_decide_weighted_split_is_stable_per_call(api: Api) -> None:
    """A weighted split sends calls to both targets, each Call-ID always to the same one."""
    first = await api.decide(source_ip="127.0.1.9", to="18005551234", call_id="split-1")
    again = await api.decide(source_ip="127.0.1.9", to="18005551234", call_id="split-1")
    assert first["routing"] == again["routing"]
    seen = set()
    for i in range(40):
        body = await api.decide(source_ip="127.0.1.9", to="18005551234", call_id=f"s{i}")
        seen.add(body["routing"]["routes"][0]["uri"])
    assert seen == {"sip:18005551234@127.0.0.101", "sip:18005551234@127.0.0.102"}


async def test_decide_did_delivered_to_registered_contact(api: Api, cache: Any) -> None:
    """A carrier's call to a DID goes to the trunk's registered contact via the address it
    registered from."""
    import orjson

    await cache.client.set(
        f"registration:{demo_id('trunk:acme-pbx')}",
        orjson.dumps(
            {
                "contact": "sip:acme@127.0.0.40:5070",
                "expires": 2_000_000_000,
                "user_agent": "pbx",
                "received": None,
            }
        ),
        ex=60,
    )
    body = await api.decide(source_ip="127.0.0.101", to="12125550100")
    assert body["verdict"] == "route"
    assert body["routing"]["routes"] == [{"uri": "sip:acme@127.0.0.40:5070"}]
