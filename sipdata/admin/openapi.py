"""The OpenAPI 3.1 document of every route sipdata serves (pure data, served at
/openapi.json; tests/integration/test_openapi.py keeps it and the router equal)."""

from __future__ import annotations

from typing import Any

from sipdata.admin import validate

UUID = {"type": "string", "format": "uuid"}
TIME = {"type": ["string", "null"], "format": "date-time"}
OBJECT = {"type": "object"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **more}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": _nullable("string"),
                },
            }
        },
    },
    "Organization": {
        "type": "object",
        "required": ["id", "name", "status"],
        "properties": {
            "id": UUID,
            "name": {"type": "string"},
            "status": _nullable("string"),
            "tier": _nullable("string"),
            "metadata": _nullable("object"),
            "created_at": TIME,
            "updated_at": TIME,
        },
    },
    "OrganizationInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 255},
            "status": {"enum": list(validate.STATUSES)},
            "tier": {"type": "string", "minLength": 1, "maxLength": 50},
            "metadata": OBJECT,
        },
    },
    "Trunk": {
        "type": "object",
        "required": ["id", "org_id", "name", "username", "has_password"],
        "properties": {
            "id": UUID,
            "org_id": UUID,
            "name": {"type": "string"},
            "username": {"type": "string"},
            "auth_type": _nullable("string"),
            "status": _nullable("string"),
            "max_channels": _nullable("integer"),
            "channels_in_use": _nullable("integer"),
            "transport": _nullable("string"),
            "metadata": _nullable("object"),
            "created_at": TIME,
            "updated_at": TIME,
            "has_password": {"type": "boolean", "description": "HA1s are never returned"},
        },
    },
    "TrunkInput": {
        "type": "object",
        "additionalProperties": False,
        "description": "On create: name, username and (for digest) password are required.",
        "properties": {
            "org_id": {**UUID, "description": "create only; a bound key's own org by default"},
            "name": {"type": "string", "minLength": 1, "maxLength": 255},
            "username": {"type": "string", "pattern": validate.USERNAME.pattern},
            "password": {"type": "string", "minLength": 12, "maxLength": 128, "writeOnly": True},
            "auth_type": {"enum": list(validate.AUTH_TYPES)},
            "status": {"enum": list(validate.STATUSES)},
            "max_channels": {"type": "integer", "minimum": 0, "maximum": validate.MAX_CHANNELS},
            "transport": {"enum": list(validate.TRANSPORTS)},
            "metadata": OBJECT,
        },
    },
    "Acl": {
        "type": "object",
        "required": ["id", "trunk_id", "ip"],
        "properties": {
            "id": UUID,
            "trunk_id": UUID,
            "ip": {"type": "string", "description": "CIDR network"},
            "description": _nullable("string"),
            "created_at": TIME,
        },
    },
    "AclInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["ip"],
        "properties": {
            "ip": {
                "type": "string",
                "description": "address or CIDR: no host bits, zone ids or leading zeros; "
                "at least /8 (IPv4) or /16 (IPv6); no overlap with another org's",
            },
            "description": {"type": "string", "minLength": 1, "maxLength": 255},
        },
    },
    "ApiKey": {
        "type": "object",
        "required": ["id", "name", "key_prefix", "scopes", "status"],
        "properties": {
            "id": UUID,
            "org_id": _nullable("string", format="uuid"),
            "name": {"type": "string"},
            "key_prefix": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "rate_limit": _nullable("integer"),
            "expires_at": TIME,
            "status": {"type": "string"},
            "revoked_at": TIME,
            "last_used": TIME,
            "created_at": TIME,
            "secret": {"type": "string", "description": "on creation only, never again"},
        },
    },
    "ApiKeyInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "scopes"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 255},
            "org_id": {**UUID, "description": "bind the key to one org (a bound key: its own)"},
            "scopes": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "description": "resource:read|write|* or *"},
            },
            "rate_limit": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            "expires_at": {"type": "string", "format": "date-time"},
        },
    },
    "AuditEntry": {
        "type": "object",
        "required": ["id", "action", "resource_type", "resource_id"],
        "properties": {
            "id": UUID,
            "org_id": _nullable("string", format="uuid"),
            "api_key_id": _nullable("string", format="uuid"),
            "action": {"type": "string"},
            "resource_type": {"type": "string"},
            "resource_id": {"type": "string"},
            "ip_address": _nullable("string"),
            "user_agent": _nullable("string"),
            "before": {"description": "the row before (secrets never included)"},
            "after": {"description": "the row after"},
            "created_at": TIME,
        },
    },
}
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
            "next_cursor": _nullable("string", format="uuid"),
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
    if body is not None:
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
