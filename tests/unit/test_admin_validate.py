"""Admin input checks and API key rules (pure): each refusal names its field, keys are
well-formed and hashed, scopes never widen."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdata.admin import keys, validate
from sipdata.errors import InputError

NOW = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("0.0.0.0/0", "too wide"),
        ("::/0", "too wide"),
        ("10.0.0.0/7", "too wide"),
        ("10.0.0.1/24", "did you mean 10.0.0.0/24"),
        ("2001:db8::1/64", "did you mean 2001:db8::/64"),
        ("fe80::1%eth0", "zone id"),
        ("010.0.0.1", "leading zeros"),
        ("::ffff:10.0.0.1", "IPv4 form"),
        ("10.0.0.256", "not an address"),
        ("example.com", "not an address"),
        ("", "IPv4 or IPv6"),
        (42, "IPv4 or IPv6"),
    ],
)
def test_an_acl_network_that_could_admit_the_wrong_caller_is_refused(
    value: object, why: str
) -> None:
    """/0, host bits, zone ids, octal-looking octets and mapped forms are refused with the
    reason, and the error names the field `ip`."""
    with pytest.raises(InputError) as raised:
        validate.acl({"ip": value})
    assert why in raised.value.message and raised.value.field == "ip"


@pytest.mark.parametrize(
    ("value", "network", "prefix"),
    [
        ("203.0.113.5", "203.0.113.5/32", 32),
        ("198.51.100.0/24", "198.51.100.0/24", 24),
        ("2001:db8::/48", "2001:db8::/48", 48),
        ("2001:DB8::1", "2001:db8::1/128", 128),
    ],
)
def test_an_acl_network_is_kept_in_its_canonical_form(
    value: str, network: str, prefix: int
) -> None:
    got = validate.acl({"ip": value, "description": "office"})
    assert (got.network, got.prefixlen, got.description) == (network, prefix, "office")


@given(st.ip_addresses(), st.integers(0, 128))
def test_every_accepted_network_is_strict_and_narrow_enough(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int
) -> None:
    """Whatever string is offered, what passes has no host bits, no zone, and at least
    the minimum prefix: never something that matches half the internet."""
    prefix = min(prefix, address.max_prefixlen)
    try:
        got = validate.acl({"ip": f"{address}/{prefix}"})
    except InputError as exc:
        assert exc.field == "ip"
        return
    net = ipaddress.ip_network(got.network)
    assert net.prefixlen >= validate.MIN_PREFIX[net.version]
    assert str(net) == got.network and ipaddress.ip_network(got.network, strict=True)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "t", "username": "u1"}, "password"),
        ({"name": "t", "username": "bad name", "password": "x" * 12}, "username"),
        ({"name": "t", "username": "u1", "password": "short"}, "password"),
        ({"name": "t", "username": "u1", "password": "x" * 12, "max_channels": -1}, "max_channels"),
        (
            {"name": "t", "username": "u1", "password": "x" * 12, "max_channels": True},
            "max_channels",
        ),
        ({"name": "t", "username": "u1", "password": "x" * 12, "transport": "SCTP"}, "transport"),
        (
            {"name": "t", "username": "u1", "password": "x" * 12, "password_hash": "x"},
            "password_hash",
        ),
        ({"name": "t", "username": "u1", "password": "x" * 12, "org_id": "nope"}, "org_id"),
        ({"name": "", "username": "u1", "password": "x" * 12}, "name"),
    ],
)
def test_a_bad_trunk_body_names_the_field(body: dict[str, object], field: str) -> None:
    """A digest trunk needs a password; the stored hash cannot be written directly."""
    with pytest.raises(InputError) as raised:
        validate.trunk(body, create=True)
    assert raised.value.field == field


def test_a_new_username_needs_its_password() -> None:
    """The stored HA1 hashes the username: renaming alone would break every REGISTER."""
    with pytest.raises(InputError) as raised:
        validate.trunk({"username": "renamed"}, create=False)
    assert raised.value.field == "password"
    assert validate.trunk({"username": "renamed", "password": "p" * 12}, create=False).password


def test_an_ip_trunk_needs_no_password_and_an_update_no_org() -> None:
    made = validate.trunk({"name": "t", "username": "u1", "auth_type": "ip"}, create=True)
    assert made.password is None and made.columns["auth_type"] == "ip"
    with pytest.raises(InputError) as raised:
        validate.trunk({"org_id": "00000000-0000-0000-0000-000000000001"}, create=False)
    assert raised.value.field == "org_id"


def test_a_key_is_well_formed_and_only_its_hash_identifies_it() -> None:
    made = keys.new_key()
    assert keys.prefix_of(made.secret) == made.prefix
    assert keys.same_hash(made.secret, made.hash)
    assert not keys.same_hash(made.secret + "x", made.hash)
    assert made.secret not in made.hash and len(made.hash) == 64
    assert keys.new_key().secret != made.secret


@pytest.mark.parametrize("token", ["", "sdk_", "sdk_zzzzzzzz_" + "a" * 43, "Bearer x", "a" * 60])
def test_a_malformed_key_has_no_prefix_so_no_row_is_read(token: str) -> None:
    assert keys.prefix_of(token) is None


@pytest.mark.parametrize(
    ("scopes", "resource", "verb", "allowed"),
    [
        (("*",), "trunks", "write", True),
        (("trunks:*",), "trunks", "write", True),
        (("trunks:read",), "trunks", "write", False),
        (("trunks:read",), "acl", "read", False),
        (("audit:read",), "audit", "read", True),
    ],
)
def test_scopes_grant_by_resource_and_verb(
    scopes: tuple[str, ...], resource: str, verb: str, allowed: bool
) -> None:
    assert keys.allows(scopes, resource, verb) is allowed


@pytest.mark.parametrize("scope", ["trunks", "trunks:delete", "audit:write", "cdrs:read", 3])
def test_an_unknown_scope_is_refused(scope: object) -> None:
    with pytest.raises(InputError) as raised:
        keys.parse_scopes([scope])
    assert raised.value.field == "scopes"


SCOPE = st.sampled_from(
    [
        "*",
        *(
            f"{r}:{v}"
            for r in keys.RESOURCES
            for v in ("read", "write", "*")
            if (r, v) != ("audit", "write")
        ),
    ]
)
ORG = st.sampled_from([None, "org-a", "org-b"])


@given(st.lists(SCOPE, max_size=4), ORG, st.lists(SCOPE, min_size=1, max_size=4), ORG)
def test_a_key_never_makes_a_key_stronger_than_itself(
    held: list[str], held_org: str | None, wanted: list[str], wanted_org: str | None
) -> None:
    """Whatever a key grants, the new key can do nothing the granting key cannot: no
    other org, no resource or verb it lacks."""
    maker = keys.Principal("k", held_org, tuple(held), 1000, None, True)
    if not maker.grants_within(tuple(wanted), wanted_org):
        return
    assert held_org is None or wanted_org == held_org
    for resource in keys.RESOURCES:
        for verb in keys.VERBS:
            if keys.allows(tuple(wanted), resource, verb) and (resource, verb) != (
                "audit",
                "write",
            ):
                assert keys.allows(tuple(held), resource, verb), (held, wanted, resource, verb)


def test_a_key_expiry_must_be_a_future_time_with_an_offset() -> None:
    base = {"name": "k", "scopes": ["*"]}
    for value, why in [
        ("2026-12-05T00:00:00", "offset"),
        ("2026-12-03T00:00:00Z", "future"),
        ("tomorrow", "ISO 8601"),
    ]:
        with pytest.raises(InputError) as raised:
            validate.api_key({**base, "expires_at": value}, NOW)
        assert why in raised.value.message and raised.value.field == "expires_at"
    got = validate.api_key({**base, "expires_at": "2026-12-05T01:00:00+01:00"}, NOW)
    assert got.expires_at == dt.datetime(2026, 12, 5, 0, 0)


def test_a_bound_key_is_usable_until_it_expires_or_is_revoked() -> None:
    key = keys.Principal("k", "org-a", ("*",), 10, 100.0, True)
    assert key.usable(99.0) and not key.usable(100.0)
    assert not keys.Principal("k", None, ("*",), 10, None, False).usable(0.0)
    assert key.sees("org-a") and not key.sees("org-b") and not key.sees(None)


def test_a_user_password_is_salted_scrypt_and_only_the_right_one_matches() -> None:
    from sipdata.admin import users

    one, two = (
        users.hash_password("correct horse battery"),
        users.hash_password("correct horse battery"),
    )
    assert one != two and one.startswith("scrypt$") and "correct" not in one
    assert users.password_matches("correct horse battery", one)
    assert not users.password_matches("correct horse batterY", one)
    assert not users.password_matches("x", "not-a-hash")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "no-at-sign", "username": "u", "password": "p" * 12}, "email"),
        ({"email": "a@b.example", "username": "bad name", "password": "p" * 12}, "username"),
        ({"email": "a@b.example", "username": "u", "password": "short"}, "password"),
        ({"email": "a@b.example", "username": "u", "password": "p" * 12, "role": "root"}, "role"),
        (
            {"email": "a@b.example", "username": "u", "password": "p" * 12, "mfa_secret": "x"},
            "mfa_secret",
        ),
        ({"email": "a@b.example", "username": "u"}, "password"),
    ],
)
def test_a_bad_user_body_names_the_field(body: dict[str, object], field: str) -> None:
    from sipdata.admin import users

    with pytest.raises(InputError) as raised:
        users.user_changes(body, create=True)
    assert raised.value.field == field
