"""Report endpoints for Kamailio (REGISTER bindings, dialog events) and the registration view."""

from __future__ import annotations

from aiohttp import web

from sipdata.decide import reports
from sipdata.http import params
from sipdata.http.handlers import MAX_BODY
from sipdata.http.responses import json_response
from sipdata.reports import Reports

REPORTS: web.AppKey[Reports] = web.AppKey("reports", Reports)


async def register(request: web.Request) -> web.Response:
    doc = await params.read(request, request.app[MAX_BODY])
    report = reports.registration_report(doc)
    return json_response(await request.app[REPORTS].register(report))


async def call_event(request: web.Request) -> web.Response:
    doc = await params.read(request, request.app[MAX_BODY])
    event = reports.call_event(doc)
    return json_response(await request.app[REPORTS].call_event(event), status=202)


async def registration(request: web.Request) -> web.Response:
    username = params.required(request.query, "username")
    return json_response(await request.app[REPORTS].registration(username))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/events/register", register),
        web.post("/v1/events/call", call_event),
        web.get("/v1/registration", registration, allow_head=False),
    ]
