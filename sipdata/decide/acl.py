"""Source-address ACLs: canonical addresses and most-specific-network probes.

The serving store keeps one entry per network, keyed by its CIDR text. A
lookup probes the address's network at each prefix length that occurs in the
ACL (longest first), so its cost grows with the number of distinct lengths,
never with the number of entries.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from sipdata.errors import InputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def canonical_ip(text: str, field: str = "ip") -> IPAddress:
    """Parse an address; an IPv4-mapped IPv6 address becomes the IPv4 address."""
    addr = _parsed(text)
    if addr is None:
        raise InputError(f"{field} is not an IP address", field=field)
    return addr


# Every decision parses its source address, and a carrier sends thousands of
# calls from a handful: ipaddress's parser was 2 % of a decision's CPU (py-spy).
# Bounded, so a stream of distinct addresses only evicts.
@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> IPAddress | None:
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def parse_network(text: str, mask: int | None = None) -> IPNetwork:
    """A network from `a.b.c.d`, `a.b.c.d/n` or an address plus a mask length.

    Host bits are cleared (10.1.2.3/24 means 10.1.2.0/24), as operators write it.
    IPv4-mapped IPv6 networks are folded to IPv4 like addresses are.
    """
    raw = text.strip()
    if "/" not in raw and mask is not None:
        raw = f"{raw}/{mask}"
    net = ipaddress.ip_network(raw, strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None:
        if net.prefixlen < 96:
            raise ValueError("an IPv4-mapped network needs a prefix of at least /96")
        v4 = net.network_address.ipv4_mapped
        return ipaddress.IPv4Network((v4, net.prefixlen - 96))
    return net


def probes(addr: IPAddress, lengths: Iterable[int]) -> list[str]:
    """CIDR keys to look up for `addr`, most specific first."""
    return [
        str(ipaddress.ip_network((addr, n), strict=False))
        for n in sorted(set(lengths), reverse=True)
        if 0 <= n <= addr.max_prefixlen
    ]


def contains(networks: Sequence[str], addr: IPAddress) -> bool:
    """Whether any CIDR text in `networks` holds `addr` (families never mix)."""
    for text in networks:
        net = ipaddress.ip_network(text)
        if net.version == addr.version and addr in net:
            return True
    return False
