"""The worker loop: threshold the blocks of a partition that have no done-marker yet.

Also DaCapo's `start_worker_fn` (and `start_worker`), which keeps its signature; keyword-only
extras are the other fields of `JobParameters`. `spawn_worker` is in `compute`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from upath import UPath

from . import chunk_path, intervals
from .chunkio import DirectBlockIO
from .errors import PlanChanged
from .job import Job, claim_all, resolve_sweep, still_ours, sweep_fingerprint
from .kernel import threshold_block
from .lease import Freshness
from .ledger import FailureLedger, Failures, blocks_failed, is_block_local, write_quietly
from .markers import DoneMarkers
from .params import JobParameters, seed_threshold
from .plan import bounds
from .retry import retry
from .storage import CheckedStore

logger = logging.getLogger(__name__)


@dataclass
class Stats:
    """What one worker did; sums over workers by `+`. `foreground`, `written` and
    `failures` are per output (one, or one per threshold of a sweep): an output skips
    blocks it has done. `failed`: blocks that failed block-locally (see `ledger`), which
    are neither processed nor skipped."""

    processed: int = 0
    skipped: int = 0
    voxels: int = 0
    foreground: tuple[int, ...] = ()
    written: tuple[int, ...] = ()
    seconds: float = 0.0
    failed: int = 0
    failures: tuple[Failures, ...] = ()

    def __add__(self, other: Stats) -> Stats:
        if not self.failures or not other.failures:
            failures = self.failures or other.failures
        else:
            failures = tuple(a.merge(b) for a, b in zip(self.failures, other.failures, strict=True))
        return Stats(
            self.processed + other.processed,
            self.skipped + other.skipped,
            self.voxels + other.voxels,
            _sum(self.foreground, other.foreground),
            _sum(self.written, other.written),
            max(self.seconds, other.seconds),
            self.failed + other.failed,
            failures,
        )


def _sum(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if not a or not b:
        return a or b
    return tuple(x + y for x, y in zip(a, b, strict=True))


class BlockWorker:
    """Processes block ids of one resolved job, or of the jobs of a sweep (one per
    threshold, one block grid): each block is read once for every output that lacks it.
    Safe to call repeatedly."""

    #: Blocks in flight per process on object stores, where requests in flight, not CPU,
    #: decide throughput. Local disks: one at a time (the processes fill the cores).
    REMOTE_CONCURRENCY = 4
    #: Block-local failures logged one by one per call; the ledger holds them all.
    LOGGED_FAILURES = 10

    def __init__(
        self,
        jobs: Job | Sequence[Job],
        direct: bool = True,
        freshness: Freshness | Sequence[Freshness | None] | None = None,
    ) -> None:
        self.jobs = [jobs] if isinstance(jobs, Job) else list(jobs)
        self.job = self.jobs[0]
        if freshness is None or isinstance(freshness, Freshness):
            freshness = [freshness] * len(self.jobs)
        self.freshness = list(freshness)
        self.outputs = [job.open_output() for job in self.jobs]
        for output, fresh in zip(self.outputs, self.freshness, strict=True):
            store = output.store_path.store
            if fresh is not None and isinstance(store, CheckedStore):
                store.check = fresh.check  # every chunk and marker write asks first
        self.output = self.outputs[0]
        self.levels = [  # each output's pyramid (pyramid.py), or None
            job.level_writer(fresh.check if fresh is not None else None)
            for job, fresh in zip(self.jobs, self.freshness, strict=True)
        ]
        self.values = [float(job.spec.threshold) for job in self.jobs]
        self.use_direct = direct
        if direct:
            chunk_path.requested()  # a mistyped THRESHOLD_CHUNK_PATH: an error, not "zarr"
        self._local = threading.local()
        self.remote = self.job.remote
        self.all_markers = [
            DoneMarkers(out.store_path.store, job.array_dataset, job.plan.fingerprint)
            for job, out in zip(self.jobs, self.outputs, strict=True)
        ]
        self.markers = self.all_markers[0]
        self.ledgers = [
            FailureLedger(out.store_path.store, job.spec.output_dataset, job.plan.fingerprint)
            for job, out in zip(self.jobs, self.outputs, strict=True)
        ]

    def count_done(self, blocks: range) -> int:
        """Blocks that every output has done."""
        return len(blocks) - sum(b - a + 1 for a, b, _ in self.missing_runs(blocks))

    def missing_runs(self, blocks: range) -> Iterator[tuple[int, int, tuple[int, ...]]]:
        """Runs of block ids that some output lacks, with the outputs (indices) that lack
        them, in order; memory is one bucket of markers per output."""
        if len(self.jobs) == 1:
            for a, b in self.markers.missing_runs(blocks):
                yield a, b, (0,)
            return
        yield from intervals.union_runs([m.missing_runs(blocks) for m in self.all_markers])

    def process(
        self,
        blocks: range,
        on_block: Callable[[int, int], None] | None = None,
        record: bool = True,
    ) -> Stats:
        """Threshold every block of `blocks` that is not done yet.

        `on_block(block_id, voxels)` is called after each block's chunks are written. Done-
        markers follow about once a second and when this call ends, however it ends. A
        block that fails block-locally (`ledger.BLOCK_LOCAL`) is counted in `failed` and
        the others go on; any other failure stops the call. The failures are recorded in
        each output's ledger when the call ends, or, with `record=False` and if it ends
        normally, left to the caller in `Stats.failures` (the local engine writes one
        object per run); a call that raises records its own.
        """
        n = len(self.jobs)
        stats = Stats(foreground=(0,) * n, written=(0,) * n)
        foreground, written = [0] * n, [0] * n
        start = time.perf_counter()
        lock = threading.Lock()
        pending = [
            _PendingMarks(m, job.where) for m, job in zip(self.all_markers, self.jobs, strict=True)
        ]
        failures = [Failures() for _ in self.jobs]

        def one(block_id: int, which: tuple[int, ...]) -> None:
            selection = self.job.block_selection(block_id)
            began = time.monotonic()
            try:
                fg = retry(
                    lambda: self._threshold(selection, which),
                    f"block {block_id}",
                    self.job.where,
                    inputs=str(self.job.input_path),
                )
            except Exception as e:
                local = is_block_local(e)
                with lock:
                    for i in which:
                        failures[i].add(block_id, e, stopped=not local)
                    stats.failed += int(local)
                if local:
                    if stats.failed <= self.LOGGED_FAILURES:
                        logger.warning("block %d failed, recorded; going on: %s", block_id, e)
                    if stats.failed == self.LOGGED_FAILURES:
                        logger.warning("more failed blocks are recorded without a log line")
                    return
                raise
            for i in which:
                fresh = self.freshness[i]
                if fresh is not None:
                    fresh.check_after_write(began)
            voxels = _voxels(selection, self.job.input.shape)
            for i in which:
                pending[i].add(block_id)
            with lock:
                stats.processed += 1
                stats.voxels += voxels
                for i, f in zip(which, fg, strict=True):
                    foreground[i] += f
                    written[i] += voxels
                if on_block is not None:
                    on_block(block_id, voxels)

        todo = (
            (block_id, which)
            for a, b, which in self.missing_runs(blocks)
            for block_id in range(a, b + 1)
        )
        try:
            if self.remote:
                with ThreadPoolExecutor(self.REMOTE_CONCURRENCY) as pool:
                    inflight: set[Future[None]] = set()
                    for item in todo:  # a bounded window: memory does not grow with the range
                        if len(inflight) >= 2 * self.REMOTE_CONCURRENCY:
                            done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                            for future in done:
                                future.result()
                        inflight.add(pool.submit(one, *item))
                    for future in inflight:
                        future.result()
            else:
                for item in todo:
                    one(*item)
        except BaseException:
            for marks in pending:
                with contextlib.suppress(Exception):  # keep what was finished; raise the cause
                    marks.flush()
            for ledger, failed, job in zip(self.ledgers, failures, self.jobs, strict=True):
                write_quietly(ledger, failed, job)
            raise
        for marks in pending:
            marks.flush()
        if record:
            self.record(failures)
        stats.skipped = len(blocks) - stats.processed - stats.failed
        stats.foreground, stats.written = tuple(foreground), tuple(written)
        stats.failures = tuple(failures)
        stats.seconds = time.perf_counter() - start
        return stats

    def record(self, failures: Sequence[Failures]) -> None:
        """Write each output's failures to its ledger (one object each, if any; none when
        no block ran, e.g. `run --blocks ""`)."""
        if not failures:
            return
        for ledger, failed, job in zip(self.ledgers, failures, self.jobs, strict=True):
            if failed:
                retry(lambda: ledger.write(failed, job), "the failure ledger", job.where)  # noqa: B023

    def _threshold(self, selection: tuple[slice, ...], which: tuple[int, ...]) -> list[int]:
        values = [self.values[i] for i in which]
        direct = self._direct(which)
        if direct is not None:
            return direct.threshold_block(selection, values)
        targets = [self.outputs[i] for i in which]
        levels = [self.levels[i] for i in which]
        return threshold_block(self.job.input, targets, selection, values, levels)

    @property
    def direct(self) -> DirectBlockIO | None:
        """The direct path for every output (None: zarr's codec pipeline moves the chunks)."""
        return self._direct(tuple(range(len(self.jobs))))

    def _direct(self, which: tuple[int, ...]) -> DirectBlockIO | None:
        """The direct path for these outputs. It reuses buffers, so each thread has its own
        (one per set of outputs; a sweep's outputs nearly always move together)."""
        if not self.use_direct:
            return None
        cache = getattr(self._local, "direct", None)
        if cache is None:
            cache = self._local.direct = {}
        if which not in cache:
            cache[which] = DirectBlockIO.maybe(
                self.job.input, [self.outputs[i] for i in which], [self.levels[i] for i in which]
            )
        return cache[which]


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
    lo, hi = bounds(selection, shape)
    return math.prod(b - a for a, b in zip(lo, hi, strict=True))


@dataclass(frozen=True)
class Verify:
    """A verifying pass after the blocks are written: every block of the partition, or
    `sample` of them drawn with `seed` (None: a fresh seed from os.urandom each run, so a
    retry checks other blocks; the log names the seed and the blocks checked)."""

    sample: int | None = None
    seed: int | None = None


def run_partition(
    params: JobParameters,
    partition: int | None = None,
    expect_fingerprint: str | None = None,
    verify: Verify | None = None,
) -> Stats:
    """Resolve the job (each job of a sweep), claim its outputs, and process one partition
    (or all of it); then, with `verify`, check what the partition's outputs hold."""
    whole = partition is None
    # A job whose plan is expected was prepared: its partitions must find the output.
    jobs = resolve_sweep(params, whole_job=whole, prepared=bool(expect_fingerprint) and not whole)
    plan = jobs[0].plan
    planned = sweep_fingerprint(jobs)
    if expect_fingerprint and expect_fingerprint != planned:
        raise PlanChanged(
            "fingerprint",
            f"this worker planned {planned}, the job expects {expect_fingerprint}: "
            "the input or the job changed since it was prepared",
        )
    if partition is None:
        blocks = range(plan.total_blocks)
    else:
        blocks = plan.partition_range(partition, params.partition_count)
    with claim_all(jobs, whole_job=whole) as claims:
        logger.info(
            "plan %s: blocks %d-%d of %d", planned, blocks.start, blocks.stop - 1, plan.total_blocks
        )
        worker = BlockWorker(jobs, freshness=[c.freshness for c in claims])
        written: set[int] = set()  # what the verifying pass tells apart from older blocks
        with still_ours(claims):
            stats = worker.process(
                blocks, on_block=(lambda b, _: written.add(b)) if verify is not None else None
            )
            if verify is not None:
                _verify(worker, blocks, verify, stats, written)
        if stats.failed:
            error = blocks_failed(jobs, stats.failures, stats.processed)
            error.stats = stats
            raise error
        if whole:
            for claim in claims:
                claim.complete()
    logger.info(
        "done: %d blocks processed, %d already done, %.1f s",
        stats.processed,
        stats.skipped,
        stats.seconds,
    )
    return stats


def _verify(
    worker: BlockWorker, blocks: range, verify: Verify, stats: Stats, written: set[int]
) -> None:
    """Check each output's done blocks (the failed ones are in the ledger already).

    A wrong block loses its marker, and the pass fails (exit 1, `OutputWrong`) once every
    output is checked, so the retry rewrites s0 and its levels there. A done block whose
    input cannot be decoded now cannot be verified: it loses its marker and is recorded
    in the failure ledger, as a run records such a block, and counts in `stats.failed`
    (the run then ends with exit 3, `BlocksFailed`, naming the chunk).
    """
    from .intervals import format_runs, runs
    from .verify import check_outputs, damaged, output_wrong, sample_of

    seed = verify.seed if verify.seed is not None else int.from_bytes(os.urandom(4), "big")
    ids = sample_of(blocks, verify.sample, seed)
    drawn = f"{len(ids)} of {len(blocks)}, seed {seed}" if len(ids) < len(blocks) else "all"
    logger.info("verifying blocks %s (%s)", format_runs(runs(ids)), drawn)
    found: list[tuple[Job, Any]] = []
    unreadable: set[int] = set()
    # a block that failed in this run has nothing to verify; the jobs share one read
    missing = [set(markers.missing(blocks)) for markers in worker.all_markers]
    checks = check_outputs(worker.jobs, [[b for b in ids if b not in m] for m in missing])
    for i, (job, markers, check) in enumerate(
        zip(worker.jobs, worker.all_markers, checks, strict=True)
    ):
        if check.wrong:
            markers.unmark(sorted(check.wrong))
            found.append((job, check))
        if check.unchecked:
            markers.unmark(sorted(check.unchecked))
            failures = Failures()
            for block, error in damaged(check):
                failures.add(block, error)
            worker.record([failures if k == i else Failures() for k in range(len(worker.jobs))])
            stats.failures = tuple(
                f.merge(failures) if k == i else f for k, f in enumerate(stats.failures)
            )
            unreadable |= check.unchecked.keys()
            logger.warning(
                "%d blocks of %s cannot be verified, their input is damaged; recorded",
                len(check.unchecked),
                job.where,
            )
        logger.info(
            "verified %d blocks of %s: %d wrong", check.checked, job.where, len(check.wrong)
        )
    stats.failed += len(unreadable)
    if found:
        job, check = found[0]
        raise output_wrong(job, check, written, more_outputs=len(found) - 1)


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
    partitions, overwrite, output_chunks, ...); `thresholds=[...]` sweeps several in one
    pass, with `{threshold}` in `output_dataset` naming each one's output.
    """
    params = JobParameters(
        input_container=str(input_container),
        input_dataset=input_dataset,
        output_container=str(output_container),
        output_dataset=output_dataset,
        **seed_threshold(threshold, options),
    )

    def io_loop() -> Stats:
        return run_partition(params, partition, expect_fingerprint)

    return io_loop if return_io_loop else io_loop()


start_worker = start_worker_fn
