"""Which serving entries a batch of captured database changes touches (pure).

A change row (sipdata/changes.sql) names a table and the key columns of the row
before and after. What a decision reads is derived: a credential, an ACL entry,
a DID and a rule target each embed the trunk with its org's status and limits;
a compiled LCR entry embeds the rows of its ancestors. `plan` turns changed rows
into the roots to re-derive; the follower (jobs/follow.py) expands roots it
cannot know without the database (an org's trunks, the DIDs and rules that point
at a trunk, the prefixes under a changed one) and rewrites each affected entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sipdata.decide.lcr import RateRow, compile_deck

# Above this many changed prefixes a fresh generation costs less than patching
# the serving one entry by entry, and is all-or-nothing besides.
MAX_PATCHED_PREFIXES = 20_000
# Rate rows a patch may read under its changed prefixes (a new row at "1" sits
# above most of a deck): past it the follower rebuilds in its child process
# instead of reading and compiling them next to the decisions it serves.
MAX_PATCHED_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class Change:
    """One captured row change: its id in sipdata_changes, table, op (I/U/D/B) and keys."""

    id: int
    table: str
    op: str
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None
    created_at: float = 0.0  # Unix time of the commit's transaction start

    def values(self, column: str) -> set[str]:
        """The key column's value before and after (one or two; None left out)."""
        out: set[str] = set()
        for doc in (self.old, self.new):
            if doc is not None and doc.get(column) is not None:
                out.add(str(doc[column]))
        return out


@dataclass(slots=True)
class Plan:
    """The roots to re-derive for one batch of changes."""

    orgs: set[str] = field(default_factory=set)  # every trunk of these orgs
    trunks: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)  # DIDs
    rule_orgs: set[str] = field(default_factory=set)
    carriers: set[str] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)  # LCR prefixes (and those under them)
    rebuild: bool = False  # a bulk change: build a new generation instead

    @property
    def empty(self) -> bool:
        return not (
            self.orgs
            or self.trunks
            or self.numbers
            or self.rule_orgs
            or self.carriers
            or self.prefixes
            or self.rebuild
        )


def plan(changes: Iterable[Change]) -> Plan:
    """Coalesce a batch: one re-derivation per root however often it changed."""
    out = Plan()
    for change in changes:
        table = change.table
        if change.op == "B":
            # A deck import: the prefixes it touched, when it could name them.
            named = (change.new or {}).get("prefixes")
            if isinstance(named, list):
                out.prefixes |= {str(p) for p in named}
                out.carriers |= change.values("carrier_id")
                out.orgs |= change.values("carrier_id")
            else:
                out.rebuild = True
        elif table == "organizations":
            ids = change.values("id")
            out.orgs |= ids
            out.carriers |= ids
        elif table in ("organization_settings", "billing_accounts"):
            out.orgs |= change.values("org_id")
        elif table == "sip_trunks":
            out.trunks |= change.values("id")
            out.carriers |= change.values("org_id")
        elif table == "trunk_acl":
            out.trunks |= change.values("trunk_id")
        elif table == "phone_numbers":
            out.numbers |= change.values("number")
        elif table == "routing_rules":
            out.rule_orgs |= change.values("org_id")
        elif table == "lcr_rates":
            out.prefixes |= change.values("prefix")
            carriers = change.values("carrier_id")
            # A carrier's first or last rate row makes its trunks carriers or not.
            out.carriers |= carriers
            out.orgs |= carriers
        # Any other table has no trigger (changes.sql): nothing decisions read.
    if len(out.prefixes) > MAX_PATCHED_PREFIXES:
        out.rebuild = True
    return out


def prefix_family(prefixes: Iterable[str]) -> tuple[set[str], set[str]]:
    """(ancestors, roots): the strict ancestors of the changed prefixes, whose rows the
    recompiled entries inherit, and the roots under which every entry is recompiled
    (a changed prefix below another changed one adds nothing)."""
    roots: set[str] = set()
    for p in sorted(prefixes, key=len):
        if not any(p[:n] in roots for n in range(1, len(p))):  # O(length), not O(roots)
            roots.add(p)
    ancestors = {r[:n] for r in roots for n in range(1, len(r))}
    return ancestors - roots, roots


def under(prefix: str, roots: set[str]) -> bool:
    """Whether `prefix` is one of the roots or below one."""
    return any(prefix[:n] in roots for n in range(1, len(prefix) + 1))


def recompile(
    rows: Iterable[RateRow], changed: set[str], today: dt.date
) -> dict[str, list[RateRow] | None]:
    """The compiled entries a change of the rows at `changed` rewrites (None: delete).

    `rows` must hold every row at the strict ancestors and under the roots of
    `prefix_family(changed)`: an entry under a root inherits only from those, so
    applying the result to the old compiled deck gives exactly `compile_deck` of
    the new rows (tests/unit/test_changes.py proves it for random decks and edits).
    """
    _, roots = prefix_family(changed)
    compiled = compile_deck(rows, today)
    out: dict[str, list[RateRow] | None] = {p: None for p in changed}
    out.update({p: entry for p, entry in compiled.items() if under(p, roots)})
    return out
