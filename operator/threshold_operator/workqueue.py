"""Reconcile requests by key, one pass at a time per key: client-go's work queue, small.

Watch events (of a ThresholdJob, or of one of its Jobs) and timers `add` a key; a key that is
already waiting is not queued twice, and a key being worked on is worked on again after, never
at the same time. So passes over one ThresholdJob are serialised (each sees what the one
before it wrote) while different ThresholdJobs proceed side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable

logger = logging.getLogger(__name__)

#: A pass: returns when to look again (seconds), or None for "only on the next event".
Work = Callable[[Hashable], Awaitable[float | None]]


class Workqueue:
    def __init__(self, work: Work, concurrency: int = 4) -> None:
        self._work = work
        self._due: dict[Hashable, float] = {}  # waiting keys -> when they are due (loop time)
        self._busy: set[Hashable] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    def add(self, key: Hashable, after: float = 0.0) -> None:
        """Work on `key` in `after` seconds, or sooner if it is due sooner already."""
        due = asyncio.get_running_loop().time() + max(after, 0.0)
        self._due[key] = min(due, self._due.get(key, due))
        self._wake.set()

    def forget(self, key: Hashable) -> None:
        """Drop a waiting key (its object is gone); a pass under way finishes."""
        self._due.pop(key, None)

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="threshold-operator workqueue")

    #: How long `stop` waits for the passes under way: well inside the 30 s a pod gets
    #: between SIGTERM and SIGKILL.
    STOP_SECONDS = 10.0

    async def stop(self) -> None:
        """Stop taking keys, and wait for the passes under way (they are short), at most
        STOP_SECONDS: a pass stuck on a slow API server is abandoned, which is safe, since
        every pass reads its ThresholdJob afresh and the next operator redoes it."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.STOP_SECONDS)
            for task in late:
                logger.warning("stopping with a reconcile pass still under way: %s", task)
                task.cancel()

    @property
    def idle(self) -> bool:
        """No pass under way (keys may be waiting for their time)."""
        return not self._busy

    def _next(self, now: float) -> tuple[Hashable | None, float]:
        """The earliest key not being worked on, and how long until it is due."""
        ready = [(due, key) for key, due in self._due.items() if key not in self._busy]
        if not ready:
            return None, 3600.0
        due, key = min(ready, key=lambda item: item[0])
        return key, max(0.0, due - now)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key, wait = self._next(loop.time())
            if key is None or wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            await self._slots.acquire()
            if self._due.pop(key, None) is None:  # forgotten while waiting for a slot
                self._slots.release()
                continue
            self._busy.add(key)
            task = asyncio.create_task(self._pass(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pass(self, key: Hashable) -> None:
        after: float | None = None
        try:
            after = await self._work(key)
        except Exception:  # the work handles its errors; this is a last resort
            logger.exception("reconcile pass of %s failed", key)
            after = 60.0
        finally:
            self._busy.discard(key)
            self._slots.release()
            if after is not None:
                self.add(key, after)
            self._wake.set()
