"""The per-generation memo: an answer once read is returned, including "none", and the
least recently used answer is the one dropped when it is full."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sipdata.serving.catalog import MISSING, Memo, View


def test_unknown_is_missing_and_none_is_an_answer() -> None:
    memo = Memo(4)
    assert memo.get("acl", "192.0.2.1") is MISSING
    memo.put("acl", "192.0.2.1", None)
    assert memo.get("acl", "192.0.2.1") is None
    assert memo.get("cred", "192.0.2.1") is MISSING  # kinds never mix


def test_least_recently_used_is_dropped_first() -> None:
    memo = Memo(2)
    memo.put("acl", "a", 1)
    memo.put("acl", "b", 2)
    assert memo.get("acl", "a") == 1  # a is now the most recent
    memo.put("acl", "c", 3)
    assert memo.get("acl", "b") is MISSING
    assert (memo.get("acl", "a"), memo.get("acl", "c")) == (1, 3)


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers()), max_size=60))
def test_holds_at_most_its_size_and_the_latest_value_of_recent_keys(
    puts: list[tuple[str, int]],
) -> None:
    memo = Memo(3)
    for key, value in puts:
        memo.put("k", key, value)
    assert len(memo._entries) <= 3
    latest = {key: value for key, value in puts}
    recent = list(dict.fromkeys(reversed([k for k, _ in puts])))[:3]
    for key in recent:
        assert memo.get("k", key) == latest[key]


def test_each_view_has_its_own_memo() -> None:
    """A new generation's view starts empty: nothing read from the old one survives."""
    old, new = View(gen=1), View(gen=2)
    old.memo.put("acl", "x", "old answer")
    assert new.memo.get("acl", "x") is MISSING
