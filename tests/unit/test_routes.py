"""Destination URIs, trunk addresses and the rtjson document."""

import pytest

from sipdata.decide.models import Registration
from sipdata.decide.routes import (
    Leg,
    dedupe,
    forward_uri,
    request_uri,
    rtjson,
    trunk_address,
    trunk_leg,
)

from .factories import trunk


@pytest.mark.parametrize(
    ("proxy", "networks", "expected"),
    [
        ("gw.carrier.net:5080", ["10.0.0.1/32"], "gw.carrier.net:5080"),
        ("sip:gw.carrier.net;transport=tcp", [], "gw.carrier.net"),
        ("sip:user@gw.carrier.net", [], "gw.carrier.net"),
        (None, ["10.0.0.0/24", "10.0.0.9/32", "10.0.0.2/32"], "10.0.0.2"),
        (None, ["2001:db8::5/128"], "[2001:db8::5]"),
        (None, ["10.0.0.0/24"], None),  # a range is not an address
        ("  ", [], None),
    ],
)
def test_trunk_address_rules(proxy: str | None, networks: list[str], expected: str | None) -> None:
    """A trunk's static address is its outbound proxy, else its single /32 or /128 network,
    else none."""
    assert trunk_address(proxy, networks) == expected


def test_request_uri_carries_transport() -> None:
    """The Request-URI carries a transport parameter only when it is not UDP."""
    assert request_uri("1212", "h", "UDP") == "sip:1212@h"
    assert request_uri("1212", "h:5061", "tls") == "sip:1212@h:5061;transport=tls"


def test_forward_uri_adds_number_only_without_user() -> None:
    """A forward URI takes the number as its user only when it has none."""
    assert forward_uri("sip:ivr.example.net:5060", "1800") == "sip:1800@ivr.example.net:5060"
    assert forward_uri("sip:menu@ivr.example.net", "1800") == "sip:menu@ivr.example.net"


def test_registered_trunk_is_reached_at_contact_via_received() -> None:
    """A registered trunk is reached at its Contact via the address it registered from;
    unregistered, at its static address; with neither, not at all."""
    reg = Registration("sip:pbx@10.1.1.1:5060", 0, received="sip:203.0.113.7:40000")
    leg = trunk_leg(trunk(), reg, "1212", "did", None)
    assert leg is not None
    assert (leg.uri, leg.dst_uri) == ("sip:pbx@10.1.1.1:5060", "sip:203.0.113.7:40000")
    static = trunk_leg(trunk(), None, "1212", "did", None)
    assert static is not None and static.uri == "sip:1212@192.0.2.10"
    assert trunk_leg(trunk(address=None), None, "1212", "did", None) is None


def test_dedupe_keeps_first_and_rtjson_shape() -> None:
    """Repeated destinations keep the first; the document is rtjson's serial shape."""
    legs = dedupe([Leg("sip:a@x"), Leg("sip:b@x"), Leg("sip:a@x", carrier_id="later")])
    assert [leg.uri for leg in legs] == ["sip:a@x", "sip:b@x"]
    doc = rtjson([Leg("sip:a@x", dst_uri="sip:p")])
    assert doc == {
        "version": "1.0",
        "routing": "serial",
        "routes": [{"uri": "sip:a@x", "dst_uri": "sip:p"}],
    }


def test_trunk_record_reads_across_versions() -> None:
    """A trunk written by a newer warmer (unknown fields) or an older one (missing
    limits) still reads: processes of two versions share Redis during an upgrade."""
    from sipdata.decide.models import Trunk

    from .factories import trunk

    doc = trunk().to_json()
    newer = Trunk.from_json({**doc, "added_in_a_later_version": 1})
    assert newer == trunk()
    older = {k: v for k, v in doc.items() if k not in ("org_max_calls", "max_cps")}
    assert Trunk.from_json(older).max_cps == -1
