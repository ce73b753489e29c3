"""Export sipdata's data as Kamailio db_text tables for configuration (b).

The same rows sipdata serves: IP trunks' networks -> `address` (group 1, tag =
trunk id), digest trunks' HA1 -> `subscriber`, channel limits -> an htable, and
the rate decks compiled exactly as sipdata compiles them -> `lcr_gw`, one
stopper `lcr_rule` per compiled prefix and its carriers' gateways as
`lcr_rule_target`s ranked by price. Ranking by price in advance is what lets
Kamailio's lcr module, which orders by prefix length and priority, give the
same first choice and failover order as sipdata.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
from pathlib import Path

from sipdata.db.pool import create_pool
from sipdata.db.reads import RateGroups, Store
from sipdata.decide import lcr
from sipdata.settings import Settings

TEMPLATES = Path("/usr/share/kamailio/dbtext/kamailio")
TABLES = ("address", "subscriber", "lcr_gw", "lcr_rule", "lcr_rule_target")
HTABLE_HEADER = (
    "id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int)"
)


def _esc(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def _write(path: Path, header: str, rows: list[tuple[object, ...]]) -> None:
    with path.open("w") as f:
        f.write(header.rstrip() + "\n")
        for row in rows:
            f.write(":".join("" if v is None else _esc(v) for v in row) + "\n")


async def export(settings: Settings, out: Path) -> dict[str, int]:
    """Write the tables into `out` (replaced); row counts per table."""
    today = dt.datetime.now(dt.UTC).date()
    pool = await create_pool(settings, min_size=0)
    try:

        async def deck(groups: RateGroups) -> dict[str, list[lcr.RateRow]]:
            return dict(lcr.compile_sorted([g async for g in groups], today))

        snap, compiled = await Store(pool).snapshot(
            today, dt.datetime.now(dt.UTC).replace(tzinfo=None), deck
        )
    finally:
        await pool.close()
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    header = {t: (TEMPLATES / t).read_text().splitlines()[0] for t in TABLES}
    versions = [
        x for x in (TEMPLATES / "version").read_text().splitlines()[1:] if x.split(":")[1] in TABLES
    ]
    (out / "version").write_text(
        (TEMPLATES / "version").read_text().splitlines()[0]
        + "\n"
        + "\n".join([*versions, "0:htable_limits:2"])
        + "\n"
    )
    address, subscriber, limits = [], [], []
    for trunk in snap.trunks.values():
        if not trunk.usable or trunk.is_carrier:
            continue
        if trunk.auth_type == "ip":
            for net in map(ipaddress.ip_network, trunk.networks):
                address.append(
                    (len(address) + 1, 1, net.network_address, net.prefixlen, 0, trunk.id)
                )
        if trunk.max_channels >= 0:
            limits.append((len(limits) + 1, trunk.id, 0, 1, trunk.max_channels, 0))
    for username, cred in snap.credentials.items():
        if cred.trunk.usable:
            subscriber.append((len(subscriber) + 1, username, cred.ha1.realm, "", cred.ha1.md5, ""))
    gws: dict[tuple[str, str], int] = {}
    for carrier in snap.carriers.values():
        for g in carrier.gateways:
            gws[(carrier.id, g.address)] = len(gws) + 1
    gw_rows = []
    for (_, address_port), gw_id in gws.items():
        host, _, port = address_port.partition(":")
        gw_rows.append(
            (
                gw_id,
                1,
                f"gw{gw_id}",
                host,
                None,
                int(port or 5060),
                None,
                1,
                1,
                None,
                None,
                None,
                0,
                None,
            )
        )
    rules, targets = [], []
    for prefix, entry in compiled.items():
        rule_id = len(rules) + 1
        rules.append((rule_id, 1, prefix, None, None, None, 1, 1))
        rank = 0
        for offer in lcr.resolve(entry, today):
            carrier = snap.carriers.get(offer.carrier_id)
            for g in carrier.gateways if carrier else ():
                targets.append(
                    (
                        len(targets) + 1,
                        1,
                        rule_id,
                        gws[(offer.carrier_id, g.address)],
                        min(rank, 255),
                        1,
                    )
                )
                rank += 1
    _write(out / "address", header["address"], address)
    _write(out / "subscriber", header["subscriber"], subscriber)
    _write(out / "lcr_gw", header["lcr_gw"], gw_rows)
    _write(out / "lcr_rule", header["lcr_rule"], rules)
    _write(out / "lcr_rule_target", header["lcr_rule_target"], targets)
    _write(out / "htable_limits", HTABLE_HEADER, limits)
    return {
        "address": len(address),
        "subscriber": len(subscriber),
        "lcr_gw": len(gw_rows),
        "lcr_rule": len(rules),
        "lcr_rule_target": len(targets),
        "limits": len(limits),
    }
