"""The one middleware: shared secret, errors to one JSON shape, metrics per endpoint, Call-ID
in logs."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from sipdata.errors import (
    DeadlineExceeded,
    Overloaded,
    SipdataError,
    Unauthorized,
    Unavailable,
)
from sipdata.http.handlers import SERVICE
from sipdata.http.responses import (
    SHED_HEADERS,
    error_body,
    error_body_of,
    error_response,
    json_response,
)
from sipdata.metrics import Metrics
from sipdata.serving.decision import OVERLOADED

log = structlog.get_logger(__name__)
# Kamailio files a report (or a batch of them) under these until it is
# acknowledged, and tells its health probes apart by X-Edge-Node; the answer,
# handled in another of its processes, names which.
ECHOED = ("X-Report-Key", "X-Report-Batch", "X-Edge-Node")
DECIDE_PATH = "/v1/decide/invite"
ADMIN = "/v1/admin/"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _authorised(request: web.Request, expected: bytes) -> bool:
    """Operational endpoints (/health, /ready, /metrics) stay open for probes; the admin
    API takes API keys instead (http/admin_auth.authenticated), never this secret."""
    if not expected or not request.path.startswith("/v1/") or request.path.startswith(ADMIN):
        return True
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme == "Bearer" and hmac.compare_digest(token.encode(), expected)


def make_middleware(metrics: Metrics, api_token: str = "") -> Middleware:
    expected = api_token.encode()
    shed_body = orjson.dumps(error_body_of(Overloaded(OVERLOADED)))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            request.path == DECIDE_PATH
            and _authorised(request, expected)
            and request.app[SERVICE].full()
        ):
            # Under a burst most requests end here: the least work that answers one
            # (no exception, no logging context, a body encoded once).
            metrics.inc(metrics.degraded, Overloaded.code)
            metrics.inc(metrics.requests, DECIDE_PATH, "503")
            return web.Response(
                body=shed_body,
                status=Overloaded.status,
                content_type="application/json",
                headers=SHED_HEADERS,
            )
        resource = request.match_info.route.resource
        endpoint = resource.canonical if resource is not None else "unmatched"
        started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        call_id = request.query.get("call_id") or request.headers.get("X-Call-ID")
        if call_id:
            structlog.contextvars.bind_contextvars(call_id=call_id[:128])
        try:
            if not _authorised(request, expected):
                raise Unauthorized("missing or wrong bearer token")
            response = await handler(request)
        except TimeoutError:
            metrics.degraded.labels("deadline").inc()
            response = error_response(DeadlineExceeded("no answer within the decision deadline"))
        except SipdataError as exc:
            if isinstance(exc, Unavailable):
                metrics.inc(metrics.degraded, exc.code)
                if not isinstance(exc, Overloaded):  # a line per shed request would add load
                    log.warning("unavailable", endpoint=endpoint, error=exc.message)
            response = error_response(exc)
        except web.HTTPException as exc:
            code = exc.reason.lower().replace(" ", "_")
            response = json_response(error_body(code, exc.reason), status=exc.status)
        except Exception:
            log.exception("unhandled", endpoint=endpoint)
            response = json_response(error_body("internal", "internal error"), status=500)
        for name in ECHOED:
            value = request.headers.get(name)
            if value is not None:
                response.headers[name] = value
        metrics.inc(metrics.requests, endpoint, str(response.status))
        metrics.observe(metrics.latency, time.perf_counter() - started, endpoint)
        return response

    return middleware
