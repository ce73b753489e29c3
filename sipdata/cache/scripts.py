"""The Lua scripts (`scripts/*.lua`), loaded once, and one typed builder of KEYS and ARGV each.

Every script file starts with its KEYS and ARGV, named (`-- KEYS: a, b` and
`-- ARGV: x, y`, with `then per <thing>: ...` for a repeated tail) and reads
them into locals of those names. The NamedTuples below carry the same names in
the same order; `tests/unit/test_scripts.py` holds each file's header and its
tuples together, so a wrong count or order fails a unit test, not a call. A
file may pull in a shared function with `--! include lib/<name>.lua`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

_INCLUDE = re.compile(r"^--! include (\S+)$", re.MULTILINE)


@cache
def source(name: str) -> str:
    """The text Redis runs for `name` (includes resolved)."""
    text = resources.files("sipdata.cache").joinpath("scripts", f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda m: source(m.group(1).removesuffix(".lua")), text)


class Header(NamedTuple):
    keys: tuple[str, ...]
    keys_each: tuple[str, ...]
    argv: tuple[str, ...]
    argv_each: tuple[str, ...]


def header(name: str) -> Header:
    """The named KEYS and ARGV a script file declares (fixed part, repeated part)."""
    text = resources.files("sipdata.cache").joinpath("scripts", f"{name}.lua").read_text()

    def names(kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        found = re.search(rf"^-- {kind}: (.*)$", text, re.MULTILINE)
        if found is None:
            return (), ()
        fixed, _, each = found.group(1).partition("then per ")
        each = each.partition(":")[2]

        def split(part: str) -> tuple[str, ...]:
            return tuple(n.strip() for n in part.split(",") if n.strip())

        return split(fixed), split(each)

    keys, keys_each = names("KEYS")
    argv, argv_each = names("ARGV")
    return Header(keys, keys_each, argv, argv_each)


# -- builders: field names and order are the scripts' headers ----------------


class NextGenerationKeys(NamedTuple):
    sequence: str


class NextGenerationArgv(NamedTuple):
    now_ms: int


class SwitchKeys(NamedTuple):
    current: str
    epoch: str


class SwitchArgv(NamedTuple):
    generation: int
    grace_s: int


class SwitchEach(NamedTuple):
    kind_prefix: str


class RegisterKeys(NamedTuple):
    registration: str
    trunks_online: str
    gone_marker: str


class RegisterArgv(NamedTuple):
    trunk_id: str
    value: bytes
    ttl_s: int
    ts: str
    call_id: str
    cseq: int
    marker_ttl_s: int


class AdmitKeys(NamedTuple):
    lease: str
    trunk_set: str
    org_set: str
    rule_set: str
    rate_window: str
    channel_trunks: str
    leases_kept: str
    ended: str


class AdmitArgv(NamedTuple):
    call_id: str
    now_ms: int
    pending_ms: int
    set_ms: int
    trunk_max: int
    org_max: int
    rule_max: int
    rule_id: str
    cps_max: int
    window_ttl_s: int
    trunk_id: str
    lease_doc: str


class DecideKeys(NamedTuple):
    current: str
    lcr_hash: str
    did_hash: str
    did_readthrough: str
    lease: str
    trunk_set: str
    org_set: str
    rule_set: str
    rate_window: str
    channel_trunks: str
    leases_kept: str
    ended: str
    breakers: str
    quality: str


class DecideArgv(NamedTuple):
    params: bytes  # JSON; its fields are listed in decide.lua


class ReleaseKeys(NamedTuple):
    lease: str


class ReleaseArgv(NamedTuple):
    call_id: str


class LeaseDocsKeysEach(NamedTuple):
    lease: str


class LeaseDocsArgvEach(NamedTuple):
    lease_doc: bytes


class CallEventsKeys(NamedTuple):
    stream: str


class CallEventsKeysEach(NamedTuple):
    lease: str
    ended: str
    holds: str


class CallEventsArgv(NamedTuple):
    now_ms: int
    ringing_ms: int
    longest_ms: int
    set_ms: int
    hold_ms: int


class CallEventsArgvEach(NamedTuple):
    call_id: str
    event: str
    report: bytes


class ChannelCountsKeys(NamedTuple):
    channel_trunks: str
    marker: str


class ChannelCountsArgv(NamedTuple):
    now_ms: int
    trunk_set_prefix: str


class RestoreChannelsKeys(NamedTuple):
    marker: str
    channel_trunks: str


class RestoreChannelsArgv(NamedTuple):
    now_ms: int
    window_ms: int
    set_ms: int
    trunk_set_prefix: str
    org_set_prefix: str


class RestoreChannelsArgvEach(NamedTuple):
    trunk_id: str
    org_id: str
    channels: int


class PruneOnlineKeys(NamedTuple):
    trunks_online: str


class PruneOnlineArgv(NamedTuple):
    registration_prefix: str


class DeadLetterKeys(NamedTuple):
    stream: str
    dead: str
    dead_index: str


class DeadLetterArgv(NamedTuple):
    group: str
    entry_id: str
    identity: str


class DeadLetterArgvEach(NamedTuple):
    name: bytes | str
    value: bytes | str


class ReplayDeadKeys(NamedTuple):
    dead: str
    dead_index: str


class ReplayDeadKeysEach(NamedTuple):
    stream: str


class ReplayDeadArgvEach(NamedTuple):
    entry_id: str


class HsetPackedKeys(NamedTuple):
    hash: str


class HsetPackedArgv(NamedTuple):
    fields: bytes
    ttl_s: int


class GatewayEventKeys(NamedTuple):
    breakers: str


class GatewayEventArgv(NamedTuple):
    now_ms: int
    fail_threshold: int
    open_ms: int


class GatewayEventArgvEach(NamedTuple):
    gateway: str
    event: str


class CreditKeys(NamedTuple):
    account: str
    holds: str
    held: str


class CreditArgv(NamedTuple):
    call_id: str
    now_ms: int
    rate_micro: int
    minimum_s: int
    increment_s: int
    cap_s: int
    lapse_ms: int


class CreditSettleArgvEach(NamedTuple):
    call_id: str
    cost_micro: int


class CreditLoadKeys(NamedTuple):
    account: str


class CreditLoadArgv(NamedTuple):
    avail_micro: int
    settles: int


class EndedKeysEach(NamedTuple):
    lease: str
    ended: str


class EndedArgv(NamedTuple):
    ringing_ms: int


class EndedArgvEach(NamedTuple):
    call_id: str


class Empty(NamedTuple):
    pass


@dataclass(frozen=True, slots=True)
class Shape:
    """What a script's header must say: its tuples, fixed part then repeated part."""

    keys: type[tuple[Any, ...]]
    argv: type[tuple[Any, ...]]
    keys_each: type[tuple[Any, ...]] = Empty
    argv_each: type[tuple[Any, ...]] = Empty


SHAPES: dict[str, Shape] = {
    "next_generation": Shape(NextGenerationKeys, NextGenerationArgv),
    "hset_packed": Shape(HsetPackedKeys, HsetPackedArgv),
    "switch": Shape(SwitchKeys, SwitchArgv, argv_each=SwitchEach),
    "register": Shape(RegisterKeys, RegisterArgv),
    "admit": Shape(AdmitKeys, AdmitArgv),
    "decide": Shape(DecideKeys, DecideArgv),
    "release": Shape(ReleaseKeys, ReleaseArgv),
    "lease_docs": Shape(Empty, Empty, LeaseDocsKeysEach, LeaseDocsArgvEach),
    "call_events": Shape(CallEventsKeys, CallEventsArgv, CallEventsKeysEach, CallEventsArgvEach),
    "channel_counts": Shape(ChannelCountsKeys, ChannelCountsArgv),
    "credit": Shape(CreditKeys, CreditArgv),
    "ended": Shape(Empty, EndedArgv, EndedKeysEach, EndedArgvEach),
    "credit_settle": Shape(CreditKeys, Empty, argv_each=CreditSettleArgvEach),
    "credit_load": Shape(CreditLoadKeys, CreditLoadArgv),
    "gateway_event": Shape(GatewayEventKeys, GatewayEventArgv, argv_each=GatewayEventArgvEach),
    "restore_channels": Shape(
        RestoreChannelsKeys, RestoreChannelsArgv, argv_each=RestoreChannelsArgvEach
    ),
    "prune_online": Shape(PruneOnlineKeys, PruneOnlineArgv),
    "dead_letter": Shape(DeadLetterKeys, DeadLetterArgv, argv_each=DeadLetterArgvEach),
    "replay_dead": Shape(ReplayDeadKeys, Empty, ReplayDeadKeysEach, ReplayDeadArgvEach),
}


def flat(fixed: tuple[Any, ...], each: list[tuple[Any, ...]] | None = None) -> list[Any]:
    """A fixed part and its repeated tail, as the flat list Redis takes."""
    out = list(fixed)
    for item in each or ():
        out.extend(item)
    return out


class Scripts:
    """Every script registered once with a client (EVALSHA, loaded again after a
    Redis restart by redis-py or by the pinned connections)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.by_name: dict[str, AsyncScript] = {
            name: client.register_script(source(name)) for name in SHAPES
        }

    def __getitem__(self, name: str) -> AsyncScript:
        return self.by_name[name]
