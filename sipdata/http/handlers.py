"""Lookup handlers for Kamailio: parse -> service -> JSON. Each accepts GET query or POST JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog
from aiohttp import web

from sipdata.decide import lcr
from sipdata.decide.digest import normalise_algorithm
from sipdata.decide.invite import InviteQuery, Verdict, check_credential
from sipdata.decide.numbers import canonical_or_none
from sipdata.decide.reports import MAX_CALL_ID
from sipdata.decide.rules import ordered_matches
from sipdata.errors import InputError
from sipdata.http import params
from sipdata.http.responses import json_response
from sipdata.serving.decision import Service
from sipdata.serving.lookups import today

SERVICE: web.AppKey[Service] = web.AppKey("service", Service)
MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _params(request: web.Request) -> Any:
    return await params.read(request, request.app[MAX_BODY])


async def credentials(request: web.Request) -> web.Response:
    p = await _params(request)
    username = params.required(p, "username")
    realm = params.text(p, "realm", required=False)
    algorithm = params.text(p, "algorithm", required=False)
    if normalise_algorithm(algorithm) is None:
        raise InputError("algorithm must be MD5 or SHA-256", field="algorithm")
    source_ip = params.ip(p, "source_ip") if p.get("source_ip") else None
    cred, source = await request.app[SERVICE].credential(username)
    body: dict[str, Any] = {"username": username, "found": cred is not None, "source": source}
    if cred is None:
        body.update(verdict="reject", code=403, reason="Forbidden")
        return json_response(body)
    body["trunk"] = cred.trunk.public()
    checked = check_credential(cred, source_ip, realm, algorithm)
    if isinstance(checked, Verdict):
        body.update(verdict="reject", code=checked.code, reason=checked.reason)
        if "expected_realm" in checked.explain:
            body["realm"] = checked.explain["expected_realm"]
        return json_response(body)
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
    return json_response(body)


async def acl_lookup(request: web.Request) -> web.Response:
    p = await _params(request)
    ip = params.ip(p, "ip")
    hit, source = await request.app[SERVICE].acl(ip)
    body: dict[str, Any] = {"ip": str(ip), "found": hit is not None, "source": source}
    if hit is not None:
        network, owners = hit
        ip_owners = [t for t in owners if t.auth_type == "ip"]
        body["network"] = network
        body["owners"] = [t.public() for t in owners]
        body["trunk"] = ip_owners[0].public() if len(ip_owners) == 1 else None
        body["ambiguous"] = len(ip_owners) > 1
    return json_response(body)


async def did_lookup(request: web.Request) -> web.Response:
    p = await _params(request)
    number = params.number(p, "number")
    service = request.app[SERVICE]
    did, source = await service.did(number)
    body: dict[str, Any] = {"number": number, "found": did is not None, "source": source}
    if did is None:
        return json_response(body)
    reg = None
    if did.trunk is not None:
        reg = (await service.registrations([did.trunk.id])).get(did.trunk.id)
    body.update(
        org_id=did.org_id,
        status=did.status,
        voice_enabled=did.voice_enabled,
        trunk=did.trunk.public() if did.trunk else None,
        registration=reg.to_json() if reg else None,
        routable=did.status == "active"
        and did.voice_enabled
        and did.trunk is not None
        and did.trunk.usable
        and (reg is not None or did.trunk.address is not None),
    )
    return json_response(body)


async def lcr_lookup(request: web.Request) -> web.Response:
    p = await _params(request)
    number = params.number(p, "number")
    service = request.app[SERVICE]
    now = _now()
    entry, source = await service.lcr_entry(number, today(now))
    offers = lcr.resolve(entry[1], today(now)) if entry else []
    view = service.catalog.view
    carriers = await service.carriers(sorted({o.carrier_id for o in offers}), view)
    return json_response(
        {
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
    )


async def custom_lookup(request: web.Request) -> web.Response:
    p = await _params(request)
    org_id = params.uuid_text(p, "org_id")
    number = params.number(p, "number")
    call_id = params.text(p, "call_id", required=False) or ""
    trunk_id = params.text(p, "trunk_id", required=False)
    rules, _targets, source = await request.app[SERVICE].rules(org_id)
    matched = ordered_matches(rules, number, _now(), call_id, trunk_id)
    return json_response(
        {
            "org_id": org_id,
            "number": number,
            "source": source,
            "rules": len(rules),
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
    )


async def decide_invite(request: web.Request) -> web.Response:
    p = await _params(request)
    call_id = params.text(p, "call_id", limit=MAX_CALL_ID) or ""
    structlog.contextvars.bind_contextvars(call_id=call_id[:128])
    algorithm = params.text(p, "auth_algorithm", required=False)
    query = InviteQuery(
        source_ip=params.ip(p, "source_ip"),
        to=params.number(p, "to"),
        from_number=canonical_or_none(params.text(p, "from", required=False)),
        call_id=call_id,
        auth_user=params.text(p, "auth_user", required=False),
        auth_realm=params.text(p, "auth_realm", required=False),
        auth_algorithm=algorithm,
        dry_run=params.flag(p, "dry_run"),
        brief=params.flag(p, "brief"),
    )
    return json_response(await request.app[SERVICE].decide_invite(query, _now()))


def routes() -> list[web.RouteDef]:
    table = [
        ("/v1/credentials", credentials),
        ("/v1/acl", acl_lookup),
        ("/v1/did", did_lookup),
        ("/v1/lcr", lcr_lookup),
        ("/v1/routes/custom", custom_lookup),
        ("/v1/decide/invite", decide_invite),
    ]
    out = []
    for path, handler in table:
        out.append(web.get(path, handler, allow_head=False))
        out.append(web.post(path, handler))
    return out
