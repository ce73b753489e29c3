"""Frozen facts the decisions read: trunks, credentials, DIDs, carriers, registrations.

Each has a compact JSON form, the shape stored in Redis by the warmer and the
read-through cache, so the same object round-trips cache and database reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from sipdata.decide.digest import StoredHA1

ACTIVE = "active"


def is_uuid(text: str) -> bool:
    """Whether `text` is a UUID (ids in the database are; rule targets must be)."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Trunk:
    id: str
    org_id: str
    name: str
    status: str
    org_status: str
    auth_type: str  # "ip" (source address) or "digest"
    is_carrier: bool  # the owning org has a rate deck: its trunks are gateways
    address: str | None  # static target host[:port], see routes.trunk_address
    transport: str
    networks: tuple[str, ...]  # CIDRs from trunk_acl and allowed_ips
    # Admission limits; -1 = none. max_channels: sip_trunks.max_channels;
    # org_max_calls: organization_settings.max_concurrent_calls; max_cps: the
    # seed's rate:calls:{trunk_id}:max, from sip_trunks.metadata.max_cps or
    # organization_settings.rate_limits.calls_per_second.
    max_channels: int = -1
    org_max_calls: int = -1
    max_cps: int = -1
    # The org's carrier policy and money (organization_settings.features,
    # billing_accounts; docs/routing-health.md): routing_strategy (cost,
    # quality_floor, quality_weighted), sell_rate (per minute; None = no margin
    # rule), credit (calls hold credit from the org's balance).
    routing_strategy: str = "cost"
    sell_rate: str | None = None
    credit: bool = False

    @property
    def usable(self) -> bool:
        return self.status == ACTIVE and self.org_status == ACTIVE

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "networks": list(self.networks)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Trunk:
        # Fields this version does not know are ignored and missing ones take their
        # defaults: old and new processes share Redis during a rolling upgrade.
        known = {k: v for k, v in doc.items() if k in _TRUNK_FIELDS}
        return cls(**{**known, "networks": tuple(doc["networks"])})

    def public(self) -> dict[str, Any]:
        """What a lookup reply tells about the trunk."""
        return {
            "trunk_id": self.id,
            "org_id": self.org_id,
            "name": self.name,
            "status": self.status,
            "org_status": self.org_status,
            "auth_type": self.auth_type,
            "is_carrier": self.is_carrier,
        }


_TRUNK_FIELDS = frozenset(f.name for f in fields(Trunk))


@dataclass(frozen=True, slots=True)
class Credential:
    username: str
    trunk: Trunk
    ha1: StoredHA1

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "trunk": self.trunk.to_json(),
            "md5": self.ha1.md5,
            "sha256": self.ha1.sha256,
            "realm": self.ha1.realm,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Credential:
        return cls(
            username=doc["username"],
            trunk=Trunk.from_json(doc["trunk"]),
            ha1=StoredHA1(md5=doc["md5"], sha256=doc["sha256"], realm=doc["realm"]),
        )


@dataclass(frozen=True, slots=True)
class Did:
    number: str
    org_id: str | None
    status: str
    voice_enabled: bool
    trunk: Trunk | None

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "org_id": self.org_id,
            "status": self.status,
            "voice_enabled": self.voice_enabled,
            "trunk": self.trunk.to_json() if self.trunk else None,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Did:
        trunk = doc.get("trunk")
        return cls(
            number=doc["number"],
            org_id=doc.get("org_id"),
            status=doc["status"],
            voice_enabled=bool(doc["voice_enabled"]),
            trunk=Trunk.from_json(trunk) if trunk else None,
        )


@dataclass(frozen=True, slots=True)
class Gateway:
    trunk_id: str
    address: str
    transport: str


@dataclass(frozen=True, slots=True)
class Carrier:
    id: str
    name: str
    gateways: tuple[Gateway, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "gateways": [
                {"trunk_id": g.trunk_id, "address": g.address, "transport": g.transport}
                for g in self.gateways
            ],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Carrier:
        return cls(
            id=doc["id"],
            name=doc["name"],
            gateways=tuple(
                Gateway(g["trunk_id"], g["address"], g.get("transport") or "UDP")
                for g in doc.get("gateways") or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class Registration:
    """The seed's registration:{trunk_id} value: where a registered trunk is reached."""

    contact: str
    expires: int  # unix seconds
    user_agent: str | None = None
    received: str | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Registration:
        return cls(
            contact=doc["contact"],
            expires=int(doc.get("expires") or 0),
            user_agent=doc.get("user_agent"),
            received=doc.get("received") or None,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# An ACL entry: a network and the trunks whose ACL holds it. The read-through
# entry (key = an address) stores {network, owners}; the generation hash (field =
# the network) stores the owners alone, the shape the previous release reads, so a
# rolling upgrade can run old servers against a new warmer. One decoder reads both.
AclHit = tuple[str, Sequence[Trunk]]


def acl_entry_to_json(network: str, owners: Sequence[Trunk]) -> dict[str, Any]:
    return {"network": network, "owners": [t.to_json() for t in owners]}


def acl_entry_from_json(doc: Any, network: str) -> AclHit:
    """`network` is the probe that found it (the generation's field)."""
    if isinstance(doc, list):
        return network, tuple(Trunk.from_json(t) for t in doc)
    return str(doc["network"]), tuple(Trunk.from_json(t) for t in doc["owners"])
