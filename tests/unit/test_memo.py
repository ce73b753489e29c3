"""The per-generation memo: an answer once read is returned, including "none", and the
least recently used answer is the one dropped when it is full."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from sipdata.serving.catalog import MISSING, GenerationView, Memo


def test_unknown_is_missing_and_none_is_an_answer() -> None:
    """A memoised "no such owner" (None) is an answer, not a miss."""
    memo: Memo[str, int | None] = Memo(4)
    assert memo.get("192.0.2.1") is MISSING
    memo.put("192.0.2.1", None)
    assert memo.get("192.0.2.1") is None


def test_least_recently_used_is_dropped_first() -> None:
    """Reading an answer makes it the most recent; the least recent goes when full."""
    memo: Memo[str, int] = Memo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # a is now the most recent
    memo.put("c", 3)
    assert memo.get("b") is MISSING
    assert (memo.get("a"), memo.get("c")) == (1, 3)


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers()), max_size=60))
def test_holds_at_most_its_size_and_the_latest_value_of_recent_keys(
    puts: list[tuple[str, int]],
) -> None:
    """Whatever the order of puts, the memo never grows past its size and holds the
    latest value of the most recently written keys."""
    memo: Memo[str, int] = Memo(3)
    for key, value in puts:
        memo.put(key, value)
    assert len(memo._entries) <= 3
    latest = {key: value for key, value in puts}
    recent = list(dict.fromkeys(reversed([k for k, _ in puts])))[:3]
    for key in recent:
        assert memo.get(key) == latest[key]


def test_each_view_has_its_own_memo() -> None:
    """A new generation's view starts empty: nothing read from the old one survives;
    the kinds (ACL, credentials, rules) never mix."""
    old, new = GenerationView(gen=1), GenerationView(gen=2)
    address = ipaddress.ip_address("192.0.2.7")
    old.acl.put(address, None)
    assert old.acl.get(address) is None
    assert new.acl.get(address) is MISSING
    assert old.creds.get("192.0.2.7") is MISSING
