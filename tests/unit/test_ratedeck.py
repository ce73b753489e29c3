"""Rate-deck CSV parsing: every row valid, or an error naming the line and field."""

import datetime as dt
from decimal import Decimal

import pytest

from sipdata.decide.ratedeck import parse
from sipdata.errors import ImportFileError

HEADER = "prefix,rate,effective_date,expiry_date,priority,description\n"


def test_valid_deck_parses_all_rows() -> None:
    """A valid deck parses every row with its optional columns and defaults."""
    rows = parse(
        (HEADER + "1,0.005,2025-01-01,,,US\n+44,0.0123,2025-01-01,2026-01-01,5,UK\n").splitlines(
            keepends=True
        )
    )
    assert [r.prefix for r in rows] == ["1", "44"]
    assert rows[1].rate == Decimal("0.0123") and rows[1].priority == 5
    assert rows[1].expiry_date == dt.date(2026, 1, 1)
    assert rows[0].priority == 100 and rows[0].expiry_date is None


def test_columns_in_any_order_and_optional_ones_omitted() -> None:
    """Columns may come in any order and any case; optional ones may be missing."""
    rows = parse(["Effective_Date,PREFIX,rate\n", "2025-01-01,1212,0.01\n"])
    assert rows[0].prefix == "1212"


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        ("1,abc,2025-01-01,,,\n", 2, "rate"),
        ("1,-0.1,2025-01-01,,,\n", 2, "rate"),
        ("1,0.0000001,2025-01-01,,,\n", 2, "rate"),
        ("1,10000,2025-01-01,,,\n", 2, "rate"),
        ("1,0.1,2025-01-01,,,\n12a,0.1,2025-01-01,,,\n", 3, "prefix"),
        ("1,0.1,01/02/2025,,,\n", 2, "effective_date"),
        ("1,0.1,2025-01-01,2025-01-01,,\n", 2, "expiry_date"),
        ("1,0.1,2025-01-01,,high,\n", 2, "priority"),
        ("1,0.1,2025-01-01,,-1,\n", 2, "priority"),
        ("1,0.1,2025-01-01,,,\n\n1,0.2,2025-01-01,,,\n", 4, "prefix"),  # duplicate key
        ("1,0.1,2025-01-01,,,," + "\n", 2, None),  # wrong field count
        ("\u0661,0.1,2025-01-01,,,\n", 2, "prefix"),
        ("1,0.1,2025-01-01,,," + "x" * 256 + "\n", 2, "description"),
    ],
)
def test_invalid_row_names_line_and_field(body: str, line: int, field: str | None) -> None:
    """An invalid row is refused naming its line and field."""
    with pytest.raises(ImportFileError) as info:
        parse((HEADER + body).splitlines(keepends=True))
    assert info.value.line == line
    assert info.value.field == field
    assert info.value.message.startswith(f"line {line}:")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty"),
        (["prefix,rate\n"], "missing column 'effective_date'"),
        (["prefix,rate,effective_date,carrier\n"], "unknown column 'carrier'"),
        ([HEADER], "no rate rows"),
    ],
)
def test_header_problems_are_line_1(lines: list[str], message: str) -> None:
    """A missing or unknown column is an error on line 1."""
    with pytest.raises(ImportFileError, match=message):
        parse(lines)
