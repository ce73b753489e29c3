"""The JSON Schemas of the admin API's rows and bodies (OpenAPI 3.1 components), from
the same constants the checks use (admin/validate.py, admin/routing.py)."""

from __future__ import annotations

from typing import Any

from sipdata.admin import routing, users, validate
from sipdata.decide import rules

UUID = {"type": "string", "format": "uuid"}
TIME = {"type": ["string", "null"], "format": "date-time"}
OBJECT = {"type": "object"}


def nullable(kind: str, **more: Any) -> dict[str, Any]:
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
                    "field": nullable("string"),
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
            "status": nullable("string"),
            "tier": nullable("string"),
            "metadata": nullable("object"),
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
            "auth_type": nullable("string"),
            "status": nullable("string"),
            "max_channels": nullable("integer"),
            "channels_in_use": nullable("integer"),
            "transport": nullable("string"),
            "metadata": nullable("object"),
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
            "description": nullable("string"),
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
    "Rule": {
        "type": "object",
        "required": ["id", "org_id", "name", "match_pattern", "action"],
        "properties": {
            "id": UUID,
            "org_id": UUID,
            "trunk_id": nullable("string", format="uuid"),
            "name": {"type": "string"},
            "priority": nullable("integer"),
            "enabled": nullable("boolean"),
            "match_type": nullable("string"),
            "match_pattern": {"type": "string"},
            "time_condition": nullable("object"),
            "action": {"type": "string"},
            "destination": nullable("string"),
            "transform_rules": nullable("object"),
            "weight": nullable("integer"),
            "max_calls": nullable("integer"),
            "metadata": nullable("object"),
            "created_at": TIME,
            "updated_at": TIME,
        },
    },
    "RuleInput": {
        "type": "object",
        "additionalProperties": False,
        "description": "Refused unless the decision would compile the whole rule "
        "(docs/api.md, routing rules); on create: name, match_pattern and action.",
        "properties": {
            "org_id": {**UUID, "description": "create only"},
            "trunk_id": {**UUID, "description": "only calls from this trunk of the org"},
            "name": {"type": "string", "minLength": 1, "maxLength": 255},
            "priority": {"type": "integer"},
            "enabled": {"type": "boolean"},
            "match_type": {"enum": list(rules.MATCH_TYPES)},
            "match_pattern": {"type": "string", "minLength": 1, "maxLength": 255},
            "time_condition": OBJECT,
            "action": {"enum": list(rules.ACTIONS)},
            "destination": {"type": "string", "minLength": 1, "maxLength": 255},
            "transform_rules": OBJECT,
            "weight": {"type": "integer", "minimum": 0},
            "max_calls": {"type": "integer", "minimum": 0},
            "metadata": OBJECT,
        },
    },
    "Number": {
        "type": "object",
        "required": ["id", "number", "country_code"],
        "properties": {
            "id": UUID,
            "number": {"type": "string", "description": "E.164 digits, no +"},
            "country_code": {"type": "string"},
            "number_type": nullable("string"),
            "org_id": nullable("string", format="uuid"),
            "trunk_id": nullable("string", format="uuid"),
            "voice_enabled": nullable("boolean"),
            "status": nullable("string"),
            "metadata": nullable("object"),
            "created_at": TIME,
            "updated_at": TIME,
        },
    },
    "NumberInput": {
        "type": "object",
        "additionalProperties": False,
        "description": "On create: number and country_code; number and country_code cannot change.",
        "properties": {
            "number": {"type": "string", "minLength": 1, "maxLength": 40},
            "country_code": {"type": "string", "pattern": "^[0-9]{1,5}$"},
            "number_type": {"type": "string", "minLength": 1, "maxLength": 20},
            "org_id": UUID,
            "trunk_id": UUID,
            "voice_enabled": {"type": "boolean"},
            "status": {"enum": list(routing.NUMBER_STATUSES)},
            "metadata": OBJECT,
        },
    },
    "ApiKey": {
        "type": "object",
        "required": ["id", "name", "key_prefix", "scopes", "status"],
        "properties": {
            "id": UUID,
            "org_id": nullable("string", format="uuid"),
            "name": {"type": "string"},
            "key_prefix": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "rate_limit": nullable("integer"),
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
            "org_id": nullable("string", format="uuid"),
            "api_key_id": nullable("string", format="uuid"),
            "action": {"type": "string"},
            "resource_type": {"type": "string"},
            "resource_id": {"type": "string"},
            "ip_address": nullable("string"),
            "user_agent": nullable("string"),
            "before": {"description": "the row before (secrets never included)"},
            "after": {"description": "the row after"},
            "created_at": TIME,
        },
    },
    "DeckImport": {
        "type": "object",
        "required": ["carrier_id", "rows", "removed", "replace"],
        "properties": {
            "carrier_id": UUID,
            "rows": {"type": "integer"},
            "removed": {"type": "integer"},
            "replace": {"type": "boolean"},
        },
    },
    "User": {
        "type": "object",
        "required": ["id", "org_id", "email", "username"],
        "properties": {
            "id": UUID,
            "org_id": UUID,
            "email": {"type": "string"},
            "username": {"type": "string"},
            "role": nullable("string"),
            "status": nullable("string"),
            "mfa_enabled": nullable("boolean"),
            "last_login": TIME,
            "metadata": nullable("object"),
            "created_at": TIME,
            "updated_at": TIME,
        },
    },
    "UserInput": {
        "type": "object",
        "additionalProperties": False,
        "description": "On create: email, username and password (stored as scrypt only).",
        "properties": {
            "org_id": UUID,
            "email": {"type": "string", "maxLength": 255},
            "username": {"type": "string", "pattern": validate.USERNAME.pattern},
            "password": {"type": "string", "minLength": 12, "maxLength": 256, "writeOnly": True},
            "role": {"enum": list(users.ROLES)},
            "status": {"enum": list(validate.STATUSES)},
            "metadata": OBJECT,
        },
    },
}
