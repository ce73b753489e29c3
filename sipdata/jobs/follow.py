"""The follower: captured database changes -> the serving generation, entry by entry.

Each round takes the pending changes (db/changes.py), plans which serving
entries they touch (decide/changes.py), derives those from the database
(jobs/derive.py) and writes them into the serving generation in one MULTI
with the epoch bump (cache.patch), then deletes the changes. A deck import, or
more changed prefixes than patching suits, builds a new generation instead
(all or nothing). Runs under the warmer's lock, so one node applies at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable

import structlog

from sipdata.cache import keys
from sipdata.db.changes import ChangeLog, Wakeup
from sipdata.decide.changes import plan
from sipdata.errors import SipdataError
from sipdata.jobs.derive import Deriver, TooLarge
from sipdata.jobs.warmer import MANIFEST_FORMAT, Warmer

log = structlog.get_logger(__name__)

# How a full load runs, given the lock owner: in this process by default;
# `serve` passes warmer.load_in_child.
FullLoad = Callable[[str], Awaitable[None]]

# Pending changes, in batches, past which one full load replaces patching them batch
# by batch; and how many ids are read at most to be deleted after it (the rest is
# patched on).
REBUILD_BATCHES = 10
MAX_BACKLOG_READ = 2_000_000
# A follower failing this long makes its node unready (a blip of one round does not).
FAILING_UNREADY_S = 10.0


class Follower:
    """Applies the change log to Redis for as long as serve runs (one node at a time)."""

    def __init__(
        self,
        warmer: Warmer,
        changes: ChangeLog,
        wakeup: Wakeup | None = None,
        full_load: FullLoad | None = None,
    ) -> None:
        self.settings = warmer.settings
        self.cache = warmer.cache
        self.metrics = warmer.metrics
        self.warmer = warmer
        self.changes = changes
        self.deriver = Deriver(warmer.cache, warmer.store)
        self.wakeup = wakeup
        self.full_load = full_load
        self.last_full = 0.0  # monotonic time of this node's last full load
        # The last round wanted the lock and another node held it: this node then says
        # nothing of whether changes flow (the heartbeat is the holder's to refresh).
        self.locked_out = False
        self._patchable: int | None = None  # the generation last seen to be patchable
        self.failing_since: float | None = None  # monotonic time of the first failed round
        self.last_error = ""
        self._beat_at = 0.0

    async def _full_due(self) -> bool:
        """A full load is needed: no generation, one the follower cannot patch, or the
        optional belt-and-braces interval has passed."""
        gen = await self.cache.current_generation()
        if gen is None:
            return True
        if gen != self._patchable:
            if (await self.cache.manifest(gen)).get("format") != MANIFEST_FORMAT:
                return True
            self._patchable = gen
        interval = self.settings.warm_interval_s
        return interval > 0 and time.monotonic() - self.last_full >= interval

    async def _full_load(self) -> None:
        if self.full_load is None:
            await self.warmer.load_locked()
        else:
            await self.full_load(self.warmer.owner)
            # The child's metrics died with it; its heartbeat says what it did.
            beat = await self.cache.heartbeat() or {}
            if "duration_s" in beat:
                self.metrics.warm_last_success.set(float(beat["at"]))
                self.metrics.warm_duration.set(float(beat["duration_s"]))
        self.last_full = time.monotonic()

    async def step(self) -> int:
        """One round: nothing when nothing is due (two reads); else, under the warmer
        lock, a full load if due, then the pending changes. Returns how many changes
        were applied (0 also when another node holds the lock)."""
        self.locked_out = False
        if not await self._full_due() and not await self.changes.waiting():
            return 0
        if not await self.cache.acquire_lock(self.warmer.owner, keys.BUILD_TTL_S):
            self.locked_out = True
            return 0
        try:
            if await self._full_due():
                await self._full_load()
            return await self._apply_pending()
        finally:
            try:
                await self.cache.release_lock(self.warmer.owner)
            except SipdataError:
                log.warning("follow_lock_not_released")

    async def _apply_pending(self) -> int:
        batch = await self.changes.pending(self.settings.change_batch)
        if not batch:
            self.metrics.change_lag.set(0)
            return 0
        started = time.monotonic()
        todo = plan(batch)
        gen = await self.cache.current_generation()
        ids = [c.id for c in batch]
        if len(batch) >= self.settings.change_batch and gen is not None:
            # A full batch: a bulk edit by hand (a million rate rows deleted by SQL).
            # Past REBUILD_BATCHES batches pending a full load is cheaper than
            # patching batch by batch; it reflects every change read before it starts.
            backlog = await self.changes.backlog(MAX_BACKLOG_READ)
            if len(backlog) > REBUILD_BATCHES * self.settings.change_batch:
                todo.rebuild, ids = True, backlog
        if todo.rebuild and gen is not None:
            await self._full_load()
        elif gen is None or todo.empty:
            await self.cache.patch(None, {}, {}, None)  # drops read-through answers
        else:
            today = dt.datetime.now(dt.UTC).date()
            try:
                patch = await self.deriver.patch(todo, gen, today)
            except TooLarge as exc:
                log.info("follow_rebuilds", why=str(exc))
                await self._full_load()
            else:
                sets, dels = patch.split()
                await self.cache.patch(gen, sets, dels, patch.manifest)
                self.metrics.change_entries.inc(patch.size())
        await self.changes.done(ids)
        oldest = min(c.created_at for c in batch)
        self.metrics.change_lag.set(max(0.0, time.time() - oldest))
        self.metrics.changes_applied.inc(len(ids))
        log.info(
            "changes_applied",
            changes=len(ids),
            rebuild=todo.rebuild,
            seconds=round(time.monotonic() - started, 3),
        )
        return len(ids)

    async def _heartbeat(self) -> None:
        """Keep the last load's heartbeat fresh while changes flow: after a round this
        node ran, or one that found nothing waiting."""
        if self.locked_out or time.monotonic() - self._beat_at < keys.HEARTBEAT_EVERY_S:
            return
        beat = await self.cache.heartbeat() or {}
        beat["at"] = time.time()
        await self.cache.write_heartbeat(beat, keys.HEARTBEAT_TTL_S)
        self._beat_at = time.monotonic()

    def _failed(self, error: str) -> None:
        self.metrics.follow_errors.inc()
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    async def readiness(self, detail: dict[str, object]) -> str | None:
        """Why /ready should say no: this node's follower has failed every round for
        FAILING_UNREADY_S (changes are not reaching decisions), with the error."""
        if self.failing_since is None:
            return None
        failing = time.monotonic() - self.failing_since
        detail["follower_failing_s"] = round(failing, 1)
        if failing < FAILING_UNREADY_S:
            return None
        return f"change follower failing for {failing:.0f}s: {self.last_error}"

    async def _wait(self, delay: float) -> None:
        """Sleep `delay`, or less if a NOTIFY comes first."""
        if self.wakeup is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.wakeup.event.wait()
        self.wakeup.event.clear()

    async def run(self) -> None:
        """Follow until cancelled; an error is logged, counted and retried."""
        delay = 0.0
        try:
            while True:
                await self._wait(delay)
                if self.wakeup is not None:
                    await self.wakeup.ensure()
                try:
                    applied = await self.step()
                    self.failing_since = None
                    await self._heartbeat()
                    # A full batch means more wait: go again at once.
                    full = applied >= self.settings.change_batch
                    delay = 0.0 if full else self.settings.change_poll_s
                except SipdataError as exc:
                    self._failed(exc.message)
                    log.warning("follow_failed", error=exc.message)
                    delay = max(self.settings.change_poll_s, 1.0)
                except Exception as exc:
                    self._failed(f"{exc.__class__.__name__}: {exc}")
                    log.exception("follow_crashed")
                    delay = max(self.settings.change_poll_s, 1.0)
        finally:
            if self.wakeup is not None:
                await self.wakeup.close()
