"""Run the app until SIGTERM/SIGINT, with aiohttp's own refusals in the one JSON error shape.

aiohttp answers a request its parser refuses (a request line or header over its
limits, malformed HTTP) itself, before any middleware: a text/plain 400 that
echoes the request, and a traceback in the log each time. aiohttp has no hook
for that answer (aio-libs/aiohttp#3287), so the server's connection handler is
a subclass whose `handle_error` answers like every endpoint and logs one line.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from http import HTTPStatus

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from sipdata.http.responses import error_body, json_response

log = structlog.get_logger(__name__)


def refusal(status: int, exc: BaseException | None) -> tuple[int, str, str]:
    """(HTTP status, error code, message) for a request the server refused itself. The
    message never quotes the request: it may be 20 KB of anything."""
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else ""
        limit = exc.args[1] if len(exc.args) > 1 else "the"
        if line[:1] in (b"/", "/"):  # the request target (bytes or text, by parser)
            return 414, "uri_too_long", f"the request target is over {limit} bytes"
        return 431, "header_too_large", f"a request header is over {limit} bytes"
    if isinstance(exc, BadHttpMessage):
        return 400, "bad_request", f"malformed HTTP request ({exc.__class__.__name__})"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return status, phrase.lower().replace(" ", "_"), phrase


class JsonErrors(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # an answer is under way: only closing is left
            return super().handle_error(request, status, exc, message)
        status, code, text = refusal(status, exc)
        if status >= 500:
            log.error("request failed", status=status, error=repr(exc), exc_info=exc)
        else:  # a client's mistake: one line, no traceback
            log.warning("request refused", status=status, code=code, remote=request.remote)
        response = json_response(error_body(code, text), status=status)
        response.force_close()
        return response


class JsonErrorsServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonErrors(self, loop=self._loop, **self._kwargs)


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    keepalive_timeout: float,
    access_log: logging.Logger | None,
    reuse_port: bool = False,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve `app` on host:port until SIGTERM or SIGINT (or `stop` is set), then shut
    down cleanly."""
    runner = web.AppRunner(
        app, handle_signals=False, keepalive_timeout=keepalive_timeout, access_log=access_log
    )
    await runner.setup()
    assert runner.server is not None
    runner.server.__class__ = JsonErrorsServer  # same state, our connection handler
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # A listen backlog well above aiohttp's 128: a burst of new connections
        # past it waits on SYN retransmits (1 s, 3 s, 7 s...) before any of it is
        # even shed (bench/burst_once.py: 1,500 at once, some answered after 20 s).
        # The kernel caps it at net.core.somaxconn.
        await web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=4096).start()
        log.info("serving", host=host, port=port)
        await stop.wait()
    finally:
        await runner.cleanup()
