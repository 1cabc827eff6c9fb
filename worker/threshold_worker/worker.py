"""The worker loop: threshold the blocks of a partition that have no done-marker yet.

Also DaCapo's `start_worker_fn` (and `start_worker`), which keeps its signature; keyword-only
extras are the other fields of `JobParameters`. `spawn_worker` is in `compute`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from upath import UPath

from .chunkio import DirectBlockIO
from .errors import InputError
from .job import Job, resolve
from .kernel import threshold_block
from .lease import Freshness
from .markers import DoneMarkers
from .params import JobParameters
from .retry import retry
from .storage import CheckedStore

logger = logging.getLogger(__name__)


@dataclass
class Stats:
    """What one worker did; sums over workers by `+`."""

    processed: int = 0
    skipped: int = 0
    voxels: int = 0
    foreground: int = 0
    seconds: float = 0.0

    def __add__(self, other: Stats) -> Stats:
        return Stats(
            self.processed + other.processed,
            self.skipped + other.skipped,
            self.voxels + other.voxels,
            self.foreground + other.foreground,
            max(self.seconds, other.seconds),
        )


class BlockWorker:
    """Processes block ids of one resolved job; safe to call repeatedly."""

    #: Blocks in flight per process on object stores, where requests in flight, not CPU,
    #: decide throughput. Local disks: one at a time (the processes fill the cores).
    REMOTE_CONCURRENCY = 4

    def __init__(self, job: Job, direct: bool = True, freshness: Freshness | None = None) -> None:
        self.job = job
        self.freshness = freshness
        self.output = job.open_output()
        store = self.output.store_path.store
        if freshness is not None and isinstance(store, CheckedStore):
            store.check = freshness.check  # every chunk and marker write asks first
        self.direct = DirectBlockIO.maybe(job.input, self.output) if direct else None
        self._local = threading.local()
        self.remote = job.remote
        self.markers = DoneMarkers(
            self.output.store_path.store, job.spec.output_dataset, job.plan.fingerprint
        )

    def process(self, blocks: range, on_block: Callable[[int, int], None] | None = None) -> Stats:
        """Threshold every block of `blocks` that is not done yet.

        `on_block(block_id, voxels)` is called after each block's chunks are written. Done-
        markers follow about once a second and when this call ends, however it ends.
        """
        stats = Stats()
        start = time.perf_counter()
        lock = threading.Lock()
        pending = _PendingMarks(self.markers, self.job.where)

        def one(block_id: int) -> None:
            selection = self.job.block_selection(block_id)
            began = time.monotonic()
            fg = retry(
                lambda: self._threshold(selection, self.job.spec.threshold),
                f"block {block_id}",
                self.job.where,
                inputs=str(self.job.input_path),
            )
            if self.freshness is not None:
                self.freshness.check_after_write(began)
            voxels = _voxels(selection, self.job.input.shape)
            pending.add(block_id)
            with lock:
                stats.processed += 1
                stats.voxels += voxels
                stats.foreground += fg
                if on_block is not None:
                    on_block(block_id, voxels)

        todo = self.markers.missing(blocks)
        try:
            if self.remote:
                with ThreadPoolExecutor(self.REMOTE_CONCURRENCY) as pool:
                    inflight: set[Future[None]] = set()
                    for block_id in todo:  # a bounded window: memory does not grow with the range
                        if len(inflight) >= 2 * self.REMOTE_CONCURRENCY:
                            done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                            for future in done:
                                future.result()
                        inflight.add(pool.submit(one, block_id))
                    for future in inflight:
                        future.result()
            else:
                for block_id in todo:
                    one(block_id)
        except BaseException:
            with contextlib.suppress(Exception):  # keep what was finished; raise the cause
                pending.flush()
            raise
        pending.flush()
        stats.skipped = len(blocks) - stats.processed
        stats.seconds = time.perf_counter() - start
        return stats

    def _threshold(self, selection: tuple[slice, ...], value: float) -> int:
        direct = self._direct_for_this_thread()
        if direct is not None:
            return direct.threshold_block(selection, value)
        return threshold_block(self.job.input, self.output, selection, value)

    def _direct_for_this_thread(self) -> DirectBlockIO | None:
        """The direct path reuses buffers, so each thread gets its own."""
        if self.direct is None or threading.current_thread() is threading.main_thread():
            return self.direct
        if not hasattr(self._local, "direct"):
            self._local.direct = DirectBlockIO.maybe(self.job.input, self.output)
        return self._local.direct


class _PendingMarks:
    """Finished blocks whose markers are not written yet; written as runs about once a
    second, so a crash redoes at most about a second of work."""

    INTERVAL = 1.0

    def __init__(self, markers: DoneMarkers, where: str) -> None:
        self.markers = markers
        self.where = where
        self.ids: list[int] = []
        self.lock = threading.Lock()
        self.due = time.monotonic() + self.INTERVAL

    def add(self, block_id: int) -> None:
        with self.lock:
            self.ids.append(block_id)
            due = time.monotonic() >= self.due
        if due:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            ids, self.ids = self.ids, []
            self.due = time.monotonic() + self.INTERVAL
        if ids:
            retry(lambda: self.markers.mark(ids), f"done-markers of {len(ids)} blocks", self.where)


def _voxels(selection: tuple[slice, ...], shape: tuple[int, ...]) -> int:
    n = 1
    for s, dim in zip(selection, shape, strict=True):
        start, stop, _ = s.indices(dim)
        n *= stop - start
    return n


def run_partition(
    params: JobParameters, partition: int | None = None, expect_fingerprint: str | None = None
) -> Stats:
    """Resolve the job, claim its output, and process one partition (or all of it)."""
    whole = partition is None
    job = resolve(params, whole_job=whole)
    if expect_fingerprint and expect_fingerprint != job.plan.fingerprint:
        raise InputError(
            "fingerprint",
            f"this worker planned {job.plan.fingerprint}, the job expects {expect_fingerprint}: "
            "the input or the job changed since it was prepared",
        )
    if partition is None:
        blocks = range(job.plan.total_blocks)
    else:
        blocks = job.plan.partition_range(partition, params.partition_count)
    with job.claim(whole_job=whole) as claim:
        logger.info(
            "plan %s: blocks %d-%d of %d",
            job.plan.fingerprint,
            blocks.start,
            blocks.stop - 1,
            job.plan.total_blocks,
        )
        stats = BlockWorker(job, freshness=claim.freshness).process(blocks)
        if whole:
            claim.complete()
    logger.info(
        "done: %d blocks processed, %d already done, %.1f s",
        stats.processed,
        stats.skipped,
        stats.seconds,
    )
    return stats


def start_worker_fn(
    input_container: UPath | str,
    input_dataset: str,
    output_container: UPath | str,
    output_dataset: str,
    threshold: float = 0.0,
    return_io_loop: bool = False,
    *,
    partition: int | None = None,
    expect_fingerprint: str | None = None,
    **options: Any,
) -> Callable[[], Stats] | Stats:
    """Threshold blocks until none is left (of one partition, when `partition` is given).

    With `return_io_loop=True`, returns the loop as a callable instead of running it.
    `options` are the other fields of `JobParameters` (roi_offset, block_shape, fit,
    partitions, overwrite, output_chunks, ...).
    """
    params = JobParameters(
        input_container=str(input_container),
        input_dataset=input_dataset,
        output_container=str(output_container),
        output_dataset=output_dataset,
        threshold=threshold,
        **options,
    )

    def io_loop() -> Stats:
        return run_partition(params, partition, expect_fingerprint)

    return io_loop if return_io_loop else io_loop()


start_worker = start_worker_fn
