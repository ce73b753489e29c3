"""Lookup handlers for Kamailio: parse -> service -> JSON. Each accepts GET query or POST JSON."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import structlog
from aiohttp import web

from sipdata.decide.digest import normalise_algorithm
from sipdata.decide.invite import InviteQuery
from sipdata.decide.numbers import canonical_or_none
from sipdata.decide.reports import MAX_CALL_ID
from sipdata.errors import InputError
from sipdata.http import params
from sipdata.http.responses import json_response
from sipdata.serving import probes
from sipdata.serving.decision import Service

SERVICE: web.AppKey[Service] = web.AppKey("service", Service)
MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _params(request: web.Request) -> Mapping[str, object]:
    return await params.read(request, request.app[MAX_BODY])


async def credentials(request: web.Request) -> web.Response:
    p = await _params(request)
    username = params.required(p, "username")
    realm = params.text(p, "realm", required=False)
    algorithm = params.text(p, "algorithm", required=False)
    if normalise_algorithm(algorithm) is None:
        raise InputError("algorithm must be MD5 or SHA-256", field="algorithm")
    source_ip = params.ip(p, "source_ip") if p.get("source_ip") else None
    service = request.app[SERVICE]
    return json_response(await probes.credentials(service, username, realm, algorithm, source_ip))


async def acl_lookup(request: web.Request) -> web.Response:
    p = await _params(request)
    return json_response(await probes.acl_owner(request.app[SERVICE], params.ip(p, "ip")))


async def did_lookup(request: web.Request) -> web.Response:
    p = await _params(request)
    return json_response(await probes.did(request.app[SERVICE], params.number(p, "number")))


async def lcr_lookup(request: web.Request) -> web.Response:
    p = await _params(request)
    number = params.number(p, "number")
    return json_response(await probes.lcr_offers(request.app[SERVICE], number, _now()))


async def gateways(request: web.Request) -> web.Response:
    return json_response(await probes.gateways(request.app[SERVICE], _now()))


async def custom_lookup(request: web.Request) -> web.Response:
    p = await _params(request)
    org_id = params.uuid_text(p, "org_id")
    number = params.number(p, "number")
    call_id = params.text(p, "call_id", required=False) or ""
    trunk_id = params.text(p, "trunk_id", required=False)
    service = request.app[SERVICE]
    return json_response(
        await probes.custom_routes(
            service, org_id, number, _now(), call_id=call_id, trunk_id=trunk_id
        )
    )


async def decide_invite(request: web.Request) -> web.Response:
    p = await _params(request)
    call_id = params.required(p, "call_id", limit=MAX_CALL_ID)
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
    out.append(web.get("/v1/gateways", gateways, allow_head=False))
    return out
