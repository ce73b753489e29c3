"""The OpenAPI 3.1 document of every route sipdata serves (pure data, served at
/openapi.json; tests/integration/test_admin_api.py keeps it and the router equal)."""

from __future__ import annotations

from typing import Any

from sipdata.admin.schemas import SCHEMAS, UUID, nullable


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


ERRORS = {
    "400": "malformed input (the field is named)",
    "401": "missing, unknown, revoked or expired API key",
    "403": "the key lacks the scope",
    "404": "no such row (or another org's)",
    "409": "conflicts with existing data",
    "412": "If-Match names an older version",
    "413": "body too large",
    "415": "body is not application/json",
    "422": "the database refused the data",
    "428": "If-Match is required",
    "429": "the key's requests per minute are used up (Retry-After)",
    "503": "Redis or the database is away",
}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "next_cursor": nullable("string", format="uuid"),
        },
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


PATH_PARAMS = {
    "id": {"name": "id", "in": "path", "required": True, "schema": UUID},
    "acl_id": {"name": "acl_id", "in": "path", "required": True, "schema": UUID},
}
IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"}}
PAGING = [
    {"name": "cursor", "in": "query", "schema": UUID},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
]
# Admin operations: (method, path, summary, schema of the row, request schema, filters).
ADMIN_OPERATIONS: list[tuple[str, str, str, str, str | None, tuple[str, ...]]] = [
    ("GET", "/v1/admin/organizations", "list organizations", "Organization", None, ("status",)),
    (
        "POST",
        "/v1/admin/organizations",
        "create an organization (platform keys)",
        "Organization",
        "OrganizationInput",
        (),
    ),
    ("GET", "/v1/admin/organizations/{id}", "read an organization", "Organization", None, ()),
    (
        "PATCH",
        "/v1/admin/organizations/{id}",
        "update an organization",
        "Organization",
        "OrganizationInput",
        (),
    ),
    (
        "GET",
        "/v1/admin/trunks",
        "list SIP trunks",
        "Trunk",
        None,
        ("org_id", "status", "auth_type"),
    ),
    ("POST", "/v1/admin/trunks", "create a SIP trunk", "Trunk", "TrunkInput", ()),
    ("GET", "/v1/admin/trunks/{id}", "read a SIP trunk", "Trunk", None, ()),
    ("PATCH", "/v1/admin/trunks/{id}", "update a SIP trunk", "Trunk", "TrunkInput", ()),
    ("DELETE", "/v1/admin/trunks/{id}", "delete a SIP trunk with its ACL", "Trunk", None, ()),
    ("GET", "/v1/admin/trunks/{id}/acl", "list a trunk's ACL", "Acl", None, ()),
    ("POST", "/v1/admin/trunks/{id}/acl", "add a network to a trunk's ACL", "Acl", "AclInput", ()),
    ("DELETE", "/v1/admin/trunks/{id}/acl/{acl_id}", "remove an ACL network", "Acl", None, ()),
    (
        "GET",
        "/v1/admin/rules",
        "list routing rules",
        "Rule",
        None,
        ("org_id", "trunk_id", "action", "enabled"),
    ),
    ("POST", "/v1/admin/rules", "create a routing rule", "Rule", "RuleInput", ()),
    ("GET", "/v1/admin/rules/{id}", "read a routing rule", "Rule", None, ()),
    ("PATCH", "/v1/admin/rules/{id}", "update a routing rule", "Rule", "RuleInput", ()),
    ("DELETE", "/v1/admin/rules/{id}", "delete a routing rule", "Rule", None, ()),
    (
        "GET",
        "/v1/admin/numbers",
        "list phone numbers",
        "Number",
        None,
        ("org_id", "trunk_id", "status", "number"),
    ),
    ("POST", "/v1/admin/numbers", "add a phone number", "Number", "NumberInput", ()),
    ("GET", "/v1/admin/numbers/{id}", "read a phone number", "Number", None, ()),
    ("PATCH", "/v1/admin/numbers/{id}", "update a phone number", "Number", "NumberInput", ()),
    ("GET", "/v1/admin/users", "list users", "User", None, ("org_id", "role", "status", "email")),
    ("POST", "/v1/admin/users", "create a user", "User", "UserInput", ()),
    ("GET", "/v1/admin/users/{id}", "read a user", "User", None, ()),
    ("PATCH", "/v1/admin/users/{id}", "update a user", "User", "UserInput", ()),
    (
        "PUT",
        "/v1/admin/carriers/{id}/rates",
        "import a carrier's rate deck (CSV as import-rates reads it; all or nothing)",
        "DeckImport",
        "csv",
        (),
    ),
    ("GET", "/v1/admin/api_keys", "list API keys", "ApiKey", None, ("org_id", "status")),
    (
        "POST",
        "/v1/admin/api_keys",
        "create an API key (its secret shown once)",
        "ApiKey",
        "ApiKeyInput",
        (),
    ),
    ("GET", "/v1/admin/api_keys/{id}", "read an API key", "ApiKey", None, ()),
    ("DELETE", "/v1/admin/api_keys/{id}", "revoke an API key", "ApiKey", None, ()),
    (
        "GET",
        "/v1/admin/audit",
        "read the audit trail",
        "AuditEntry",
        None,
        ("resource_type", "resource_id", "action", "api_key_id"),
    ),
]
# The edge's endpoints (docs/api.md describes their answers): (method, path, summary).
EDGE_OPERATIONS = [
    (m, path, summary)
    for path, summary in [
        ("/v1/credentials", "a digest user's HA1s"),
        ("/v1/acl", "the trunk a source address belongs to"),
        ("/v1/did", "a DID's owner"),
        ("/v1/lcr", "least-cost offers for a number"),
        ("/v1/routes/custom", "an org's routing rules for a number"),
        ("/v1/decide/invite", "the one-round-trip INVITE decision"),
    ]
    for m in ("GET", "POST")
] + [
    ("POST", "/v1/events/register", "a registration report"),
    ("POST", "/v1/events/call", "a call report"),
    ("POST", "/v1/events/calls", "a batch of call reports"),
    ("POST", "/v1/events/gateway", "a carrier gateway went down or came back (keepalive)"),
    ("GET", "/v1/gateways", "carrier gateways to probe, and their breakers"),
    ("GET", "/v1/registration", "a trunk's registration"),
]
OPEN_OPERATIONS = [
    ("GET", "/health", "liveness"),
    ("GET", "/ready", "readiness"),
    ("GET", "/metrics", "Prometheus metrics"),
    ("GET", "/openapi.json", "this document"),
]


AdminOperation = tuple[str, str, str, str, str | None, tuple[str, ...]]


def _admin_operation(spec: AdminOperation) -> dict[str, Any]:
    method, path, summary, row, body, filters = spec
    params: list[dict[str, Any]] = [PATH_PARAMS[p] for p in PATH_PARAMS if "{" + p + "}" in path]
    listing = method == "GET" and not path.endswith("}")
    if listing:
        params += PAGING + [
            {"name": f, "in": "query", "schema": {"type": "string"}} for f in filters
        ]
    if method in ("PATCH",) or (
        method == "DELETE" and "/api_keys/" not in path and "/acl/" not in path
    ):
        params.append(IF_MATCH)
    ok = {"description": "done"}
    if method == "DELETE" and "/api_keys/" not in path:
        responses: dict[str, Any] = {"204": ok}
    else:
        schema = _page(row) if listing else _ref(row)
        status = "201" if method == "POST" else "200"
        responses = {status: {"description": summary, "content": _json(schema)}}
    for code, why in ERRORS.items():
        responses[code] = {"description": why, "content": _json(_ref("Error"))}
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": _operation_id(method, path),
        "security": [{"adminKey": []}],
        "parameters": params,
        "responses": responses,
    }
    if body == "csv":
        params.append({"name": "replace", "in": "query", "schema": {"enum": ["true", "false"]}})
        csv = {"schema": {"type": "string", "description": "prefix,rate,effective_date,..."}}
        op["requestBody"] = {"required": True, "content": {"text/csv": csv}}
    elif body is not None:
        op["requestBody"] = {"required": True, "content": _json(_ref(body))}
    return op


def _operation_id(method: str, path: str) -> str:
    name = path.strip("/")
    for old, new in (("/", "_"), ("{", ""), ("}", ""), (".", "_")):
        name = name.replace(old, new)
    return f"{method.lower()}_{name}"


def _plain_operation(method: str, path: str, summary: str, secured: bool) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": _operation_id(method, path),
        "responses": {
            "200": {"description": summary},
            "default": {"description": "an error", "content": _json(_ref("Error"))},
        },
    }
    if secured:
        op["security"] = [{"edgeSecret": []}]
    return op


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in ADMIN_OPERATIONS:
        paths.setdefault(spec[1], {})[spec[0].lower()] = _admin_operation(spec)
    for method, path, summary in EDGE_OPERATIONS:
        paths.setdefault(path, {})[method.lower()] = _plain_operation(method, path, summary, True)
    for method, path, summary in OPEN_OPERATIONS:
        paths.setdefault(path, {})[method.lower()] = _plain_operation(method, path, summary, False)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sipdata",
            "version": "1",
            "description": "Routing data for a Kamailio edge (docs/api.md) and its admin API "
            "(docs/admin-api.md).",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "adminKey": {"type": "http", "scheme": "bearer", "description": "sdk_... API key"},
                "edgeSecret": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SIPDATA_API_TOKEN",
                },
            },
        },
    }
