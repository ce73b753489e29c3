"""Carrier rate-deck CSV: parse and validate every line before anything is written.

Columns (header row required, any order, names case-insensitive):
    prefix          digits, 1-20 (a leading '+' is dropped)              required
    rate            decimal >= 0, at most 6 decimals, below 10000        required
    effective_date  YYYY-MM-DD (UTC day the row starts)                  required
    expiry_date     YYYY-MM-DD, after effective_date (first day not in effect)
    priority        whole number >= 0, default 100 (tie-break after rate)
    description     text, at most 255 characters
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sipdata.errors import ImportFileError

REQUIRED = ("prefix", "rate", "effective_date")
OPTIONAL = ("expiry_date", "priority", "description")
MAX_RATE = Decimal("10000")


@dataclass(frozen=True, slots=True)
class DeckRow:
    prefix: str
    rate: Decimal
    effective_date: dt.date
    expiry_date: dt.date | None
    priority: int
    description: str | None


def _date(value: str, line: int, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ImportFileError(
            f"{field} {value!r} is not a YYYY-MM-DD date", line=line, field=field
        ) from None


def _row(raw: dict[str, str], line: int) -> DeckRow:
    prefix = raw["prefix"].strip().removeprefix("+")
    if not (prefix.isascii() and prefix.isdigit()) or not 1 <= len(prefix) <= 20:
        raise ImportFileError(
            f"prefix {raw['prefix']!r} must be 1-20 digits", line=line, field="prefix"
        )
    try:
        rate = Decimal(raw["rate"].strip())
    except InvalidOperation:
        raise ImportFileError(
            f"rate {raw['rate']!r} is not a number", line=line, field="rate"
        ) from None
    exponent = rate.as_tuple().exponent
    if (
        not rate.is_finite()
        or rate < 0
        or rate >= MAX_RATE
        or (isinstance(exponent, int) and exponent < -6)
    ):
        raise ImportFileError(
            f"rate {raw['rate']!r} must be >= 0, below {MAX_RATE}, with at most 6 decimals",
            line=line,
            field="rate",
        )
    effective = _date(raw["effective_date"].strip(), line, "effective_date")
    expiry_text = (raw.get("expiry_date") or "").strip()
    expiry = _date(expiry_text, line, "expiry_date") if expiry_text else None
    if expiry is not None and expiry <= effective:
        raise ImportFileError(
            "expiry_date must be after effective_date", line=line, field="expiry_date"
        )
    priority_text = (raw.get("priority") or "").strip()
    try:
        priority = int(priority_text) if priority_text else 100
    except ValueError:
        raise ImportFileError(
            f"priority {priority_text!r} is not a whole number", line=line, field="priority"
        ) from None
    if priority < 0:
        raise ImportFileError("priority must be >= 0", line=line, field="priority")
    description = (raw.get("description") or "").strip() or None
    if description is not None and len(description) > 255:
        raise ImportFileError(
            "description is longer than 255 characters", line=line, field="description"
        )
    return DeckRow(
        prefix, rate.normalize() if rate else Decimal(0), effective, expiry, priority, description
    )


def parse(lines: Iterable[str]) -> list[DeckRow]:
    """All rows of a deck, or ImportFileError for the first bad line (nothing partial)."""
    return list(rows(lines))


def rows(lines: Iterable[str]) -> Iterator[DeckRow]:
    """The rows of a deck as they are read, each validated; ImportFileError at the first
    bad line (the header's as soon as it is read). An importer writing them as they
    come keeps the import all-or-nothing by its transaction (db/provision.py)."""
    reader = csv.reader(lines)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ImportFileError("the file is empty", line=1) from None
    except csv.Error as exc:
        raise ImportFileError(f"unreadable CSV: {exc}", line=1) from None
    unknown = [h for h in header if h not in REQUIRED + OPTIONAL]
    if unknown:
        raise ImportFileError(f"unknown column {unknown[0]!r}", line=1, field=unknown[0])
    missing = [h for h in REQUIRED if h not in header]
    if missing:
        raise ImportFileError(f"missing column {missing[0]!r}", line=1, field=missing[0])
    if len(set(header)) != len(header):
        raise ImportFileError("a column appears twice", line=1)
    seen: dict[tuple[str, dt.date], int] = {}
    try:
        for values in reader:
            line = reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise ImportFileError(
                    f"expected {len(header)} fields, found {len(values)}", line=line
                )
            row = _row(dict(zip(header, values, strict=True)), line)
            key = (row.prefix, row.effective_date)
            if key in seen:
                raise ImportFileError(
                    f"prefix {row.prefix} with effective_date {row.effective_date} "
                    f"already on line {seen[key]}",
                    line=line,
                    field="prefix",
                )
            seen[key] = line
            yield row
    except csv.Error as exc:
        raise ImportFileError(f"unreadable CSV: {exc}", line=reader.line_num) from None
    if not seen:
        raise ImportFileError("the file has no rate rows", line=reader.line_num or 1)
