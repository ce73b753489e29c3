"""Network namespaces on one bridge, built with pyroute2, and the faults tests put on them.

Each host is a namespace with one veth on the bridge (10.213.N.x/24); the root
namespace holds the bridge's address, so the test process reaches every host.
Faults are real packet drops by iptables inside a host's namespace (loss,
partition, black hole); latency is added by the relays (relay.py: this kernel
has no netem). Everything this module makes is named after PREFIX and the
test process's pid, and removed on exit; leftovers of a run that was killed
(its pid gone) are removed before a new lab is built.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from pyroute2 import IPRoute, NetNS, netns

PREFIX = "sdf"
IPTABLES = "iptables-legacy"


def require_tools() -> None:
    """Fail loudly (never skip) when the machine cannot build the lab."""
    missing = [t for t in ("ip", IPTABLES) if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} missing: run `make faults-deps` (apt iptables)")
    if os.geteuid() != 0:
        raise RuntimeError("the network-fault tests create namespaces: run them as root")


@dataclass(frozen=True)
class Host:
    name: str  # the namespace
    ip: str
    veth: str  # its link's end in the root namespace

    def run(self, *cmd: str) -> list[str]:
        """`cmd` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *cmd]


class Lab:
    """Hosts by role ("edge", "a", …), joined by one bridge."""

    def __init__(self, roles: Sequence[str]) -> None:
        self.tag = str(os.getpid())
        self.net = f"10.213.{os.getpid() % 250}"
        self.bridge = f"{PREFIX}{self.tag}b"[:15]
        self.gateway = f"{self.net}.1"
        self.hosts = {
            role: Host(
                f"{PREFIX}-{self.tag}-{role}", f"{self.net}.{10 + i}", f"{PREFIX}{self.tag}v{i}"
            )
            for i, role in enumerate(roles)
        }

    def __getitem__(self, role: str) -> Host:
        return self.hosts[role]

    def build(self) -> None:
        remove_stale()
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.bridge, kind="bridge")
            (br,) = ipr.link_lookup(ifname=self.bridge)
            ipr.addr("add", index=br, address=self.gateway, prefixlen=24)
            ipr.link("set", index=br, state="up")
            for host in self.hosts.values():
                netns.create(host.name)
                peer = host.veth + "p"
                ipr.link("add", ifname=host.veth, kind="veth", peer=peer)
                (end,) = ipr.link_lookup(ifname=host.veth)
                (far,) = ipr.link_lookup(ifname=peer)
                ipr.link("set", index=far, net_ns_fd=host.name)
                ipr.link("set", index=end, master=br, state="up")
                with NetNS(host.name) as ns:
                    (inner,) = ns.link_lookup(ifname=peer)
                    ns.addr("add", index=inner, address=host.ip, prefixlen=24)
                    ns.link("set", index=inner, state="up")
                    (lo,) = ns.link_lookup(ifname="lo")
                    ns.link("set", index=lo, state="up")

    def remove(self) -> None:
        for host in self.hosts.values():
            with contextlib.suppress(OSError, FileNotFoundError):
                netns.remove(host.name)
        with IPRoute() as ipr, contextlib.suppress(Exception):
            for index in ipr.link_lookup(ifname=self.bridge):
                ipr.link("del", index=index)

    # -- faults: iptables inside the host's namespace (loopback left alone) ----

    def drop(self, role: str, probability: float = 1.0) -> None:
        """Drop that share of the packets the host sends and receives on its link (1.0:
        a partition; on the database's host, a black hole: connections hang)."""
        match = [] if probability >= 1 else ["-m", "statistic", "--mode", "random"]
        match += [] if probability >= 1 else ["--probability", str(probability)]
        host = self[role]
        for chain, iface in (("INPUT", "-i"), ("OUTPUT", "-o")):
            _check(host.run(IPTABLES, "-A", chain, "!", iface, "lo", *match, "-j", "DROP"))

    def heal(self, role: str) -> None:
        _check(self[role].run(IPTABLES, "-F"))


def _check(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


def remove_stale() -> None:
    """Namespaces and links of earlier runs whose process is gone."""

    def gone(tag: str) -> bool:
        try:
            os.kill(int(tag), 0)
        except (ProcessLookupError, ValueError):
            return True
        except PermissionError:
            return False
        return False

    for name in netns.listnetns():
        found = re.fullmatch(rf"{PREFIX}-(\d+)-.*", name)
        if found and gone(found.group(1)):
            with contextlib.suppress(OSError):
                netns.remove(name)
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            found = re.fullmatch(rf"{PREFIX}(\d+)[bv].*", name)
            if found and gone(found.group(1)):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=link["index"])
