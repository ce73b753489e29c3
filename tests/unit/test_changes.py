"""Captured changes -> what to re-derive: the plan per table, and the LCR recompile of only
the affected prefixes equals compiling the whole new deck."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipdata.decide.changes import (
    MAX_PATCHED_PREFIXES,
    Change,
    plan,
    prefix_family,
    recompile,
    under,
)
from sipdata.decide.lcr import RateRow, compile_deck

TODAY = dt.date(2026, 12, 1)


def change(
    table: str, old: dict[str, Any] | None, new: dict[str, Any] | None, op: str = "U"
) -> Change:
    return Change(1, table, op, old, new)


@pytest.mark.parametrize(
    ("row", "field", "expected"),
    [
        (change("organizations", {"id": "o1"}, {"id": "o1"}), "orgs", {"o1"}),
        (change("organizations", {"id": "o1"}, None, "D"), "carriers", {"o1"}),
        (change("organization_settings", None, {"org_id": "o2"}, "I"), "orgs", {"o2"}),
        (change("sip_trunks", {"id": "t1", "org_id": "o1"}, None, "D"), "trunks", {"t1"}),
        (
            change("sip_trunks", {"id": "t1", "org_id": "o1"}, {"id": "t1", "org_id": "o2"}),
            "carriers",
            {"o1", "o2"},
        ),
        (change("trunk_acl", {"trunk_id": "t1"}, {"trunk_id": "t2"}), "trunks", {"t1", "t2"}),
        (change("phone_numbers", {"number": "1"}, {"number": "2"}), "numbers", {"1", "2"}),
        (change("routing_rules", None, {"org_id": "o3"}, "I"), "rule_orgs", {"o3"}),
        (change("lcr_rates", {"carrier_id": "c", "prefix": "44"}, None, "D"), "prefixes", {"44"}),
        (change("lcr_rates", None, {"carrier_id": "c", "prefix": "44"}, "I"), "orgs", {"c"}),
    ],
)
def test_each_table_names_the_roots_it_touches(row: Change, field: str, expected: set[str]) -> None:
    """Each captured table maps to the roots whose entries embed it, before and after
    values both (a moved row is re-derived where it was and where it is)."""
    assert getattr(plan([row]), field) == expected


def test_a_bulk_change_or_too_many_prefixes_rebuilds() -> None:
    """A deck import (op B) that could not name its prefixes, and more changed prefixes
    than a patch should carry, build a new generation; one that named them recompiles
    those; a table decisions do not read changes nothing."""
    assert plan([change("lcr_rates", None, {"carrier_id": "c"}, "B")]).rebuild
    assert plan([change("lcr_rates", None, {"carrier_id": "c", "prefixes": None}, "B")]).rebuild
    named = plan([change("lcr_rates", None, {"carrier_id": "c", "prefixes": ["1", "44"]}, "B")])
    assert not named.rebuild and named.prefixes == {"1", "44"} and named.carriers == {"c"}
    many = [
        change("lcr_rates", None, {"prefix": str(10**6 + i)}, "I")
        for i in range(MAX_PATCHED_PREFIXES + 1)
    ]
    assert plan(many).rebuild
    assert plan([Change(9, "invoices", "I", None, {"id": "x"})]).empty


def test_prefix_family_keeps_the_shortest_roots() -> None:
    """A changed prefix under another changed one adds no root; ancestors are the strict
    prefixes of the roots."""
    ancestors, roots = prefix_family({"12", "123", "44", "4412", "9"})
    assert roots == {"12", "44", "9"}
    assert ancestors == {"1", "4"}
    assert under("1299", roots) and not under("1", roots)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.text(alphabet="0123", min_size=1, max_size=5), max_size=30))
def test_roots_are_the_changed_prefixes_with_no_changed_ancestor(changed: set[str]) -> None:
    """Every changed prefix is a root or under one, and no root is under another."""
    ancestors, roots = prefix_family(changed)
    assert roots <= changed and all(under(p, roots) for p in changed)
    assert not any(under(r[:n], roots) for r in roots for n in range(1, len(r)))
    assert not ancestors & roots


prefixes = st.text(alphabet="123", min_size=1, max_size=4)
days = st.integers(min_value=-3, max_value=3).map(lambda d: TODAY + dt.timedelta(days=d))


@st.composite
def rate_rows(draw: st.DrawFn) -> RateRow:
    start = draw(days)
    length = draw(st.none() | st.integers(min_value=1, max_value=4))
    return RateRow(
        carrier_id=draw(st.sampled_from("ABC")),
        prefix=draw(prefixes),
        rate=Decimal(draw(st.integers(min_value=1, max_value=9))) / 1000,
        priority=100,
        effective=start,
        expiry=start + dt.timedelta(days=length) if length else None,
    )


def _key(row: RateRow) -> tuple[str, str, dt.date]:
    return (row.carrier_id, row.prefix, row.effective)


def _unique(rows: list[RateRow]) -> list[RateRow]:
    return list({_key(r): r for r in rows}.values())


@settings(max_examples=300, deadline=None)
@given(
    old=st.lists(rate_rows(), max_size=25).map(_unique),
    added=st.lists(rate_rows(), max_size=4),
    removed=st.sets(st.integers(min_value=0, max_value=24), max_size=4),
)
def test_recompiling_the_changed_prefixes_equals_compiling_the_new_deck(
    old: list[RateRow], added: list[RateRow], removed: set[int]
) -> None:
    """For any deck and any edit (rows added, replaced, deleted), patching the old compiled
    deck with `recompile` over the rows a follower reads gives exactly the compiled new deck."""
    gone = [r for i, r in enumerate(old) if i in removed]
    new = _unique([r for i, r in enumerate(old) if i not in removed] + added)
    changed = {r.prefix for r in gone + added}
    if not changed:
        return
    ancestors, roots = prefix_family(changed)
    read = [r for r in new if r.prefix in ancestors or under(r.prefix, roots)]
    patched: dict[str, list[RateRow]] = dict(compile_deck(old, TODAY))
    for prefix, entry in recompile(read, changed, TODAY).items():
        if entry is None:
            patched.pop(prefix, None)
        else:
            patched[prefix] = entry
    expected = compile_deck(new, TODAY)
    assert patched.keys() == expected.keys()
    for prefix, entry in expected.items():
        assert sorted(map(_key, patched[prefix])) == sorted(map(_key, entry))
