"""The in-flight limit follows latency: it grows only while answers are fast and the
limit was reached, shrinks as soon as a window's slowest answer passes the target,
and never leaves [floor, ceiling]."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdata.decide.capacity import AdaptiveLimit


def limit(value: int = 0) -> AdaptiveLimit:
    return AdaptiveLimit(floor=16, ceiling=1024, target_s=0.2, window_s=0.1, value=value)


def window(lim: AdaptiveLimit, t: float, latency: float, *, reached: bool) -> float:
    """One window: a decision answered after `latency`, the limit reached or not; the
    next window's first answer closes it. Returns the time after it."""
    lim.observe(latency, t)
    if reached:
        assert not lim.admits(lim.value)
    lim.observe(0.0, t + lim.window_s)
    return t + lim.window_s


def test_starts_at_the_floor_and_admits_below_the_limit() -> None:
    lim = limit()
    assert lim.value == 16
    assert lim.admits(15) and not lim.admits(16)


@pytest.mark.parametrize(
    ("latency", "reached", "change"),
    [
        (0.01, True, "grows"),  # fast, and callers were refused: room for more
        (0.01, False, "same"),  # fast, but nobody was refused: no need
        (0.18, True, "same"),  # within the target, but not well within: hold
        (0.25, True, "shrinks"),  # past the target: back off
        (0.25, False, "shrinks"),
    ],
)
def test_one_window_moves_the_limit(latency: float, reached: bool, change: str) -> None:
    lim = limit(value=128)
    t = window(lim, 1.0, 0.0, reached=False)  # the first window only starts the clock
    before = lim.value
    window(lim, t, latency, reached=reached)
    assert {
        "grows": lim.value > before,
        "same": lim.value == before,
        "shrinks": lim.value < before,
    }[change]


def test_a_burst_of_fast_windows_grows_it_to_the_ceiling_and_a_slow_one_cuts_it() -> None:
    lim = limit()
    t = window(lim, 1.0, 0.0, reached=False)
    for _ in range(200):
        t = window(lim, t, 0.01, reached=True)
    assert lim.value == 1024
    window(lim, t, 0.5, reached=True)
    assert lim.value == 768


@given(
    st.lists(
        st.tuples(st.floats(0, 2, allow_nan=False), st.booleans(), st.floats(0, 0.3)),
        max_size=200,
    )
)
def test_the_limit_never_leaves_its_bounds(steps: list[tuple[float, bool, float]]) -> None:
    lim = limit()
    t = 0.0
    for latency, reached, gap in steps:
        t += gap
        lim.observe(latency, t)
        if reached:
            lim.admits(10_000)
        assert 16 <= lim.value <= 1024


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="floor"):
        AdaptiveLimit(floor=0, ceiling=10, target_s=0.1)
    with pytest.raises(ValueError, match="floor"):
        AdaptiveLimit(floor=20, ceiling=10, target_s=0.1)
