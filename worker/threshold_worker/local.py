"""Run a whole job on this machine with N worker processes.

Work goes out as small contiguous ranges of block ids, a bounded number in flight, so
the engine's memory does not grow with the number of blocks and a slow range never
holds up the rest. Worker processes die with the parent (Linux), so a killed run
leaves nothing writing behind it; its done-markers make the rerun resume.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from . import chunk_path, intervals, ome, view
from .errors import Terminated, WorkerDied
from .intervals import Run
from .job import Job, claim_all, resolve_sweep, still_ours, sweep_fingerprint
from .lease import Freshness
from .ledger import blocks_failed, write_quietly
from .markers import BUCKET
from .params import JobParameters
from .worker import BlockWorker, Stats

logger = logging.getLogger(__name__)

_worker: BlockWorker | None = None
_progress: Progress | None = None
_slot = -1


class Progress:
    """Blocks and voxels done, counted by the worker processes for the progress bar.

    Each process adds to a slot of its own and the parent sums the slots: no lock is shared
    with the parent, since a process killed in the middle of an update (the out-of-memory
    killer) would leave it held, and the parent waiting on it forever. The slot is handed
    out once, when a process starts (a lock only the starting processes take)."""

    def __init__(self, ctx: Any, workers: int) -> None:
        self.slots = ctx.Array("q", 2 * workers, lock=False)
        self.handed_out = ctx.Value("i", 0)

    def claim(self) -> int:
        with self.handed_out.get_lock():
            slot = self.handed_out.value
            self.handed_out.value += 1
        return slot if 2 * slot < len(self.slots) else -1

    def add(self, slot: int, voxels: int) -> None:
        if slot >= 0:
            self.slots[2 * slot] += 1
            self.slots[2 * slot + 1] += voxels

    def totals(self) -> tuple[int, int]:
        values = self.slots[:]
        return sum(values[0::2]), sum(values[1::2])


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _init(
    spec: JobParameters | None, progress: Progress, freshness: list[Freshness | None]
) -> None:
    """Set up a worker process; `spec` is None when it was forked with `_worker` set."""
    global _worker, _progress, _slot
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler
    if spec is not None:
        _worker = BlockWorker(resolve_sweep(spec), freshness=freshness)
    _progress = progress
    _slot = progress.claim()


def _count(_block: int, voxels: int) -> None:
    assert _progress is not None
    _progress.add(_slot, voxels)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def _process(start: int, stop: int) -> Stats:
    """One range of blocks. SIGTERM in the middle unwinds it: the blocks finished so far get
    their markers, then the process ends at once (between ranges it simply ends)."""
    assert _worker is not None
    signal.signal(signal.SIGTERM, _terminate)
    try:  # failures come back in the Stats: the parent records one ledger object per run
        return _worker.process(range(start, stop), _count, record=False)
    except Terminated:
        os._exit(128 + signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class Summary:
    jobs: list[Job]
    stats: Stats
    seconds: float
    workers: int
    already_done: int
    #: Blocks asked for with `--blocks` (None: the whole plan).
    requested: int | None = None
    worker: BlockWorker | None = field(default=None, repr=False)

    def worker_done(self, total: int) -> bool:
        """Whether every block of the plan has its marker now."""
        return self.worker is not None and self.worker.count_done(range(total)) == total

    @property
    def job(self) -> Job:
        return self.jobs[0]

    def lines(self) -> list[str]:
        plan, s = self.job.plan, self.stats
        rate = s.voxels / self.seconds if self.seconds > 0 else 0.0
        block_rate = s.processed / self.seconds if self.seconds > 0 else 0.0
        mbs = s.voxels * self.job.input.dtype.itemsize / self.seconds / 1e6 if self.seconds else 0.0
        failed = f"{s.failed} failed, " if s.failed else ""
        asked = f" ({self.requested} asked for with --blocks)" if self.requested is not None else ""
        fingerprint = sweep_fingerprint(self.jobs)
        lines = [
            f"output      {job.output_path}/{job.spec.output_dataset}"
            + (f" (OME-Zarr image, mask at {ome.LEVEL}{_levels(job)})" if job.spec.ome_zarr else "")
            for job in self.jobs
        ]
        lines += [
            f"plan        {fingerprint}: {plan.total_blocks} blocks of "
            f"{'x'.join(map(str, plan.block_shape))} voxels, fit={plan.fit}"
            + (f", {len(self.jobs)} thresholds in one pass" if len(self.jobs) > 1 else ""),
            f"blocks      {s.processed} processed, {failed}{self.already_done} already done, "
            f"{plan.total_blocks} total{asked}",
            f"voxels      {s.voxels:,} in {self.seconds:.2f} s with {self.workers} "
            f"process{'es' if self.workers > 1 else ''}: {block_rate:.1f} blocks/s, "
            f"{rate / 1e6:.1f} Mvoxel/s, {mbs:.0f} MB/s of input",
        ]
        for i, job in enumerate(self.jobs):
            fg, written = (s.foreground[i], s.written[i]) if s.foreground else (0, 0)
            above = f"above {job.spec.threshold:g}"
            if written:
                lines.append(
                    f"foreground  {100.0 * fg / written:.2f} % of processed voxels {above}"
                )
            else:
                lines.append(f"foreground  {above}: no block left to process")
        lines += [f"view        {view.hint(job)}" for job in self.jobs]
        return lines


def _levels(job: Job) -> str:
    if job.pyramid is None:
        return ""
    return f", pyramid {ome.span(job.pyramid.names)} ({job.pyramid.mode})"


def _ranges(todo: list[Run], workers: int) -> Iterator[tuple[int, int]]:
    """Contiguous ranges of block ids that shrink as the work does (guided scheduling): few
    hand-outs while much is left, single blocks at the end, so no worker idles long."""
    left = intervals.count(todo)
    for first, last in todo:
        start, stop = first, last + 1
        while start < stop:
            size = max(1, min(BUCKET, left // (workers * 4), stop - start))
            yield start, start + size
            start += size
            left -= size


def run_local(
    spec: JobParameters,
    workers: int | None = None,
    progress: bool | None = None,
    blocks: list[Run] | None = None,
) -> Summary:
    """Claim the output (each output of a sweep) and process every block of the job that is
    not done (of `blocks` only, when given: runs of block ids of the plan, e.g. what
    `status --missing` prints). Raises `BlocksFailed` (exit 3) when blocks failed
    block-locally; they are in the failure ledger and the summary is on the error."""
    chunk_path.requested()  # a mistyped THRESHOLD_CHUNK_PATH stops the run before it writes
    jobs = resolve_sweep(spec)
    total = jobs[0].plan.total_blocks
    if blocks is not None:
        intervals.check_within(blocks, total, "--blocks")
    with claim_all(jobs) as claims:
        with still_ours(claims):
            summary = _run(spec, jobs, workers, progress, [c.freshness for c in claims], blocks)
        if summary.stats.failed:
            error = blocks_failed(jobs, summary.stats.failures, summary.stats.processed)
            error.summary, error.stats = summary, summary.stats
            raise error
        if blocks is None or summary.worker_done(total):
            for claim in claims:
                claim.complete()
    return summary


def _run(
    spec: JobParameters,
    jobs: list[Job],
    workers: int | None,
    progress: bool | None,
    freshness: list[Freshness | None],
    blocks: list[Run] | None = None,
) -> Summary:
    total = jobs[0].plan.total_blocks
    todo = [(0, total - 1)] if blocks is None else blocks
    workers = max(1, min(workers or os.cpu_count() or 1, intervals.count(todo)))
    worker = BlockWorker(jobs, freshness=freshness)
    already = worker.count_done(range(total))
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(
        total=total,
        initial=already,
        unit="block",
        disable=not show,
        dynamic_ncols=True,
        desc="threshold",
        smoothing=0.1,
    )
    start = time.perf_counter()
    acc = [Stats()]  # what finished so far, for the ledger if the run fails
    last_voxels = 0
    try:
        if workers == 1:

            def tick(_b: int, voxels: int) -> None:
                nonlocal last_voxels
                last_voxels += voxels
                bar.update(1)
                bar.set_postfix_str(_rate(last_voxels, start), refresh=False)

            for first, last in todo:
                acc[0] += worker.process(range(first, last + 1), tick, record=False)
        else:
            _run_pool(spec, worker, workers, bar, start, todo, acc)
    except BaseException:
        for ledger, failed, job in zip(worker.ledgers, acc[0].failures, jobs, strict=False):
            write_quietly(ledger, failed, job)
        raise
    finally:
        bar.close()
    stats = acc[0]
    worker.record(stats.failures)  # one object per output and run, whatever failed
    seconds = time.perf_counter() - start
    return Summary(
        jobs=jobs,
        stats=stats,
        seconds=seconds,
        workers=workers,
        already_done=already,
        requested=None if blocks is None else intervals.count(todo),
        worker=worker,
    )


def _rate(voxels: int, start: float) -> str:
    elapsed = time.perf_counter() - start
    return f"{voxels / elapsed / 1e6:.1f} Mvox/s" if elapsed > 0 else ""


def _run_pool(
    spec: JobParameters,
    worker: BlockWorker,
    workers: int,
    bar: tqdm,
    start: float,
    todo: list[Run],
    acc: list[Stats],
) -> None:
    # Fork starts workers in milliseconds with everything imported; zarr re-creates its
    # event loop in the child (os.register_at_fork). Elsewhere, and with a codec pipeline
    # that does not survive a fork (chunk_path.py), spawn. On local disks the
    # children also inherit the resolved job (resolving it again costs each about 10 ms
    # and 8 MB of fresh pages); object-store clients are bound to the parent's event loop,
    # so there each child resolves the job itself.
    global _worker
    fork = sys.platform.startswith("linux") and chunk_path.pipeline_survives_fork()
    ctx = mp.get_context("fork" if fork else "spawn")
    counter = Progress(ctx, workers)
    job = worker.job
    inherit = fork and not job.remote
    if inherit:
        _worker = worker
    pool = ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init,
        initargs=(None if inherit else spec, counter, worker.freshness),
    )
    try:
        _drain(pool, todo, workers, counter, bar, start, acc)
    except BrokenProcessPool:
        _stop_children()
        raise WorkerDied(
            "",
            "a worker process was killed (out of memory? see `dmesg`); the blocks finished "
            "before are kept: rerun the same command to resume, with fewer processes (-n) if "
            "memory is short",
        ) from None
    except BaseException:
        # Interrupted or failed: hand out nothing more, let each worker record what it
        # finished and end, and do not wait long for it.
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_children()
        raise
    finally:
        _worker = None
    pool.shutdown()


def _stop_children(grace: float = 1.5) -> None:
    """SIGTERM the worker processes (they write their markers and exit), then SIGKILL any
    that are still there after `grace` seconds."""
    children = mp.active_children()
    for child in children:
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGTERM)  # type: ignore[arg-type]
    deadline = time.monotonic() + grace
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()


def _drain(
    pool: ProcessPoolExecutor,
    todo: list[Run],
    workers: int,
    counter: Progress,
    bar: tqdm,
    start: float,
    acc: list[Stats],
) -> None:
    """Hand out ranges of block ids, a bounded number in flight, and follow progress; what
    finished is summed into `acc[0]`."""
    pending = _ranges(todo, workers)
    inflight: set[Future[Stats]] = set()
    seen = 0

    def fill() -> None:
        for rng in pending:
            inflight.add(pool.submit(_process, *rng))
            if len(inflight) >= workers * 4:
                break

    fill()
    while inflight:
        done, _ = wait(inflight, timeout=0.25, return_when=FIRST_COMPLETED)
        for fut in done:
            inflight.discard(fut)
            acc[0] = acc[0] + fut.result()
        fill()
        blocks, voxels = counter.totals()
        bar.update(blocks - seen)
        seen = blocks
        bar.set_postfix_str(_rate(voxels, start), refresh=False)
