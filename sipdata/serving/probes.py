"""The single lookups as answers (credentials, ACL, DID, LCR, custom routes): what
Kamailio's REGISTER and an operator's probe read, built from the same decide/ rules as
the INVITE decision."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sipdata.decide import acl, lcr
from sipdata.decide.invite import Verdict, check_credential, did_verdict, sole_ip_owner
from sipdata.decide.rules import ordered_matches
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
    return {
        "number": number,
        "prefix": entry[0] if entry else None,
        "source": source,
        "generation": view.gen,
        "offers": [
            {
                "carrier_id": o.carrier_id,
                "carrier": carriers[o.carrier_id].name if o.carrier_id in carriers else None,
                "rate": str(o.rate),
                "priority": o.priority,
                "prefix": o.prefix,
                "from": o.effective.isoformat(),
                "gateways": [g.address for g in carriers[o.carrier_id].gateways]
                if o.carrier_id in carriers
                else [],
            }
            for o in offers
        ],
    }


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
