"""Readiness: what must hold for this process to take traffic, and why it does not."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from sipdata.cache import keys
from sipdata.errors import SipdataError
from sipdata.serving.decision import Service

# Further checks the app wires in (the drainer's): each may add detail to the answer
# and returns why the process is not ready, or None.
ReadyCheck = Callable[[dict[str, object]], Awaitable[str | None]]


async def readiness(
    service: Service, checks: list[ReadyCheck]
) -> tuple[list[str], dict[str, object]]:
    """(reasons not to be ready, detail): Redis answers and serves a generation, the
    warmer's heartbeat is fresh, the database answers, and every further check."""
    reasons: list[str] = []
    detail: dict[str, object] = {}
    try:
        await service.cache.ping()
        at = await service.cache.heartbeat_at()
        detail["generation"] = await service.cache.current_generation()
        if at is None:
            reasons.append("warmer heartbeat missing or expired")
        else:
            age = time.time() - at
            detail["warmer_age_s"] = round(age, 1)
            if age > keys.HEARTBEAT_STALE_S:
                reasons.append(f"warmer heartbeat is {age:.0f}s old")
        if detail["generation"] is None:
            reasons.append("no serving generation in redis")
        for check in checks:
            reason = await check(detail)
            if reason:
                reasons.append(reason)
    except SipdataError as exc:
        reasons.append(exc.message)
    try:
        await service.store.ping()
    except SipdataError as exc:
        reasons.append(exc.message)
    return reasons, detail
