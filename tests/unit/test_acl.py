"""Source-address ACL: canonical addresses, probe keys, most-specific match."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdata.decide import acl
from sipdata.errors import InputError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::FFFF:192.0.2.1", "192.0.2.1"),
        ("[2001:db8::1]", "2001:db8::1"),
        (" 2001:DB8::1 ", "2001:db8::1"),
    ],
)
def test_canonical_ip_folds_mapped_ipv4(text: str, expected: str) -> None:
    """IPv4-mapped IPv6 addresses and brackets fold to the plain address."""
    assert str(acl.canonical_ip(text)) == expected


@pytest.mark.parametrize("text", ["", "nope", "300.1.1.1", "1.2.3.4/24", "::g"])
def test_canonical_ip_rejects(text: str) -> None:
    """Anything that is not one IP address is refused with the field named."""
    with pytest.raises(InputError) as info:
        acl.canonical_ip(text, "source_ip")
    assert info.value.field == "source_ip"


@pytest.mark.parametrize(
    ("text", "mask", "expected"),
    [
        ("10.1.2.3", 24, "10.1.2.0/24"),
        ("10.1.2.3/16", 24, "10.1.0.0/16"),  # a written mask wins
        ("10.1.2.3", None, "10.1.2.3/32"),
        ("2001:db8::7/48", None, "2001:db8::/48"),
        ("::ffff:10.0.0.0/104", None, "10.0.0.0/8"),
    ],
)
def test_parse_network(text: str, mask: int | None, expected: str) -> None:
    """A bare address takes the row's mask, a written one wins, host bits are cleared."""
    assert str(acl.parse_network(text, mask)) == expected


def test_probes_are_most_specific_first_and_one_per_length() -> None:
    """ACL probes are one per stored prefix length, most specific first, for the address's
    own family."""
    addr = acl.canonical_ip("10.1.2.3")
    assert acl.probes(addr, [8, 32, 24, 24]) == ["10.1.2.3/32", "10.1.2.0/24", "10.0.0.0/8"]
    assert acl.probes(addr, [64]) == []  # an IPv6 length never applies to IPv4


networks_v4 = st.builds(
    lambda a, n: ipaddress.ip_network((a, n), strict=False),
    st.integers(0, 2**32 - 1),
    st.sampled_from([8, 16, 20, 24, 28, 30, 32]),
)


@given(st.lists(networks_v4, max_size=40), st.integers(0, 2**32 - 1))
def test_probe_lookup_equals_brute_force_most_specific(nets: list, raw: int) -> None:
    """Looking up the probes in a dict gives the most specific containing network."""
    index = {str(n): n for n in nets}
    addr = ipaddress.IPv4Address(raw)
    found = next(
        (index[k] for k in acl.probes(addr, {n.prefixlen for n in nets}) if k in index), None
    )
    containing = [n for n in nets if addr in n]
    if not containing:
        assert found is None
    else:
        assert found is not None and found.prefixlen == max(n.prefixlen for n in containing)
        assert addr in found


def test_contains_never_mixes_families() -> None:
    """An IPv4 address never matches an IPv6 network, nor the reverse."""
    assert acl.contains(["127.0.0.0/8"], acl.canonical_ip("::ffff:127.0.0.5"))
    assert not acl.contains(["::/0"], acl.canonical_ip("127.0.0.5"))
    assert not acl.contains([], acl.canonical_ip("127.0.0.5"))
