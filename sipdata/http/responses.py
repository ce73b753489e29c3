"""JSON responses and the one error shape every endpoint uses."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from sipdata.errors import Overloaded, RateLimited, SipdataError, Unavailable


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, default=str), status=status, content_type="application/json"
    )


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The stable error shape: {"error": {"code", "message", "field"}}."""
    return {"error": {"code": code, "message": message, "field": field}}


def error_body_of(exc: SipdataError) -> dict[str, Any]:
    body = error_body(exc.code, exc.message, exc.field)
    if isinstance(exc, Unavailable):
        # Kamailio can read a verdict even from a degraded answer: 503, never 401/403.
        body.update(verdict="reject", code=503, reason="Service Unavailable", degraded=True)
    return body


# A shed decision says when to come back: the one 503 with Retry-After, which the
# edge reads as "sipdata is shedding" (kamailio/sipdata-invite.cfg, EDGE_SHED).
SHED_HEADERS = {"Retry-After": "1"}


def error_response(exc: SipdataError) -> web.Response:
    response = json_response(error_body_of(exc), status=exc.status)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, Overloaded):
        response.headers.update(SHED_HEADERS)
    return response
