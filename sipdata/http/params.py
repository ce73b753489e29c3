"""Request parameters: GET query or POST JSON object, validated into typed values."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from sipdata.decide import acl
from sipdata.decide.numbers import canonical
from sipdata.errors import InputError, PayloadTooLarge, UnsupportedMediaType

MAX_TEXT = 256  # no SIP identifier sipdata handles is longer
_CONTROL = re.compile(r"[\x00-\x1f]")  # one search, not a test per character


async def read(request: web.Request, max_bytes: int) -> Mapping[str, Any]:
    """The parameters of a request, from its query string or its JSON body."""
    if request.method == "GET":
        return request.query
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"request body over {max_bytes} bytes")
    body = await request.content.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body over {max_bytes} bytes")
    if not body:
        return {}
    # A form or text body that happens to parse as JSON was not meant as JSON.
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"body must be application/json, not {request.content_type}", field="Content-Type"
        )
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InputError("body is not valid JSON", field="body") from None
    if not isinstance(doc, dict):
        raise InputError("body must be a JSON object", field="body")
    return doc


def text(
    params: Mapping[str, Any], name: str, *, required: bool = True, limit: int = MAX_TEXT
) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise InputError(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string", field=name)
    if len(value) > limit:
        raise InputError(f"{name} is longer than {limit} characters", field=name)
    if _CONTROL.search(value):
        raise InputError(f"{name} contains control characters", field=name)
    return value


def required(params: Mapping[str, Any], name: str, *, limit: int = MAX_TEXT) -> str:
    value = text(params, name, limit=limit)
    assert value is not None
    return value


def number(params: Mapping[str, Any], name: str) -> str:
    return canonical(required(params, name), name)


def ip(params: Mapping[str, Any], name: str) -> acl.IPAddress:
    return acl.canonical_ip(required(params, name), name)


def uuid_text(params: Mapping[str, Any], name: str) -> str:
    value = required(params, name)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InputError(f"{name} must be a UUID", field=name) from None


def flag(params: Mapping[str, Any], name: str) -> bool:
    """An optional boolean: true/1/yes or false/0/no (JSON booleans too); absent = false."""
    value = params.get(name)
    if value is None or value is False or value == "":
        return False
    if value is True:
        return True
    text = str(value).strip().lower()
    if text in {"1", "true", "yes"}:
        return True
    if text in {"0", "false", "no"}:
        return False
    raise InputError(f"{name} must be true or false", field=name)
