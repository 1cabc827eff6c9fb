"""The operator's work queue: one pass at a time per ThresholdJob, and a stop that ends."""

from __future__ import annotations

import asyncio

from threshold_operator.workqueue import Workqueue


def test_stop_abandons_a_pass_that_does_not_end(monkeypatch):
    """A pass stuck on a slow API server does not keep the operator from stopping (a pod
    has 30 s between SIGTERM and SIGKILL): it is cancelled, which is safe, since the next
    operator's pass reads the ThresholdJob afresh."""
    monkeypatch.setattr(Workqueue, "STOP_SECONDS", 0.05)
    cancelled = []

    async def stuck(key: str) -> float | None:
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            cancelled.append(key)
            raise
        return None

    async def scenario() -> None:
        queue = Workqueue(stuck)
        queue.start()
        queue.add("tj")
        while queue.idle:
            await asyncio.sleep(0)
        await queue.stop()
        await asyncio.sleep(0)  # let the cancellation land

    asyncio.run(scenario())
    assert cancelled == ["tj"]


def test_stop_waits_for_passes_that_end():
    done = []

    async def quick(key: str) -> float | None:
        await asyncio.sleep(0.01)
        done.append(key)
        return None

    async def scenario() -> None:
        queue = Workqueue(quick)
        queue.start()
        queue.add("a")
        queue.add("b")
        while queue.idle:
            await asyncio.sleep(0)
        await queue.stop()

    asyncio.run(scenario())
    assert sorted(done) in (["a"], ["a", "b"], ["b"]) and done  # what was under way finished
