"""Per-customer routing rules: parse, match (pattern + time window), transform, order.

Formats of the JSONB columns (docs/api.md has examples):
- `match_type`: `prefix` | `exact` (patterns are canonicalised like numbers) or
  `regex` (RE2 syntax, searched in the canonical number; RE2 runs in linear
  time, so no pattern can backtrack catastrophically).
- `time_condition`: `{}` (always) or any of `timezone` (IANA name, default
  UTC), `days` (`mon`..`sun` or ISO 1..7), `start` / `end` (`HH:MM`, end
  exclusive; start > end wraps midnight).
- `transform_rules`: `{}` or any of `strip` (drop N leading digits), `replace`
  (`{"pattern": RE2, "with": template}`), `prefix` (digits to prepend),
  applied in that order to the called number.
- `action` / `destination`: `trunk` / trunk id; `forward` / SIP URI; `lcr` / -;
  `reject` / `"CODE [reason]"` (400..699, default `403 Forbidden`).
- `trunk_id`, when set, limits the rule to calls from that trunk.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

from sipdata.decide.models import Trunk, is_uuid
from sipdata.decide.numbers import canonical
from sipdata.errors import InputError

ACTIONS = ("trunk", "forward", "lcr", "reject")
MATCH_TYPES = ("prefix", "exact", "regex")
_DAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 1 << 20  # bounded program size per pattern


class RuleError(ValueError):
    """A stored rule cannot be used; the warmer skips it and says why."""


@dataclass(frozen=True, slots=True)
class TimeWindow:
    tz: zoneinfo.ZoneInfo
    days: frozenset[int]  # ISO weekdays; empty = every day
    start: dt.time | None
    end: dt.time | None

    def contains(self, now: dt.datetime) -> bool:
        local = now.astimezone(self.tz)
        if self.days and local.isoweekday() not in self.days:
            return False
        if self.start is None or self.end is None:
            return True
        t = local.time()
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass(frozen=True, slots=True)
class Transform:
    strip: int = 0
    pattern: Any = None  # compiled RE2 or None
    replacement: str = ""
    prefix: str = ""

    def apply(self, number: str) -> str:
        out = number[self.strip :]
        if self.pattern is not None:
            out = self.pattern.sub(self.replacement, out, count=1)
        return self.prefix + out


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    org_id: str
    name: str
    source_trunk_id: str | None
    priority: int
    match_type: str
    pattern: str
    regex: Any
    window: TimeWindow | None
    action: str
    destination: str | None
    transform: Transform
    weight: int
    max_calls: int | None

    def matches(self, number: str, now: dt.datetime, source_trunk_id: str | None) -> bool:
        if self.source_trunk_id is not None and self.source_trunk_id != source_trunk_id:
            return False
        if self.match_type == "prefix":
            hit = number.startswith(self.pattern)
        elif self.match_type == "exact":
            hit = number == self.pattern
        else:
            hit = self.regex.search(number) is not None
        return hit and (self.window is None or self.window.contains(now))

    def reject_code(self) -> tuple[int, str]:
        """SIP code and reason of a `reject` rule."""
        code, _, reason = (self.destination or "403 Forbidden").strip().partition(" ")
        return int(code), reason.strip() or "Rejected"


def _re2(pattern: str, what: str) -> Any:
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        raise RuleError(f"{what} is not a valid RE2 pattern: {exc}") from None


def _time(text: Any, what: str) -> dt.time:
    try:
        return dt.time.fromisoformat(str(text))
    except ValueError:
        raise RuleError(f"time_condition.{what} must be HH:MM") from None


def parse_window(doc: Mapping[str, Any] | None) -> TimeWindow | None:
    if not doc:
        return None
    unknown = set(doc) - {"timezone", "days", "start", "end"}
    if unknown:
        raise RuleError(f"time_condition has unknown keys {sorted(unknown)}")
    try:
        tz = zoneinfo.ZoneInfo(str(doc.get("timezone") or "UTC"))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise RuleError("time_condition.timezone is not an IANA zone") from None
    days: set[int] = set()
    for d in doc.get("days") or ():
        day = _DAYS.get(d.lower()) if isinstance(d, str) else d
        if not isinstance(day, int) or not 1 <= day <= 7:
            raise RuleError(f"time_condition.days has {d!r}")
        days.add(day)
    start = _time(doc["start"], "start") if "start" in doc else None
    end = _time(doc["end"], "end") if "end" in doc else None
    if (start is None) != (end is None):
        raise RuleError("time_condition needs both start and end")
    return TimeWindow(tz, frozenset(days), start, end)


def parse_transform(doc: Mapping[str, Any] | None) -> Transform:
    if not doc:
        return Transform()
    unknown = set(doc) - {"strip", "replace", "prefix"}
    if unknown:
        raise RuleError(f"transform_rules has unknown keys {sorted(unknown)}")
    strip = doc.get("strip", 0)
    if not isinstance(strip, int) or strip < 0:
        raise RuleError("transform_rules.strip must be a whole number >= 0")
    prefix = str(doc.get("prefix", ""))
    if prefix and not (prefix.isascii() and prefix.isdigit()):
        raise RuleError("transform_rules.prefix must be digits")
    replace = doc.get("replace")
    if replace is None:
        return Transform(strip=strip, prefix=prefix)
    if not isinstance(replace, Mapping) or "pattern" not in replace:
        raise RuleError("transform_rules.replace needs pattern and with")
    pattern = _re2(str(replace["pattern"]), "transform_rules.replace.pattern")
    return Transform(strip, pattern, str(replace.get("with", "")), prefix)


def _int(value: Any, default: int | None, what: str) -> Any:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RuleError(f"{what} must be a whole number")
    try:
        return int(value)
    except ValueError:
        raise RuleError(f"{what} must be a whole number") from None


def parse_rule(row: Mapping[str, Any]) -> Rule:
    """A validated Rule from a `routing_rules` row (JSON form); RuleError if unusable."""
    match_type = str(row.get("match_type") or "prefix")
    if match_type not in MATCH_TYPES:
        raise RuleError(f"match_type {match_type!r} is not one of {MATCH_TYPES}")
    action = str(row.get("action") or "")
    if action not in ACTIONS:
        raise RuleError(f"action {action!r} is not one of {ACTIONS}")
    raw_pattern = str(row["match_pattern"])
    regex = None
    if match_type == "regex":
        regex = _re2(raw_pattern, "match_pattern")
        pattern = raw_pattern
    else:
        try:
            pattern = canonical(raw_pattern, "match_pattern")
        except InputError as exc:
            raise RuleError(exc.message) from None
    destination = row.get("destination")
    if action in ("trunk", "forward") and not destination:
        raise RuleError(f"action {action} needs a destination")
    if action == "trunk" and not is_uuid(str(destination)):
        raise RuleError("trunk destination must be a trunk id (UUID)")
    if action == "forward" and not str(destination).startswith(("sip:", "sips:")):
        raise RuleError("forward destination must be a sip: or sips: URI")
    rule = Rule(
        id=str(row["id"]),
        org_id=str(row["org_id"]),
        name=str(row.get("name") or ""),
        source_trunk_id=str(row["trunk_id"]) if row.get("trunk_id") else None,
        priority=_int(row.get("priority"), 100, "priority"),
        match_type=match_type,
        pattern=pattern,
        regex=regex,
        window=parse_window(row.get("time_condition")),
        action=action,
        destination=str(destination) if destination else None,
        transform=parse_transform(row.get("transform_rules")),
        weight=_int(row.get("weight"), 100, "weight"),
        max_calls=_int(row.get("max_calls"), None, "max_calls"),
    )
    if action == "reject":
        try:
            code, _ = rule.reject_code()
        except ValueError:
            raise RuleError("reject destination must start with a SIP code") from None
        if not 400 <= code <= 699:
            raise RuleError("reject code must be 400..699")
    if rule.weight < 0:
        raise RuleError("weight must be >= 0")
    return rule


def _draw(call_id: str, rule_id: str) -> float:
    """A uniform (0, 1) number fixed by the call, so a retransmission routes alike."""
    digest = hashlib.blake2b(f"{call_id}\x00{rule_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 1) / (2**64 + 1)


def _weighted(group: Sequence[Rule], call_id: str) -> list[Rule]:
    """Weighted order without replacement (Efraimidis-Spirakis keys); weight 0 goes last."""

    def key(rule: Rule) -> tuple[int, float, str]:
        if rule.weight == 0:
            return (1, 0.0, rule.id)
        return (0, -math.log(_draw(call_id, rule.id)) / rule.weight, rule.id)

    return sorted(group, key=key)


def ordered_matches(
    rules: Iterable[Rule],
    number: str,
    now: dt.datetime,
    call_id: str,
    source_trunk_id: str | None,
) -> list[Rule]:
    """Matching rules by priority; equal priorities ordered by weight, fixed per Call-ID."""
    by_priority: dict[int, list[Rule]] = {}
    for rule in rules:
        if rule.matches(number, now, source_trunk_id):
            by_priority.setdefault(rule.priority, []).append(rule)
    out: list[Rule] = []
    for priority in sorted(by_priority):
        out.extend(_weighted(by_priority[priority], call_id))
    return out


@dataclass(frozen=True, slots=True)
class OrgRules:
    """One org's routing rules and the trunks they may send calls to: the stored doc
    of `route:custom:g{n}` (what the warmer writes) and of its read-through entry."""

    rules: tuple[Rule, ...] = ()
    targets: Mapping[str, Trunk] = field(default_factory=dict)
    # Stored rules that do not parse (rule id, why): left out, for the caller to log.
    skipped: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def to_json(rows: Sequence[Mapping[str, Any]], targets: Mapping[str, Trunk]) -> dict[str, Any]:
        """The stored form: the rule rows as the database has them, and the targets."""
        return {"rules": list(rows), "targets": {k: t.to_json() for k, t in targets.items()}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> OrgRules:
        rules: list[Rule] = []
        skipped: list[tuple[str, str]] = []
        for row in doc.get("rules") or ():
            try:
                rules.append(parse_rule(row))
            except RuleError as exc:
                skipped.append((str(row.get("id")), str(exc)))
        targets = {k: Trunk.from_json(v) for k, v in (doc.get("targets") or {}).items()}
        return cls(tuple(rules), targets, tuple(skipped))
