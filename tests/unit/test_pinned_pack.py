"""The hot path's commands, packed by hiredis, are byte for byte what redis-py sends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from sipdata.cache.pinned import pack

CONN = Connection()
ARG = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).filter(lambda t: not any("\ud800" <= c <= "\udfff" for c in t)),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)


@given(st.lists(ARG, max_size=20))
def test_any_arguments_pack_as_redis_py_packs_them(args: list[object]) -> None:
    """Bytes, text, integers and floats (nan, inf and big ones included) come out as the
    asyncio connection's own packer writes them."""
    command = ("EVALSHA", "f" * 40, *args)
    assert pack(CONN, *command) == b"".join(CONN.pack_command(*command))


@pytest.mark.parametrize("bad", [True, None, object()], ids=["bool", "None", "object"])
def test_what_redis_py_refuses_is_refused(bad: object) -> None:
    """A value redis-py will not send raises its DataError here too, before anything is
    written."""
    with pytest.raises(DataError):
        pack(CONN, "EVALSHA", "f" * 40, 1, bad)


def test_text_that_is_not_utf8_raises_as_redis_py_does() -> None:
    with pytest.raises(UnicodeEncodeError):
        pack(CONN, "SET", "k", "\udc80")
    with pytest.raises(UnicodeEncodeError):
        CONN.pack_command("SET", "k", "\udc80")
