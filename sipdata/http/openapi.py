"""GET /openapi.json: the document of every route (admin/openapi.py), built once."""

from __future__ import annotations

import orjson
from aiohttp import web

from sipdata.admin.openapi import document

_BODY = orjson.dumps(document())


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json")


def routes() -> list[web.RouteDef]:
    return [web.get("/openapi.json", openapi, allow_head=False)]
