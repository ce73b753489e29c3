"""The single lookups as answers (credentials, ACL, DID, LCR, custom routes): what
Kamailio's REGISTER and an operator's probe read, built from the same decide/ rules as
the INVITE decision."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sipdata.decide import acl, lcr
from sipdata.decide.breaker import Breaker, gateway_key
from sipdata.decide.invite import Verdict, check_credential, did_verdict, sole_ip_owner
from sipdata.decide.quality import Summary
from sipdata.decide.rules import ordered_matches
from sipdata.errors import CacheUnavailable
from sipdata.serving.decision import Service
from sipdata.serving.lookups import today


async def credentials(
    service: Service,
    username: str,
    realm: str | None,
    algorithm: str | None,
    source_ip: acl.IPAddress | None,
) -> dict[str, Any]:
    cred, source = await service.credential(username)
    body: dict[str, Any] = {"username": username, "found": cred is not None, "source": source}
    if cred is None:
        body.update(verdict="reject", code=403, reason="Forbidden")
        return body
    body["trunk"] = cred.trunk.public()
    checked = check_credential(cred, source_ip, realm, algorithm)
    if isinstance(checked, Verdict):
        body.update(verdict="reject", code=checked.code, reason=checked.reason)
        if "expected_realm" in checked.explain:
            body["realm"] = checked.explain["expected_realm"]
        return body
    body.update(
        verdict="ok",
        code=200,
        reason="OK",
        realm=checked.realm,
        algorithm=checked.algorithm,
        ha1=checked.ha1,
        ha1_md5=cred.ha1.md5,
        ha1_sha256=cred.ha1.sha256,
        networks=list(cred.trunk.networks),
    )
    return body


async def acl_owner(service: Service, ip: acl.IPAddress) -> dict[str, Any]:
    hit, source = await service.acl(ip)
    body: dict[str, Any] = {"ip": str(ip), "found": hit is not None, "source": source}
    if hit is not None:
        network, owners = hit
        trunk = sole_ip_owner(owners)
        body["network"] = network
        body["owners"] = [t.public() for t in owners]
        body["trunk"] = trunk.public() if trunk else None
        body["ambiguous"] = trunk is None and any(t.auth_type == "ip" for t in owners)
    return body


async def did(service: Service, number: str) -> dict[str, Any]:
    found, source = await service.did(number)
    body: dict[str, Any] = {"number": number, "found": found is not None, "source": source}
    if found is None:
        return body
    reg = None
    if found.trunk is not None:
        reg = (await service.registrations([found.trunk.id])).get(found.trunk.id)
    body.update(
        org_id=found.org_id,
        status=found.status,
        voice_enabled=found.voice_enabled,
        trunk=found.trunk.public() if found.trunk else None,
        registration=reg.to_json() if reg else None,
        routable=did_verdict(found, number, reg).verdict == "route",
    )
    return body


async def lcr_offers(service: Service, number: str, now: dt.datetime) -> dict[str, Any]:
    view = service.catalog.view  # the generation read is the one the answer names
    entry, source = await service.lcr_entry(number, today(now), view)
    offers = lcr.resolve(entry[1], today(now)) if entry else []
    carriers = await service.carriers(sorted({o.carrier_id for o in offers}), view)
    body: dict[str, Any] = {
        "number": number,
        "prefix": entry[0] if entry else None,
        "source": source,
        "generation": view.gen,
    }
    health = service.routing_health
    states: dict[str, Breaker] = {}
    by_carrier: dict[str, Summary] = {}
    by_prefix: dict[tuple[str, str], Summary] = {}
    try:
        states = await health.breakers()
        by_carrier, by_prefix = await health.summaries(
            [o.carrier_id for o in offers], [(o.carrier_id, o.prefix) for o in offers]
        )
    except CacheUnavailable:
        body["health"] = "unavailable"  # gateway states and quality live in Redis
    now_ms = int(now.timestamp() * 1000)

    def gateway(address: str) -> dict[str, Any]:
        b = states.get(gateway_key(address), Breaker())
        return {
            "address": address,
            "state": b.effective(now_ms, health.breaker_config),
            "failures": b.failures,
        }

    def offer(o: lcr.Offer) -> dict[str, Any]:
        carrier = carriers.get(o.carrier_id)
        out: dict[str, Any] = {
            "carrier_id": o.carrier_id,
            "carrier": carrier.name if carrier else None,
            "rate": str(o.rate),
            "priority": o.priority,
            "prefix": o.prefix,
            "from": o.effective.isoformat(),
            "gateways": [g.address for g in carrier.gateways] if carrier else [],
            "gateway_states": [gateway(g.address) for g in carrier.gateways] if carrier else [],
        }
        q = by_carrier.get(o.carrier_id)
        qp = by_prefix.get((o.carrier_id, o.prefix))
        out["quality"] = {
            "carrier": q.to_json() if q else None,
            "prefix": qp.to_json() if qp else None,
        }
        return out

    body["offers"] = [offer(o) for o in offers]
    return body


async def gateways(service: Service, now: dt.datetime) -> dict[str, Any]:
    """Every carrier gateway of the serving generation, for Kamailio's keepalive to
    probe (`uris`, comma-separated; `version` changes when the list does) and for an
    operator to read their breakers."""
    view = service.catalog.view
    health = service.routing_health
    states = await health.breakers()
    now_ms = int(now.timestamp() * 1000)
    rows: list[dict[str, Any]] = []
    for carrier in sorted(view.carriers.values(), key=lambda c: c.id):
        for gw in carrier.gateways:
            b = states.get(gateway_key(gw.address), Breaker())
            rows.append(
                {
                    "uri": probe_uri(gw.address, gw.transport),
                    "gateway": gateway_key(gw.address),
                    "carrier_id": carrier.id,
                    "trunk_id": gw.trunk_id,
                    "state": b.effective(now_ms, health.breaker_config),
                    "failures": b.failures,
                }
            )
    uris = sorted({str(r["uri"]) for r in rows})
    return {
        "generation": view.gen,
        "version": hashlib.sha256(",".join(uris).encode()).hexdigest()[:16],
        "count": len(uris),
        "uris": ",".join(uris),
        "gateways": rows,
    }


def probe_uri(address: str, transport: str) -> str:
    """The URI keepalive probes a gateway at (what its state reports name again)."""
    t = transport.upper()
    return f"sip:{address}" + {"TCP": ";transport=tcp", "TLS": ";transport=tls"}.get(t, "")


async def custom_routes(
    service: Service,
    org_id: str,
    number: str,
    now: dt.datetime,
    *,
    call_id: str,
    trunk_id: str | None,
) -> dict[str, Any]:
    org, source = await service.rules(org_id)
    matched = ordered_matches(org.rules, number, now, call_id, trunk_id)
    return {
        "org_id": org_id,
        "number": number,
        "source": source,
        "rules": len(org.rules),
        "matched": [
            {
                "rule_id": r.id,
                "name": r.name,
                "priority": r.priority,
                "weight": r.weight,
                "action": r.action,
                "destination": r.destination,
                "number": r.transform.apply(number),
            }
            for r in matched
        ],
    }
