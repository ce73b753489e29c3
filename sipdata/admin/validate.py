"""Admin request bodies checked and typed (pure): every refusal is an InputError naming
the field, and nothing is written before all of a body has passed."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sipdata.admin import keys
from sipdata.errors import InputError

STATUSES = ("active", "suspended", "disabled")
AUTH_TYPES = ("digest", "ip")
TRANSPORTS = ("UDP", "TCP", "TLS")
# Digest usernames travel in SIP headers and are part of the HA1: no spaces, quotes
# or separators.
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
# An ACL wider than this is a mistake (or an attack), not a customer's network.
MIN_PREFIX = {4: 8, 6: 16}
MAX_CHANNELS = 100_000
LEADING_ZERO = re.compile(r"(?:^|\.)0[0-9]")
Body = Mapping[str, Any]


def only_fields(body: Body, allowed: tuple[str, ...]) -> None:
    for name in body:
        if name not in allowed:
            raise InputError(f"unknown field (known: {', '.join(allowed)})", field=name)


def text(body: Body, name: str, *, required: bool, limit: int = 255) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InputError("is required", field=name)
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError("must be a non-empty string", field=name)
    if len(value) > limit or "\x00" in value:
        raise InputError(f"must be at most {limit} characters, without NUL", field=name)
    return value


def choice(body: Body, name: str, options: tuple[str, ...]) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if value not in options:
        raise InputError(f"must be one of {', '.join(options)}", field=name)
    return str(value)


def integer(body: Body, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InputError(f"must be a whole number from {low} to {high}", field=name)
    return value


def user_name(body: Body, *, required: bool) -> str | None:
    """A SIP or login username: it travels in headers and hashes, so a narrow alphabet."""
    name = text(body, "username", required=required, limit=100)
    if name is not None and not USERNAME.fullmatch(name):
        raise InputError(
            "must start with a letter or digit and hold only letters, digits and . _ + -",
            field="username",
        )
    return name


def secret(body: Body, *, required: bool, limit: int) -> str | None:
    password = text(body, "password", required=required, limit=limit)
    if password is not None and len(password) < 12:
        raise InputError("must be at least 12 characters", field="password")
    return password


def uuid_text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InputError("must be a UUID string", field=field)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InputError("must be a UUID", field=field) from None


def check_uuid(value: str, field: str) -> str:
    """A path or query id: malformed is a 400 naming it, never a database error."""
    return uuid_text(value, field)


def metadata(body: Body) -> dict[str, Any] | None:
    value = body.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError("must be a JSON object", field="metadata")
    return value


def present(**fields: object) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


ORG_FIELDS = ("name", "status", "tier", "metadata")


def organization(body: Body, *, create: bool) -> dict[str, Any]:
    only_fields(body, ORG_FIELDS)
    out = present(
        name=text(body, "name", required=create),
        status=choice(body, "status", STATUSES),
        tier=text(body, "tier", required=False, limit=50),
        metadata=metadata(body),
    )
    if not out:
        raise InputError("nothing to change", field=None)
    return out


TRUNK_FIELDS = (
    "org_id",
    "name",
    "username",
    "password",
    "auth_type",
    "status",
    "max_channels",
    "transport",
    "metadata",
)


@dataclass(frozen=True, slots=True)
class TrunkInput:
    """Columns to write, plus the password (hashed by the caller with the realm)."""

    columns: dict[str, Any]
    password: str | None


def trunk(body: Body, *, create: bool) -> TrunkInput:
    only_fields(body, TRUNK_FIELDS if create else TRUNK_FIELDS[1:])
    username = user_name(body, required=create)
    password = secret(body, required=False, limit=128)
    auth_type = choice(body, "auth_type", AUTH_TYPES)
    if create and (auth_type or "digest") == "digest" and password is None:
        raise InputError("a digest trunk needs a password", field="password")
    if not create and username is not None and password is None:
        # The stored HA1 hashes the username: a new name with the old HA1 never verifies.
        raise InputError("a new username needs its password too", field="password")
    columns = present(
        org_id=uuid_text(body["org_id"], "org_id") if body.get("org_id") is not None else None,
        name=text(body, "name", required=create),
        username=username,
        auth_type=auth_type,
        status=choice(body, "status", STATUSES),
        max_channels=integer(body, "max_channels", 0, MAX_CHANNELS),
        transport=choice(body, "transport", TRANSPORTS),
        metadata=metadata(body),
    )
    if not columns and password is None:
        raise InputError("nothing to change", field=None)
    return TrunkInput(columns, password)


ACL_FIELDS = ("ip", "description")


@dataclass(frozen=True, slots=True)
class AclInput:
    network: str  # CIDR, host bits clear
    prefixlen: int
    description: str | None


def network(value: object, field: str = "ip") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or CIDR network, strictly: no zone id, no leading zeros, no host bits
    set, nothing as wide as the internet."""
    if not isinstance(value, str) or not value or len(value) > 64:
        raise InputError("must be an IPv4 or IPv6 address or CIDR network", field=field)
    if "%" in value:
        raise InputError("an IPv6 zone id (%...) names a local link, not a source", field=field)
    if ":" not in value and LEADING_ZERO.search(value.partition("/")[0]):
        # 010.0.0.1: octal 8.0.0.1 to some parsers, decimal 10.0.0.1 to others.
        raise InputError("leading zeros are ambiguous (octal or decimal?)", field=field)
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        reason = str(exc)
        if "host bits set" in reason:
            loose = ipaddress.ip_network(value, strict=False)
            raise InputError(f"has host bits set: did you mean {loose}?", field=field) from None
        if "eading zero" in reason:
            raise InputError(
                "leading zeros are ambiguous (octal or decimal?)", field=field
            ) from None
        raise InputError(f"is not an address or network: {reason}", field=field) from None
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
        raise InputError("write an IPv4-mapped address in its IPv4 form", field=field)
    if net.prefixlen < MIN_PREFIX[net.version]:
        raise InputError(
            f"/{net.prefixlen} is too wide (at least /{MIN_PREFIX[net.version]})", field=field
        )
    return net


def acl(body: Body) -> AclInput:
    only_fields(body, ACL_FIELDS)
    if body.get("ip") is None:
        raise InputError("is required", field="ip")
    net = network(body["ip"])
    return AclInput(str(net), net.prefixlen, text(body, "description", required=False))


KEY_FIELDS = ("name", "org_id", "scopes", "rate_limit", "expires_at")


@dataclass(frozen=True, slots=True)
class KeyInput:
    name: str
    org_id: str | None
    scopes: tuple[str, ...]
    rate_limit: int
    expires_at: dt.datetime | None  # UTC, naive (the seed's TIMESTAMP columns)


def api_key(body: Body, now: dt.datetime) -> KeyInput:
    only_fields(body, KEY_FIELDS)
    expires = body.get("expires_at")
    when: dt.datetime | None = None
    if expires is not None:
        try:
            when = dt.datetime.fromisoformat(str(expires))
        except ValueError:
            raise InputError("must be an ISO 8601 time", field="expires_at") from None
        if when.tzinfo is None:
            raise InputError("must carry its UTC offset (e.g. Z)", field="expires_at")
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
        if when <= now.astimezone(dt.UTC).replace(tzinfo=None):
            raise InputError("must be in the future", field="expires_at")
    org = body.get("org_id")
    return KeyInput(
        name=text(body, "name", required=True) or "",
        org_id=uuid_text(org, "org_id") if org is not None else None,
        scopes=keys.parse_scopes(body.get("scopes")),
        rate_limit=integer(body, "rate_limit", 1, 1_000_000) or 1000,
        expires_at=when,
    )


def limit_param(raw: str | None, default: int = 50, most: int = 500) -> int:
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
    if not re.fullmatch(r"[0-9]{1,6}", raw) or not 1 <= int(raw) <= most:
        raise InputError(f"must be a whole number from 1 to {most}", field="limit")
    return int(raw)
