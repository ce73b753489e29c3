"""The overload signal: a loop that runs late reads as busy at once, and stops reading
so once it keeps time again; a monitor that is not running never sheds anything."""

from __future__ import annotations

import asyncio
import time

from sipdata.serving.pressure import Pressure


def test_a_monitor_that_is_not_running_is_never_busy() -> None:
    """A Service used without its app (no background task) must not shed every request."""
    p = Pressure(busy_s=0.0)
    p.record(10.0)
    assert not p.busy


async def test_a_blocked_loop_is_busy_at_once_and_quiet_ticks_clear_it() -> None:
    p = Pressure(tick_s=0.01, busy_s=0.05, memory_s=0.05)
    task = asyncio.create_task(p.run())
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # noqa: ASYNC251 -- the loop held, as by a burst of requests to shed
        assert p.busy  # overdue already: a handler running now sees it
        await asyncio.sleep(0.02)
        assert p.late_s >= 0.1  # and the sleeper, once it ran, measured it
        deadline = time.monotonic() + 10
        while p.busy:  # a memory of ticks on time forgets it
            assert time.monotonic() < deadline, "still busy long after the loop was freed"
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not p.busy  # stopped: not measuring, never busy


def test_a_late_tick_is_remembered_for_its_memory_and_then_forgotten() -> None:
    """`late_s` is the worst tick of the last `memory_s`: quiet ticks right after a
    slow pass do not clear the signal while the burst may still be on."""
    p = Pressure(tick_s=0.025, memory_s=0.1)  # four ticks
    p.record(0.3)
    for _ in range(3):
        p.record(0.0)
        assert p.late_s == 0.3
    p.record(0.0)
    assert p.late_s == 0.0
