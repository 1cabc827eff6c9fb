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

from .errors import DamagedInput
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
    ids: range | list[int] = range(total)
    if sample is not None and sample < total:
        ids = sorted(random.Random(seed).sample(range(total), sample))
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
    return Verdict(status, len(ids), regions(job, runs(wrong)))


def _read_input(job: Job, selection: tuple[slice, ...]) -> np.ndarray:
    try:
        return job.input[selection]
    except (RuntimeError, ValueError, TypeError) as e:  # codecs' errors: a damaged chunk
        region = ", ".join(f"{s.start}:{s.stop}" for s in selection)
        raise DamagedInput(f"a chunk of the input in [{region}]", e) from None
