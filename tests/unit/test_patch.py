"""A follower's patch: the final value per field, whatever order the derivation met them in."""

from __future__ import annotations

from sipdata.jobs.derive import Patch


def test_a_value_set_survives_a_delete_of_the_same_field() -> None:
    """Two trunks swapping usernames in one batch: the old name of one is the new name
    of the other, so its delete must not win over the set, in either order."""
    first = Patch()
    first.put("cred:g", "alice", b"trunk-2")
    first.drop("cred:g", "alice")
    second = Patch()
    second.drop("cred:g", "alice")
    second.put("cred:g", "alice", b"trunk-2")
    for patch in (first, second):
        assert patch.split() == ({"cred:g": {"alice": b"trunk-2"}}, {"cred:g": []})


def test_put_none_deletes_and_sizes_count_fields() -> None:
    """An explicit None is a delete (an org whose last rule went); size counts fields."""
    patch = Patch()
    patch.put("route:custom:g", "org-1", None)
    patch.put("did:g", "1212", b"{}")
    assert patch.split() == (
        {"route:custom:g": {}, "did:g": {"1212": b"{}"}},
        {"route:custom:g": ["org-1"], "did:g": []},
    )
    assert patch.size() == 2
