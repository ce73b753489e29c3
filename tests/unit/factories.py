"""Small builders of frozen decision inputs for the unit tables."""

import datetime as dt
from decimal import Decimal
from typing import Any

from sipdata.decide import digest
from sipdata.decide.acl import canonical_ip
from sipdata.decide.invite import InviteQuery
from sipdata.decide.lcr import RateRow
from sipdata.decide.models import Carrier, Credential, Did, Gateway, Trunk

REALM = "sipdata.local"


def trunk(id: str = "t-cust", **over: Any) -> Trunk:
    base: dict[str, Any] = dict(
        id=id,
        org_id="o-cust",
        name=id,
        status="active",
        org_status="active",
        auth_type="ip",
        is_carrier=False,
        address="192.0.2.10",
        transport="UDP",
        networks=("192.0.2.10/32",),
        max_channels=10,
    )
    base.update(over)
    return Trunk(**base)


def credential(password: str = "pw", **over: Any) -> Credential:
    t = trunk("t-digest", **{"auth_type": "digest", "networks": (), "address": None, **over})
    stored = digest.parse(digest.encode("alice", REALM, password))
    assert stored is not None
    return Credential("alice", t, stored)


def query(ip: str = "192.0.2.10", to: str = "12125551234", **over: Any) -> InviteQuery:
    base: dict[str, Any] = dict(
        source_ip=canonical_ip(ip), to=to, from_number="15550001111", call_id="c1"
    )
    base.update(over)
    return InviteQuery(**base)


def carrier(cid: str, address: str) -> Carrier:
    return Carrier(cid, cid.upper(), (Gateway(f"gw-{cid}", address, "UDP"),))


def rate(cid: str, prefix: str, value: str) -> RateRow:
    return RateRow(cid, prefix, Decimal(value), 100, dt.date(2025, 1, 1), None)


def did(number: str = "12125550100", **over: Any) -> Did:
    base: dict[str, Any] = dict(
        number=number,
        org_id="o-cust",
        status="active",
        voice_enabled=True,
        trunk=trunk("t-pbx", auth_type="digest", address=None, networks=()),
    )
    base.update(over)
    return Did(**base)
