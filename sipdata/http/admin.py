"""Admin API handlers: organizations, trunks, their ACL, API keys and the audit trail.

Each handler: the scope, the body checked whole (admin/validate.py), one call to the
service (serving/admin.py: one transaction with its audit row), the row with its ETag.
Decisions see a change through the change capture within the freshness bound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from sipdata.admin import keys, routing, users, validate
from sipdata.errors import (
    Forbidden,
    InputError,
    NotFound,
    PayloadTooLarge,
    PreconditionRequired,
    UnsupportedMediaType,
)
from sipdata.http import params
from sipdata.http.admin_auth import ADMIN, actor, authenticated, need
from sipdata.http.handlers import MAX_BODY
from sipdata.http.responses import json_response
from sipdata.serving.admin import RESOURCES, etag

ID_FILTERS = ("org_id", "trunk_id", "api_key_id")
MAX_DECK: web.AppKey[int] = web.AppKey("max_deck", int)


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
    await request.app[ADMIN].delete(
        "trunks", actor(request, principal), _id(request), _if_match(request)
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


def _own_org(principal: keys.Principal, org: str | None, required: bool) -> str | None:
    """The org a new or moved row is for: the body's, else a bound key's own; another
    org's reads as missing."""
    org = org or principal.org_id
    if org is None and required:
        raise InputError("is required with a platform key", field="org_id")
    if org is not None and not principal.sees(org):
        raise NotFound("no such organizations row", field="org_id")
    return org


async def rules_list(request: web.Request) -> web.Response:
    return await _list(request, "rules")


async def rule_get(request: web.Request) -> web.Response:
    return await _get(request, "rules")


async def rule_create(request: web.Request) -> web.Response:
    principal = need(request, "rules", "write")
    columns = routing.rule_changes(await _body(request), create=True)
    org = _own_org(principal, columns.pop("org_id", None), required=True)
    assert org is not None
    row = await request.app[ADMIN].create_rule(actor(request, principal), columns, org)
    return _one(row, 201)


async def rule_update(request: web.Request) -> web.Response:
    principal = need(request, "rules", "write")
    columns = routing.rule_changes(await _body(request), create=False)
    who, row_id, match = actor(request, principal), _id(request), _if_match(request)
    return _one(await request.app[ADMIN].update_rule(who, row_id, match, columns))


async def rule_delete(request: web.Request) -> web.Response:
    principal = need(request, "rules", "write")
    await request.app[ADMIN].delete(
        "rules", actor(request, principal), _id(request), _if_match(request)
    )
    return web.Response(status=204)


async def numbers_list(request: web.Request) -> web.Response:
    return await _list(request, "numbers")


async def number_get(request: web.Request) -> web.Response:
    return await _get(request, "numbers")


async def number_create(request: web.Request) -> web.Response:
    principal = need(request, "numbers", "write")
    columns = routing.number_changes(await _body(request), create=True)
    # A platform key may add a number to the inventory, owned by no org yet.
    org = _own_org(principal, columns.get("org_id"), required=False)
    if org is not None:
        columns["org_id"] = org
    return _one(await request.app[ADMIN].create_number(actor(request, principal), columns), 201)


async def number_update(request: web.Request) -> web.Response:
    principal = need(request, "numbers", "write")
    columns = routing.number_changes(await _body(request), create=False)
    if "org_id" in columns:
        _own_org(principal, columns["org_id"], required=False)
    who, row_id, match = actor(request, principal), _id(request), _if_match(request)
    return _one(await request.app[ADMIN].update_number(who, row_id, match, columns))


async def users_list(request: web.Request) -> web.Response:
    return await _list(request, "users")


async def user_get(request: web.Request) -> web.Response:
    return await _get(request, "users")


async def user_create(request: web.Request) -> web.Response:
    principal = need(request, "users", "write")
    columns, password = users.user_changes(await _body(request), create=True)
    columns["org_id"] = _own_org(principal, columns.get("org_id"), required=True)
    assert password is not None
    row = await request.app[ADMIN].create_user(actor(request, principal), columns, password)
    return _one(row, 201)


async def user_update(request: web.Request) -> web.Response:
    principal = need(request, "users", "write")
    columns, password = users.user_changes(await _body(request), create=False)
    who, row_id, match = actor(request, principal), _id(request), _if_match(request)
    return _one(await request.app[ADMIN].update_user(who, row_id, match, columns, password))


async def rates_upload(request: web.Request) -> web.Response:
    """PUT a carrier's deck as CSV (import-rates' format, docs/operations.md): spooled to
    a temporary file as it arrives (memory stays flat), then imported all or nothing."""
    principal = need(request, "rates", "write")
    carrier = _id(request)
    if not principal.sees(carrier):
        raise NotFound("no such organizations row", field="id")
    if request.content_type not in ("text/csv", "text/plain"):
        raise UnsupportedMediaType(
            f"the deck must be text/csv, not {request.content_type}", field="Content-Type"
        )
    replace = request.query.get("replace", "false")
    if replace not in ("true", "false"):
        raise InputError("must be true or false", field="replace")
    limit = request.app[MAX_DECK]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the deck is over {limit} bytes")
    with tempfile.TemporaryDirectory(prefix="sipdata-deck-") as folder:
        path = Path(folder) / "deck.csv"
        with path.open("wb") as out:
            size = 0
            async for chunk in request.content.iter_chunked(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the deck is over {limit} bytes")
                await asyncio.to_thread(out.write, chunk)
        result = await request.app[ADMIN].import_rates(
            actor(request, principal), carrier, path, replace=replace == "true"
        )
    return json_response({**result, "replace": replace == "true"})


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
    ("GET", "/v1/admin/rules", rules_list),
    ("POST", "/v1/admin/rules", rule_create),
    ("GET", "/v1/admin/rules/{id}", rule_get),
    ("PATCH", "/v1/admin/rules/{id}", rule_update),
    ("DELETE", "/v1/admin/rules/{id}", rule_delete),
    ("GET", "/v1/admin/numbers", numbers_list),
    ("POST", "/v1/admin/numbers", number_create),
    ("GET", "/v1/admin/numbers/{id}", number_get),
    ("PATCH", "/v1/admin/numbers/{id}", number_update),
    ("GET", "/v1/admin/users", users_list),
    ("POST", "/v1/admin/users", user_create),
    ("GET", "/v1/admin/users/{id}", user_get),
    ("PATCH", "/v1/admin/users/{id}", user_update),
    ("PUT", "/v1/admin/carriers/{id}/rates", rates_upload),
    ("GET", "/v1/admin/api_keys", keys_list),
    ("POST", "/v1/admin/api_keys", key_create),
    ("GET", "/v1/admin/api_keys/{id}", key_get),
    ("DELETE", "/v1/admin/api_keys/{id}", key_revoke),
    ("GET", "/v1/admin/audit", audit_list),
]


def routes() -> list[web.RouteDef]:
    return [web.route(method, path, authenticated(handler)) for method, path, handler in ROUTES]
