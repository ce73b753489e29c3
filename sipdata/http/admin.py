"""Admin API handlers: organizations, trunks, their ACL, API keys and the audit trail.

Each handler: the scope, the body checked whole (admin/validate.py), one call to the
service (serving/admin.py: one transaction with its audit row), the row with its ETag.
Decisions see a change through the change capture within the freshness bound.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from sipdata.admin import validate
from sipdata.errors import Forbidden, InputError, NotFound, PreconditionRequired
from sipdata.http import params
from sipdata.http.admin_auth import ADMIN, actor, need
from sipdata.http.handlers import MAX_BODY
from sipdata.http.responses import json_response
from sipdata.serving.admin import RESOURCES, etag

ID_FILTERS = ("org_id", "trunk_id", "api_key_id")


def _one(row: dict[str, Any], status: int = 200) -> web.Response:
    response = json_response(row, status=status)
    response.headers["ETag"] = etag(row)
    return response


def _if_match(request: web.Request) -> str:
    value = request.headers.get("If-Match", "").strip()
    if not value:
        raise PreconditionRequired("send If-Match with the ETag of the row you read")
    return value


def _id(request: web.Request, name: str = "id") -> str:
    return validate.check_uuid(request.match_info[name], name)


async def _body(request: web.Request) -> dict[str, Any]:
    return dict(await params.read(request, request.app[MAX_BODY]))


async def _list(request: web.Request, name: str, **fixed: str) -> web.Response:
    principal = need(request, name, "read")
    q, known = request.query, RESOURCES[name].filters
    for unknown in sorted(set(q) - {"cursor", "limit", *known}):
        raise InputError(
            f"unknown query parameter (known: cursor, limit, {', '.join(known)})", field=unknown
        )
    cursor = validate.check_uuid(q["cursor"], "cursor") if "cursor" in q else None
    filters = {k: q[k] for k in known if k in q}
    for k in ID_FILTERS:
        if k in filters:
            filters[k] = validate.check_uuid(filters[k], k)
    filters.update(fixed)
    limit = validate.limit_param(q.get("limit"))
    page = await request.app[ADMIN].list(name, principal.org_id, filters, cursor, limit)
    return json_response({"items": page.items, "next_cursor": page.cursor})


async def _get(request: web.Request, name: str) -> web.Response:
    principal = need(request, name, "read")
    return _one(await request.app[ADMIN].get(name, _id(request), principal.org_id))


async def orgs_list(request: web.Request) -> web.Response:
    return await _list(request, "organizations")


async def org_get(request: web.Request) -> web.Response:
    return await _get(request, "organizations")


async def org_create(request: web.Request) -> web.Response:
    principal = need(request, "organizations", "write")
    if principal.org_id is not None:
        raise Forbidden("only a platform key (one bound to no org) creates organizations")
    fields = validate.organization(await _body(request), create=True)
    return _one(await request.app[ADMIN].create_org(actor(request, principal), fields), 201)


async def org_update(request: web.Request) -> web.Response:
    principal = need(request, "organizations", "write")
    fields = validate.organization(await _body(request), create=False)
    who, row_id, match = actor(request, principal), _id(request), _if_match(request)
    return _one(await request.app[ADMIN].update("organizations", who, row_id, match, fields))


async def trunks_list(request: web.Request) -> web.Response:
    return await _list(request, "trunks")


async def trunk_get(request: web.Request) -> web.Response:
    return await _get(request, "trunks")


async def trunk_create(request: web.Request) -> web.Response:
    principal = need(request, "trunks", "write")
    given = validate.trunk(await _body(request), create=True)
    org = given.columns.get("org_id") or principal.org_id
    if org is None:
        raise InputError("is required with a platform key", field="org_id")
    if not principal.sees(org):
        raise NotFound("no such organizations row", field="org_id")
    return _one(await request.app[ADMIN].create_trunk(actor(request, principal), given, org), 201)


async def trunk_update(request: web.Request) -> web.Response:
    principal = need(request, "trunks", "write")
    given = validate.trunk(await _body(request), create=False)
    who, row_id, match = actor(request, principal), _id(request), _if_match(request)
    return _one(await request.app[ADMIN].update_trunk(who, row_id, match, given))


async def trunk_delete(request: web.Request) -> web.Response:
    principal = need(request, "trunks", "write")
    await request.app[ADMIN].delete_trunk(
        actor(request, principal), _id(request), _if_match(request)
    )
    return web.Response(status=204)


async def acl_list(request: web.Request) -> web.Response:
    principal = need(request, "acl", "read")
    await request.app[ADMIN].get("trunks", _id(request), principal.org_id)  # 404 if not theirs
    return await _list(request, "acl", trunk_id=_id(request))


async def acl_create(request: web.Request) -> web.Response:
    principal = need(request, "acl", "write")
    given = validate.acl(await _body(request))
    row = await request.app[ADMIN].create_acl(actor(request, principal), _id(request), given)
    return _one(row, 201)


async def acl_delete(request: web.Request) -> web.Response:
    principal = need(request, "acl", "write")
    await request.app[ADMIN].delete_acl(
        actor(request, principal), _id(request), _id(request, "acl_id")
    )
    return web.Response(status=204)


async def keys_list(request: web.Request) -> web.Response:
    return await _list(request, "api_keys")


async def key_get(request: web.Request) -> web.Response:
    return await _get(request, "api_keys")


async def key_create(request: web.Request) -> web.Response:
    principal = need(request, "api_keys", "write")
    given = validate.api_key(await _body(request), dt.datetime.now(dt.UTC))
    org = given.org_id if given.org_id is not None else principal.org_id
    if not principal.grants_within(given.scopes, org):
        raise Forbidden("a key can only make keys of its own org with scopes it holds itself")
    row, secret = await request.app[ADMIN].create_key(actor(request, principal), given, org)
    return _one({**row, "secret": secret}, 201)


async def key_revoke(request: web.Request) -> web.Response:
    principal = need(request, "api_keys", "write")
    return _one(await request.app[ADMIN].revoke_key(actor(request, principal), _id(request)))


async def audit_list(request: web.Request) -> web.Response:
    return await _list(request, "audit")


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/admin/organizations", orgs_list),
    ("POST", "/v1/admin/organizations", org_create),
    ("GET", "/v1/admin/organizations/{id}", org_get),
    ("PATCH", "/v1/admin/organizations/{id}", org_update),
    ("GET", "/v1/admin/trunks", trunks_list),
    ("POST", "/v1/admin/trunks", trunk_create),
    ("GET", "/v1/admin/trunks/{id}", trunk_get),
    ("PATCH", "/v1/admin/trunks/{id}", trunk_update),
    ("DELETE", "/v1/admin/trunks/{id}", trunk_delete),
    ("GET", "/v1/admin/trunks/{id}/acl", acl_list),
    ("POST", "/v1/admin/trunks/{id}/acl", acl_create),
    ("DELETE", "/v1/admin/trunks/{id}/acl/{acl_id}", acl_delete),
    ("GET", "/v1/admin/api_keys", keys_list),
    ("POST", "/v1/admin/api_keys", key_create),
    ("GET", "/v1/admin/api_keys/{id}", key_get),
    ("DELETE", "/v1/admin/api_keys/{id}", key_revoke),
    ("GET", "/v1/admin/audit", audit_list),
]


def routes() -> list[web.RouteDef]:
    return [web.route(method, path, handler) for method, path, handler in ROUTES]
