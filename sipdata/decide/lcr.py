"""Least-cost routing over carrier rate decks, and the compiled serving table.

A carrier's rate for a number is its row at the longest of *its own* prefixes
that matches the number, among its rows in effect on the day
(`effective_date <= day < expiry_date`, dates in UTC); where several rows of
one carrier and prefix are in effect, the latest `effective_date` wins.
Carriers are then ordered by rate, priority and carrier id.

`compile_deck` turns the decks into one entry per prefix that occurs in any
deck. The entry at prefix P lists, per carrier, the rows at P and at P's
ancestors that can still be that carrier's answer on some day from the
compile day on, so `resolve(entry, day)` is exact for every later day: a row
starting or ceasing to be in effect needs no rebuild. A lookup then needs
only the entry at the longest compiled prefix of the number.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sipdata.decide.models import is_uuid

# Defaults of RateRow.to_stored's positions 3.. (prefix, until, priority); 0-2 have none.
_STORED_DEFAULTS: tuple[Any, ...] = (None, None, None, "", 0, 100)


_MICRO = Decimal("0.000001")  # lcr_rates.rate is DECIMAL(10, 6)


# Few carriers, a million rows each: their ids are converted once.
@functools.lru_cache(maxsize=4096)
def _compact_id(carrier_id: str) -> str:
    return carrier_id.replace("-", "") if is_uuid(carrier_id) else carrier_id


@functools.lru_cache(maxsize=4096)
def _full_id(stored: str) -> str:
    if len(stored) == 32 and is_uuid(stored):
        return str(uuid.UUID(stored))
    return stored


def _yyyymmdd(day: dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def _day(n: int) -> dt.date:
    return dt.date(n // 10000, n // 100 % 100, n % 100)


def stored_entry(prefix: str, rows: Iterable[RateRow]) -> list[list[Any]]:
    """A compiled entry as the generation stores it at `prefix`."""
    return [r.to_stored(prefix) for r in rows]


@dataclass(frozen=True, slots=True)
class RateRow:
    carrier_id: str
    prefix: str
    rate: Decimal
    priority: int
    effective: dt.date
    expiry: dt.date | None = None

    def in_effect(self, day: dt.date) -> bool:
        return self.effective <= day and (self.expiry is None or day < self.expiry)

    def to_json(self) -> dict[str, Any]:
        """Serving-store form: the seed's {carrier_id, rate, priority} plus provenance."""
        return {
            "carrier_id": self.carrier_id,
            "rate": str(self.rate),
            "priority": self.priority,
            "prefix": self.prefix,
            "from": self.effective.isoformat(),
            "until": self.expiry.isoformat() if self.expiry else None,
        }

    def to_stored(self, entry_prefix: str) -> list[Any]:
        """The generation's compact form, under 60 bytes a row, so a one-row entry fits
        Redis's 64-byte allocation (docs/benchmarks.md): [carrier, rate, from, prefix,
        until, priority] with a UUID carrier id as 32 hex digits, the rate a JSON
        number (at most 6 decimals: exact through a float), days as YYYYMMDD
        numbers, the prefix "" when it is the entry's own, and trailing defaults
        ("", 0 = open-ended, 100) left off."""
        out: list[Any] = [_compact_id(self.carrier_id), float(self.rate), _yyyymmdd(self.effective)]
        own = self.prefix == entry_prefix
        if self.expiry is None and self.priority == 100:  # most rows: no tail at all
            if not own:
                out.append(self.prefix)
            return out
        out += ["" if own else self.prefix, _yyyymmdd(self.expiry) if self.expiry else 0]
        if self.priority != 100:
            out.append(self.priority)
        return out

    @classmethod
    def from_stored(cls, doc: list[Any] | dict[str, Any], entry_prefix: str) -> RateRow:
        """A row of a stored entry: the compact list, or the dict of format 2."""
        if isinstance(doc, dict):
            return cls.from_json(doc)
        full = [*doc, *_STORED_DEFAULTS[len(doc) :]]
        carrier_id, rate, start, prefix, until, priority = full
        return cls(
            carrier_id=_full_id(str(carrier_id)),
            prefix=str(prefix) or entry_prefix,
            rate=Decimal(repr(rate) if isinstance(rate, float) else str(rate)).quantize(_MICRO),
            priority=int(priority),
            effective=_day(int(start)),
            expiry=_day(int(until)) if until else None,
        )

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RateRow:
        until = doc.get("until")
        return cls(
            carrier_id=str(doc["carrier_id"]),
            prefix=str(doc["prefix"]),
            rate=Decimal(str(doc["rate"])),
            priority=int(doc["priority"]),
            effective=dt.date.fromisoformat(doc["from"]),
            expiry=dt.date.fromisoformat(until) if until else None,
        )


@dataclass(frozen=True, slots=True)
class Offer:
    """One carrier's answer for a number: the row that sets its rate."""

    carrier_id: str
    rate: Decimal
    priority: int
    prefix: str
    effective: dt.date

    @property
    def order(self) -> tuple[Decimal, int, str]:
        return (self.rate, self.priority, self.carrier_id)


def _best(rows: Iterable[RateRow], day: dt.date) -> dict[str, RateRow]:
    """Per carrier, the winning in-effect row among `rows` (all prefixes of one number)."""
    best: dict[str, RateRow] = {}
    for row in rows:
        if not row.in_effect(day):
            continue
        cur = best.get(row.carrier_id)
        if cur is None or (len(row.prefix), row.effective) > (len(cur.prefix), cur.effective):
            best[row.carrier_id] = row
    return best


def _offers(best: Mapping[str, RateRow]) -> list[Offer]:
    offers = [Offer(r.carrier_id, r.rate, r.priority, r.prefix, r.effective) for r in best.values()]
    return sorted(offers, key=lambda o: o.order)


def brute_force(rows: Iterable[RateRow], number: str, day: dt.date) -> list[Offer]:
    """The definition, by scanning every row: the reference the compiled table must equal."""
    return _offers(_best((r for r in rows if number.startswith(r.prefix)), day))


def resolve(entry: Sequence[RateRow], day: dt.date) -> list[Offer]:
    """Ordered offers for any number whose longest compiled prefix holds `entry`."""
    return _offers(_best(entry, day))


def _covers_from(rows: Sequence[RateRow], day: dt.date) -> bool:
    """Whether some row of `rows` is in effect on every day from `day` on."""
    if len(rows) == 1:  # most prefixes of a deck: one row, open-ended or not
        return rows[0].effective <= day and rows[0].expiry is None
    cursor = day
    for row in sorted(rows, key=lambda r: r.effective):
        if row.effective > cursor:
            return False
        if row.expiry is None:
            return True
        cursor = max(cursor, row.expiry)
    return False


def compile_deck(rows: Iterable[RateRow], today: dt.date) -> dict[str, list[RateRow]]:
    """One entry per prefix of any deck; exact for `today` and every later day."""
    by_prefix: dict[str, list[RateRow]] = {}
    for row in rows:
        by_prefix.setdefault(row.prefix, []).append(row)
    return dict(compile_sorted(((p, by_prefix[p]) for p in sorted(by_prefix)), today))


def compile_sorted(
    groups: Iterable[tuple[str, Sequence[RateRow]]], today: dt.date
) -> Iterator[tuple[str, list[RateRow]]]:
    """`compile_deck` as a stream: (prefix, rows at it) in sorted prefix order in,
    (prefix, compiled entry) out (DeckCompiler, one prefix at a time)."""
    compiler = DeckCompiler(today)
    for prefix, rows in groups:
        entry = compiler.push(prefix, rows)
        if entry is not None:
            yield prefix, entry


class DeckCompiler:
    """Compiles prefixes pushed in sorted order, holding only the chain of ancestors.

    Each prefix inherits its nearest ancestor's per-carrier rows (a stack of
    ancestors: O(prefixes x carriers)). A carrier's ancestor rows are dropped
    below a prefix whose own rows cover every day from `today` on, since no
    longer-lived shorter match can win then. A whole deck is never held: the
    warmer pushes it from a database cursor (jobs/warmer.py).
    """

    def __init__(self, today: dt.date) -> None:
        self.today = today
        self._stack: list[tuple[str, dict[str, list[RateRow]]]] = []

    def push(self, prefix: str, rows: Sequence[RateRow]) -> list[RateRow] | None:
        """The entry at `prefix` (None: none of its rows can ever be in effect again)."""
        own: dict[str, list[RateRow]] = {}
        for row in rows:
            if row.expiry is not None and row.expiry <= self.today:
                continue  # expired for good: can never be an answer again
            own.setdefault(row.carrier_id, []).append(row)
        if not own:
            return None
        stack = self._stack
        while stack and not prefix.startswith(stack[-1][0]):
            stack.pop()
        inherited = stack[-1][1] if stack else {}
        merged = dict(inherited)  # carriers without rows here keep their ancestor's
        for carrier_id, mine in own.items():
            if _covers_from(mine, self.today):
                merged[carrier_id] = mine
            else:
                merged[carrier_id] = mine + inherited.get(carrier_id, [])
        stack.append((prefix, merged))
        return [r for carrier_rows in merged.values() for r in carrier_rows]


def longest_entry(
    number: str, found: Mapping[str, Sequence[RateRow]]
) -> tuple[str, Sequence[RateRow]] | None:
    """The entry at the longest prefix of `number` present in `found`."""
    for n in range(len(number), 0, -1):
        entry = found.get(number[:n])
        if entry is not None:
            return number[:n], entry
    return None
