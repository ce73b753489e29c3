"""Report endpoints for Kamailio (REGISTER bindings, dialog events) and the registration view."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sipdata.decide import reports
from sipdata.errors import InputError
from sipdata.http import params
from sipdata.http.handlers import MAX_BODY
from sipdata.http.responses import json_response
from sipdata.serving.callbacks import Reports

REPORTS: web.AppKey[Reports] = web.AppKey("reports", Reports)
MAX_BATCH_BODY: web.AppKey[int] = web.AppKey("max_batch_body", int)


async def register(request: web.Request) -> web.Response:
    doc = await params.read(request, request.app[MAX_BODY])
    report = reports.registration_report(doc)
    return json_response(await request.app[REPORTS].register(report))


async def call_event(request: web.Request) -> web.Response:
    doc = await params.read(request, request.app[MAX_BODY])
    event = reports.call_event(doc)
    return json_response(await request.app[REPORTS].call_event(event), status=202)


async def call_events(request: web.Request) -> web.Response:
    """A batch of call reports, each stored or refused on its own: `done` lists the
    report keys Kamailio may drop (stored, or malformed and never storable), `kept`
    those to send again later. A batch that is not a list of reports is a 400 and
    stores nothing; with Redis and the database away, a 503 stores nothing."""
    doc = await params.read(request, request.app[MAX_BATCH_BODY])
    items = reports.call_batch(doc)
    valid: list[reports.CallEvent] = []
    valid_keys: list[str] = []
    refused: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        key: str | None = None
        try:
            doc = reports.batch_item(item, i)
            key = reports.report_key(doc, i)
            valid.append(reports.call_event(doc))
            valid_keys.append(key)
        except InputError as exc:
            refused.append(
                {"index": i, "report_key": key, "error": exc.message, "field": exc.field}
            )
    stored = await request.app[REPORTS].call_events(valid) if valid else []
    pairs = list(zip(valid_keys, stored, strict=True))
    body = {
        "stored": sum(s is not None for s in stored),
        "done": [k for k, s in pairs if s is not None]
        + [r["report_key"] for r in refused if r["report_key"]],
        "kept": [k for k, s in pairs if s is None],
        "refused": refused,
    }
    return json_response(body, status=202)


async def gateway(request: web.Request) -> web.Response:
    """Kamailio's OPTIONS keepalive saw a carrier gateway go down or come back up."""
    doc = await params.read(request, request.app[MAX_BODY])
    uri, event = reports.gateway_report(doc)
    return json_response(await request.app[REPORTS].gateway_probe(uri, event))


async def registration(request: web.Request) -> web.Response:
    username = params.required(request.query, "username")
    return json_response(await request.app[REPORTS].registration(username))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/events/register", register),
        web.post("/v1/events/call", call_event),
        web.post("/v1/events/calls", call_events),
        web.post("/v1/events/gateway", gateway),
        web.get("/v1/registration", registration, allow_head=False),
    ]
