"""Destinations: SIP URIs for trunks, gateways and forwards, and the rtjson document.

How a trunk's static address is derived (used for carrier gateways and for
IP-authenticated customer trunks that do not register):
1. `sip_trunks.outbound_proxy` when set (`host`, `host:port`, or a sip: URI);
2. else the lowest single-host network (/32, /128) among the trunk's
   `trunk_acl` rows and `allowed_ips`, on the default port;
3. else none: the trunk is reachable only through its registration.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sipdata.decide.models import Registration, Trunk

_TRANSPORT_PARAM = {"UDP": "", "TCP": ";transport=tcp", "TLS": ";transport=tls"}


def trunk_address(outbound_proxy: str | None, networks: Iterable[str]) -> str | None:
    """The static host[:port] of a trunk, by the rules in this module's docstring."""
    if outbound_proxy and outbound_proxy.strip():
        text = outbound_proxy.strip()
        for scheme in ("sips:", "sip:"):
            if text.lower().startswith(scheme):
                text = text[len(scheme) :]
        return text.split(";", 1)[0].rsplit("@", 1)[-1] or None
    hosts = sorted(
        (net for net in map(ipaddress.ip_network, networks) if net.num_addresses == 1),
        key=lambda n: (n.version, n.network_address),
    )
    if not hosts:
        return None
    addr = hosts[0].network_address
    return f"[{addr}]" if addr.version == 6 else str(addr)


def request_uri(number: str, address: str, transport: str) -> str:
    return f"sip:{number}@{address}{_TRANSPORT_PARAM.get(transport.upper(), '')}"


def forward_uri(destination: str, number: str) -> str:
    """A forward rule's URI; one without a user part gets the (transformed) number."""
    scheme, _, rest = destination.partition(":")
    if "@" in rest.split(";", 1)[0]:
        return destination
    return f"{scheme}:{number}@{rest}"


@dataclass(frozen=True, slots=True)
class Leg:
    """One destination plus why it is there (never sent on the wire)."""

    uri: str
    dst_uri: str | None = None
    kind: str = "lcr"  # lcr | trunk | forward | did
    carrier_id: str | None = None
    trunk_id: str | None = None
    rate: str | None = None
    prefix: str | None = None
    rule_id: str | None = None

    def explain(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uri": self.uri, "kind": self.kind}
        for name in ("carrier_id", "trunk_id", "rate", "prefix", "rule_id"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def trunk_leg(
    trunk: Trunk, registration: Registration | None, number: str, kind: str, rule_id: str | None
) -> Leg | None:
    """A registered trunk is reached at its contact; otherwise at its static address."""
    if registration is not None:
        return Leg(
            uri=registration.contact,
            dst_uri=registration.received,
            kind=kind,
            trunk_id=trunk.id,
            rule_id=rule_id,
        )
    if trunk.address:
        return Leg(
            uri=request_uri(number, trunk.address, trunk.transport),
            kind=kind,
            trunk_id=trunk.id,
            rule_id=rule_id,
        )
    return None


def dedupe(legs: Iterable[Leg]) -> list[Leg]:
    """Keep the first leg per (uri, dst_uri): a failover never retries the same hop."""
    seen: set[tuple[str, str | None]] = set()
    out: list[Leg] = []
    for leg in legs:
        key = (leg.uri, leg.dst_uri)
        if key not in seen:
            seen.add(key)
            out.append(leg)
    return out


def rtjson(legs: Sequence[Leg]) -> dict[str, Any]:
    """The document `rtjson_init_routes()` takes: serial forking over the legs."""
    routes = []
    for leg in legs:
        route: dict[str, Any] = {"uri": leg.uri}
        if leg.dst_uri:
            route["dst_uri"] = leg.dst_uri
        routes.append(route)
    return {"version": "1.0", "routing": "serial", "routes": routes}
