"""HA1 storage format and the choice of HA1 per digest algorithm."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdata.decide import digest


def test_ha1_matches_rfc_definitions() -> None:
    # RFC 2617 / RFC 7616: HA1 = H(username ":" realm ":" password)
    """HA1 is RFC 2617's MD5 and RFC 7616's SHA-256 of user:realm:password; other
    algorithms are refused."""
    assert digest.ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life") == (
        "939e7578ed9e3c518a452acee763bce9"
    )
    assert digest.ha1("SHA-256", "Mufasa", "http-auth@example.org", "Circle of Life") == (
        hashlib.sha256(b"Mufasa:http-auth@example.org:Circle of Life").hexdigest()
    )
    with pytest.raises(ValueError, match="unsupported"):
        digest.ha1("SHA-512-256", "u", "r", "p")


def test_encoded_hash_never_contains_the_password() -> None:
    """What is stored holds the HA1s, never the password."""
    stored = digest.encode("alice", "sipdata.local", "s3cret-Pa55")
    assert "s3cret" not in stored
    assert stored.startswith("ha1v1$")


@given(
    st.text(min_size=1, max_size=20).filter(lambda s: "$" not in s and ":" not in s),
    st.text(min_size=1, max_size=20).filter(lambda s: "$" not in s),
    st.text(max_size=20),
)
def test_encode_parse_round_trip(user: str, realm: str, password: str) -> None:
    """Any username, realm and password read back as the HA1s of both algorithms."""
    parsed = digest.parse(digest.encode(user, realm, password))
    assert parsed is not None
    assert parsed.realm == realm
    assert parsed.for_algorithm("MD5") == digest.ha1("MD5", user, realm, password)
    assert parsed.for_algorithm("sha-256") == digest.ha1("SHA-256", user, realm, password)


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "plaintext-password",
        "ha1v1$abc$def$realm",
        "ha1v2$" + "0" * 32 + "$" + "0" * 64 + "$realm",
        "ha1v1$" + "0" * 32 + "$" + "0" * 64 + "$",
        "ha1v1$" + "G" * 32 + "$" + "0" * 64 + "$realm",
    ],
)
def test_parse_rejects_anything_not_in_the_format(stored: str | None) -> None:
    """A stored value not in the ha1v1 format is no credential at all."""
    assert digest.parse(stored) is None


@pytest.mark.parametrize(
    ("given_name", "expected"),
    [
        (None, "MD5"),
        ("", "MD5"),
        ("md5", "MD5"),
        ("SHA-256", "SHA-256"),
        ("sha-256", "SHA-256"),
        ("MD5-sess", None),
        ("SHA-512-256", None),
    ],
)
def test_algorithm_names_normalise(given_name: str | None, expected: str | None) -> None:
    """Algorithm names normalise case-insensitively, absent meaning MD5; others are unsupported."""
    assert digest.normalise_algorithm(given_name) == expected


def test_realm_with_separator_is_refused() -> None:
    """A realm containing the stored format's separator is refused."""
    with pytest.raises(ValueError):
        digest.encode("u", "bad$realm", "p")
