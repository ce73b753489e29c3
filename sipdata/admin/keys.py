"""API keys of the admin API: their format, hash, scopes and what a key may do (pure).

A key reads `sdk_<prefix>_<secret>`: the prefix (8 hex digits) is stored in the clear
and finds the key's row; the whole key's SHA-256 is stored and compared in constant
time. The secret has 256 bits, so a fast hash is the right one (a slow password hash
protects guessable secrets; nobody guesses 256 bits).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sipdata.errors import InputError

KEY_FORMAT = re.compile(r"sdk_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
# What an admin key may touch; `audit` is read-only.
RESOURCES = (
    "organizations",
    "trunks",
    "acl",
    "numbers",
    "rules",
    "rates",
    "users",
    "api_keys",
    "audit",
)
VERBS = ("read", "write")
ALL = "*"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key as created: `secret` is shown once and never stored."""

    secret: str
    prefix: str
    hash: str


def new_key() -> NewKey:
    prefix = secrets.token_hex(4)
    secret = f"sdk_{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(secret, prefix, hash_key(secret))


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def prefix_of(presented: str) -> str | None:
    """The lookup prefix of a well-formed key, or None (then no row is read at all)."""
    found = KEY_FORMAT.fullmatch(presented)
    return found.group(1) if found else None


def same_hash(presented: str, stored: str) -> bool:
    return hmac.compare_digest(hash_key(presented).encode(), stored.encode())


def parse_scopes(raw: object, field: str = "scopes") -> tuple[str, ...]:
    """Scopes as `resource:verb`, `resource:*` or `*`; anything else is refused, named."""
    if not isinstance(raw, list) or not raw:
        raise InputError("scopes must be a non-empty list of strings", field=field)
    out: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            raise InputError("each scope must be a string", field=field)
        resource, _, verb = item.partition(":")
        ok = item == ALL or (resource in RESOURCES and verb in (*VERBS, ALL))
        if not ok or (resource == "audit" and verb == "write"):
            known = ", ".join(
                f"{r}:read|*" if r == "audit" else f"{r}:read|write|*" for r in RESOURCES
            )
            raise InputError(f"unknown scope {item!r} (known: *, {known})", field=field)
        if item not in out:
            out.append(item)
    return tuple(out)


def allows(scopes: tuple[str, ...] | list[str], resource: str, verb: str) -> bool:
    return ALL in scopes or f"{resource}:{ALL}" in scopes or f"{resource}:{verb}" in scopes


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks: one key, its org (None: a platform key, every org) and its scopes."""

    key_id: str
    org_id: str | None
    scopes: tuple[str, ...]
    rate_limit: int  # requests per RATE_WINDOW_S
    expires_at: float | None  # epoch seconds
    active: bool

    def usable(self, now: float) -> bool:
        return self.active and (self.expires_at is None or now < self.expires_at)

    def sees(self, org_id: str | None) -> bool:
        """A bound key sees its own org's rows only; another org's are 'not found'."""
        return self.org_id is None or self.org_id == org_id

    def grants_within(self, scopes: tuple[str, ...], org_id: str | None) -> bool:
        """A key may make keys no stronger than itself: no wider org, no scope it lacks."""
        if self.org_id is not None and org_id != self.org_id:
            return False
        for scope in scopes:
            resource, _, verb = scope.partition(":")
            if scope == ALL:
                if ALL not in self.scopes:
                    return False
            elif verb == ALL:
                verbs = ("read",) if resource == "audit" else VERBS
                if not all(allows(self.scopes, resource, v) for v in verbs):
                    return False
            elif not allows(self.scopes, resource, verb):
                return False
        return True


RATE_WINDOW_S = 60
