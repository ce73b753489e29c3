"""Admin bodies for users, and their password hash (pure): scrypt from the standard
library, salted, with its parameters stored beside it so they can be raised later."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any

from sipdata.admin.validate import (
    STATUSES,
    Body,
    choice,
    metadata,
    only_fields,
    present,
    secret,
    text,
    user_name,
    uuid_text,
)
from sipdata.errors import InputError

ROLES = ("admin", "user", "readonly")
USER_FIELDS = ("org_id", "email", "username", "password", "role", "status", "metadata")
# One @, something either side, no spaces or angle brackets: a mailbox, not RFC 5322.
EMAIL = re.compile(r"[^@\s<>]{1,64}@[^@\s<>]{1,190}\.[^@\s<>.]{1,63}")
# scrypt at n=2**14, r=8, p=1: about 16 MiB and tens of milliseconds per hash.
SCRYPT = (2**14, 8, 1)


def hash_password(password: str, salt: bytes | None = None) -> str:
    n, r, p = SCRYPT
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def user_changes(body: Body, *, create: bool) -> tuple[dict[str, Any], str | None]:
    """The columns a body sets, and the password to hash (never stored as given)."""
    only_fields(body, USER_FIELDS if create else USER_FIELDS[1:])
    email = text(body, "email", required=create)
    if email is not None and not EMAIL.fullmatch(email):
        raise InputError("is not an email address", field="email")
    username = user_name(body, required=create)
    password = secret(body, required=create, limit=256)
    role = choice(body, "role", ROLES)
    status = choice(body, "status", STATUSES)
    org = body.get("org_id")
    columns = present(
        org_id=uuid_text(org, "org_id") if org is not None else None,
        email=email.lower() if email else None,
        username=username,
        role=role,
        status=status,
        metadata=metadata(body),
    )
    if not columns and password is None:
        raise InputError("nothing to change", field=None)
    return columns, password
