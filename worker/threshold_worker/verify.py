"""Check an output against its job: complete (it is the job's own, and every block of the
plan has a done-marker) and right (`input > threshold` recomputed and compared, on every
block or on a random sample). A deleted chunk, a damaged one and a stale marker all show
up here: the first two as blocks that differ, the last as a marker over wrong data.

It reads through zarr-python, not the worker's own chunk path, so that the check does not
share the code it checks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from .errors import DamagedInput, OutputWrong
from .intervals import format_run, runs
from .job import Job
from .kernel import threshold
from .status import JobStatus, Region, job_status, regions
from .storage import open_store


@dataclass
class Verdict:
    status: JobStatus
    checked: int
    wrong: list[Region]

    @property
    def complete(self) -> bool:
        return self.status.ours and not self.status.missing

    @property
    def ok(self) -> bool:
        return self.complete and not self.wrong

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.status.to_dict(),
            "ok": self.ok,
            "complete": self.complete,
            "checked_blocks": self.checked,
            "wrong_blocks": sum(r.last - r.first + 1 for r in self.wrong),
            "wrong": [r.to_dict() for r in self.wrong],
        }

    def lines(self, limit: int = 20) -> list[str]:
        out = self.status.lines(limit)
        wrong = sum(r.last - r.first + 1 for r in self.wrong)
        out.append(
            f"checked     {self.checked} blocks against input > {self.status.job.spec.threshold:g}:"
            f" {wrong} differ"
        )
        for region in self.wrong[:limit]:
            rois = "; ".join(
                f"offset {tuple(r['offset'])} shape {tuple(r['shape'])}" for r in region.rois
            )
            out.append(f"wrong       blocks {format_run(region.first, region.last)}: {rois}")
        verdict = "complete and right" if self.ok else "NOT complete and right"
        out.append(f"verdict     {verdict}")
        return out


def verify(
    job: Job,
    sample: int | None = None,
    seed: int = 0,
    on_block: Callable[[int], None] | None = None,
) -> Verdict:
    """Compare every block (or `sample` blocks drawn with `seed`) with `input > threshold`."""
    status = job_status(job)
    total = job.plan.total_blocks
    ids = sample_of(range(total), sample, seed)
    wrong = wrong_blocks(job, ids, on_block)
    return Verdict(status, len(ids), regions(job, runs(wrong)))


def sample_of(blocks: range, sample: int | None, seed: int) -> range | list[int]:
    """All of `blocks`, or `sample` of them drawn with `seed`, in order."""
    if sample is None or sample >= len(blocks):
        return blocks
    return sorted(random.Random(seed).sample(blocks, sample))


def wrong_blocks(
    job: Job, ids: range | list[int], on_block: Callable[[int], None] | None = None
) -> list[int]:
    """The blocks of `ids` whose output is not `input > threshold` (or cannot be read)."""
    output = zarr.open_array(
        open_store(job.output_path, read_only=True), path=job.array_dataset, mode="r"
    )
    wrong: list[int] = []
    for block in ids:
        selection = job.block_selection(block)
        expected = threshold(_read_input(job, selection), job.spec.threshold)
        try:
            got = output[selection]
        except (RuntimeError, ValueError, TypeError):  # a damaged output chunk: wrong
            got = None
        if got is None or not np.array_equal(got, expected):
            wrong.append(block)
        if on_block is not None:
            on_block(block)
    return wrong


def output_wrong(job: Job, wrong: list[int], checked: int) -> OutputWrong:
    """The one-line error of a verifying pass that found `wrong` blocks (markers taken back)."""
    found = regions(job, runs(wrong))
    first = found[0]
    rois = "; ".join(f"offset {tuple(r['offset'])} shape {tuple(r['shape'])}" for r in first.rois)
    more = f" and {len(found) - 1} more regions" if len(found) > 1 else ""
    return OutputWrong(
        f"{job.where}",
        f"{len(wrong)} of {checked} blocks checked differ from input > {job.spec.threshold!r} "
        f"after writing: blocks {format_run(first.first, first.last)} ({rois}){more}; their "
        "done-markers are taken back, so the retry rewrites them",
    )


def _read_input(job: Job, selection: tuple[slice, ...]) -> np.ndarray:
    try:
        return job.input[selection]
    except (RuntimeError, ValueError, TypeError) as e:  # codecs' errors: a damaged chunk
        region = ", ".join(f"{s.start}:{s.stop}" for s in selection)
        raise DamagedInput(f"a chunk of the input in [{region}]", e) from None
