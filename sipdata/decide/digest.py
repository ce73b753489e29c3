"""Digest credentials: how HA1 values are stored and which one a request needs.

`sip_trunks.password_hash` never holds a password. It holds both HA1 values a
SIP digest needs (RFC 2617 MD5 and RFC 7616 SHA-256) and the realm they were
computed for, as one string:

    ha1v1$<md5 hex, 32>$<sha-256 hex, 64>$<realm>

HA1 = H(username ":" realm ":" password). Kamailio verifies a response with
the HA1 alone (`pv_proxy_authenticate` / `pv_www_authenticate` with flag 1),
so the plaintext never leaves the provisioning step that built the string.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

SCHEME = "ha1v1"
ALGORITHMS = ("MD5", "SHA-256")
_HEX32 = re.compile(r"\A[0-9a-f]{32}\Z")
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")


@dataclass(frozen=True, slots=True)
class StoredHA1:
    md5: str
    sha256: str
    realm: str

    def for_algorithm(self, algorithm: str) -> str | None:
        """The HA1 for a digest `algorithm` name as sent by the client, or None."""
        name = normalise_algorithm(algorithm)
        if name == "MD5":
            return self.md5
        if name == "SHA-256":
            return self.sha256
        return None


def normalise_algorithm(algorithm: str | None) -> str | None:
    """RFC 7616 names; an absent algorithm means MD5 (RFC 2617)."""
    if algorithm is None or algorithm.strip() == "":
        return "MD5"
    up = algorithm.strip().upper()
    return up if up in ALGORITHMS else None


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password) with the digest's hash function."""
    material = f"{username}:{realm}:{password}".encode()
    if algorithm == "MD5":
        return hashlib.md5(material, usedforsecurity=False).hexdigest()
    if algorithm == "SHA-256":
        return hashlib.sha256(material).hexdigest()
    raise ValueError(f"unsupported digest algorithm {algorithm!r}")


def encode(username: str, realm: str, password: str) -> str:
    """The `password_hash` column value for a trunk's password."""
    if "$" in realm or not realm:
        raise ValueError("realm must be non-empty and contain no '$'")
    return "$".join(
        (
            SCHEME,
            ha1("MD5", username, realm, password),
            ha1("SHA-256", username, realm, password),
            realm,
        )
    )


def parse(stored: str | None) -> StoredHA1 | None:
    """Decode a `password_hash` value; None for anything not in the format."""
    if not stored:
        return None
    parts = stored.split("$", 3)
    if len(parts) != 4 or parts[0] != SCHEME:
        return None
    _, md5, sha256, realm = parts
    if not _HEX32.match(md5) or not _HEX64.match(sha256) or not realm:
        return None
    return StoredHA1(md5=md5, sha256=sha256, realm=realm)
