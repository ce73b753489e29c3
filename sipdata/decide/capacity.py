"""How many decisions one process takes on at once: a limit that follows their latency.

A fixed cap is wrong both ways. Under a burst of many connections the loop
spends each pass reading and answering the requests it sheds, and every await
of an admitted decision waits one pass; so the more it admits per pass, the
more real answers each pass yields (a cap of 128 against 1,280 connections kept
0.33-0.40 of the process's rate), while its latency hardly moves: a pass is
mostly the shed requests. But each admitted decision also lengthens the pass,
and past the deadline an answer is worth nothing. So the limit grows while
admitted decisions answer inside three quarters of their latency target and
the limit was reached, and shrinks as soon as one window's slowest answer
passes the target (additive increase, multiplicative decrease, per window).
Pure: the caller passes the clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class AdaptiveLimit:
    floor: int  # never below: the few that keep answers flowing whatever happens
    ceiling: int  # never above (SIPDATA_MAX_INFLIGHT_DECISIONS)
    target_s: float  # slowest answer of a window allowed before the limit shrinks
    window_s: float = 0.1
    value: int = 0  # the limit now; 0 = start at the floor
    _window_end: float = 0.0
    _slowest: float = 0.0
    _reached: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.ceiling:
            raise ValueError("need 1 <= floor <= ceiling")
        self.value = min(max(self.value or self.floor, self.floor), self.ceiling)

    def admits(self, inflight: int) -> bool:
        """May one more decision start with `inflight` running? A refusal counts as
        the limit being reached in this window."""
        if inflight < self.value:
            return True
        self._reached = True
        return False

    def observe(self, latency_s: float, now: float) -> None:
        """A decision answered after `latency_s`; windows close as time passes."""
        if now >= self._window_end:
            self._close(now)
        self._slowest = max(self._slowest, latency_s)

    def _close(self, now: float) -> None:
        if self._window_end:  # not the very first observation
            if self._slowest > self.target_s:
                self.value = max(self.floor, self.value * 3 // 4)
            elif self._reached and self._slowest < self.target_s * 3 / 4:
                self.value = min(self.ceiling, self.value + max(4, self.value // 8))
        self._window_end = now + self.window_s
        self._slowest = 0.0
        self._reached = False
