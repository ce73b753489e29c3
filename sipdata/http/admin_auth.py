"""Who asks the admin API: the API key in `Authorization: Bearer`, checked before any
handler runs (serving/admin.py), and the scope each handler needs.

The decision endpoints' shared secret opens nothing here, and an admin key opens no
decision endpoint: a leaked admin key of one org cannot ask for another org's HA1.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from sipdata.admin import keys
from sipdata.errors import Forbidden, Unauthorized
from sipdata.serving.admin import Actor, AdminService

ADMIN: web.AppKey[AdminService] = web.AppKey("admin", AdminService)
PRINCIPAL: web.RequestKey[keys.Principal] = web.RequestKey("principal", keys.Principal)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def need(request: web.Request, resource: str, verb: str) -> keys.Principal:
    principal = request[PRINCIPAL]
    if not keys.allows(principal.scopes, resource, verb):
        raise Forbidden(f"this key lacks the scope {resource}:{verb}")
    return principal


def actor(request: web.Request, principal: keys.Principal) -> Actor:
    try:
        ip: str | None = str(ipaddress.ip_address(request.remote or ""))
    except ValueError:  # a Unix socket, or no peer
        ip = None
    return Actor(principal.key_id, principal.org_id, ip, request.headers.get("User-Agent"))


def authenticated(handler: Handler) -> Handler:
    """The handler, after the request's key is checked. A wrapper on the admin routes,
    not an app middleware: decisions, the hot path, pay nothing for the admin API."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token.strip():
            raise Unauthorized("an admin API key is required (Authorization: Bearer sdk_...)")
        request[PRINCIPAL] = await request.app[ADMIN].authenticate(token.strip())
        return await handler(request)

    return checked
