"""How far behind its own event loop this process runs: the overload signal for shedding.

In-flight decisions alone do not say whether the process keeps up: under a burst
the loop also reads, parses and answers every request it sheds, and an admitted
decision then waits behind all of them at each await. When one loop pass takes
longer than a Redis timeout, the timeout fires before the reply that is already
in the socket is read, and the decision falls back to the database, which costs
more still (issue 12: a burst of 1,500 requests, 128 admitted, every one past
its deadline). A sleeper that measures how late it wakes sees that directly.
"""

from __future__ import annotations

import asyncio
import collections
import time


class Pressure:
    """The loop's recent lateness: the worst tick of the last quarter second, so a
    burst's long passes are seen between them too, and one quick pass is not
    enough to forget them."""

    def __init__(self, tick_s: float = 0.025, busy_s: float = 0.05, memory_s: float = 0.25) -> None:
        self.tick_s = tick_s
        self.busy_s = busy_s  # lateness above which the process is overloaded
        self._recent: collections.deque[float] = collections.deque(
            maxlen=max(2, round(memory_s / tick_s))
        )
        self._last_wake = time.monotonic()
        self._running = False  # not measuring (a Service without its app): never busy

    @property
    def busy(self) -> bool:
        """Behind by more than busy_s now: the last tick was late, or the next is overdue."""
        if not self._running:
            return False
        overdue = time.monotonic() - self._last_wake - self.tick_s
        return max(self.late_s, overdue) > self.busy_s

    @property
    def late_s(self) -> float:
        return max(self._recent, default=0.0)

    def record(self, late_s: float) -> None:
        self._recent.append(late_s)
        self._last_wake = time.monotonic()

    async def run(self) -> None:
        self._last_wake = time.monotonic()
        self._running = True
        try:
            while True:
                started = time.monotonic()
                await asyncio.sleep(self.tick_s)
                self.record(max(0.0, time.monotonic() - started - self.tick_s))
        finally:
            self._running = False
