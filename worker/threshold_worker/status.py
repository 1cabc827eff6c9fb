"""Where a job stands, read from its output alone: whose output it is, which blocks are done
(their done-markers) and which regions are missing, as world-unit ROIs.

Nothing here writes. Markers are listed a bucket at a time and name runs of blocks, so the
cost follows the number of marker objects, not of blocks; missing blocks come out as runs,
and a run as at most 2 x dims - 1 boxes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .intervals import Run, format_run
from .job import Job
from .markers import DoneMarkers
from .ownership import OutputArea, OwnerRecord, Remembered, Unreadable
from .plan import Box
from .storage import open_store


@dataclass
class Region:
    """Blocks `first`..`last` of the plan and the world-unit ROIs they cover."""

    first: int
    last: int
    rois: list[dict[str, list[int]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"blocks": format_run(self.first, self.last), "rois": self.rois}


def world_roi(job: Job, box: Box) -> dict[str, list[int]]:
    """A voxel box of the plan as a world-unit ROI (offset and shape, spatial axes)."""
    meta = job.input_meta
    begin, end = box
    offset = [o + b * v for o, b, v in zip(meta.offset, begin, meta.voxel_size, strict=True)]
    shape = [(e - b) * v for b, e, v in zip(begin, end, meta.voxel_size, strict=True)]
    return {"offset": offset, "shape": shape}


def regions(job: Job, items: Iterator[Run] | list[Run]) -> list[Region]:
    return [
        Region(a, b, [world_roi(job, box) for box in job.plan.run_boxes(a, b)]) for a, b in items
    ]


@dataclass
class JobStatus:
    job: Job
    owner: Any
    done: int
    missing: list[Region]

    @property
    def total(self) -> int:
        return self.job.plan.total_blocks

    @property
    def missing_blocks(self) -> int:
        return sum(r.last - r.first + 1 for r in self.missing)

    def owner_text(self) -> str:
        owner = self.owner
        if owner is None:
            return "none: no job has claimed this output"
        if isinstance(owner, OwnerRecord):
            mine = owner.fingerprint == self.job.plan.fingerprint
            who = "this job" if mine else "another job"
            return f"{who}, {owner.state}: {owner.describe()}"
        if isinstance(owner, Remembered):
            return f"a job whose owner record is lost: {owner.describe()}"
        assert isinstance(owner, Unreadable)
        return "an unreadable owner record"

    @property
    def ours(self) -> bool:
        return isinstance(self.owner, OwnerRecord) and (
            self.owner.fingerprint == self.job.plan.fingerprint
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.job.plan.fingerprint,
            "output": self.job.where,
            "owner": self.owner_text(),
            "ours": self.ours,
            "total_blocks": self.total,
            "done_blocks": self.done,
            "missing_blocks": self.missing_blocks,
            "missing": [r.to_dict() for r in self.missing],
        }

    def lines(self, limit: int = 20) -> list[str]:
        out = [
            f"output      {self.job.where}",
            f"owner       {self.owner_text()}",
            f"plan        {self.job.plan.fingerprint}: {self.total} blocks",
            f"blocks      {self.done} done, {self.missing_blocks} missing",
        ]
        for region in self.missing[:limit]:
            rois = "; ".join(
                f"offset {tuple(r['offset'])} shape {tuple(r['shape'])}" for r in region.rois
            )
            out.append(f"missing     blocks {format_run(region.first, region.last)}: {rois}")
        if len(self.missing) > limit:
            out.append(
                f"missing     ... and {len(self.missing) - limit} more runs (--json lists all)"
            )
        return out


def job_status(job: Job) -> JobStatus:
    """Read whose output it is and which blocks of the plan have no marker (this job's
    markers only: another job's are never counted)."""
    store = open_store(job.output_path, read_only=True)
    area = OutputArea(store, job.array_dataset)
    try:
        owner = area.read_owner(job.output_attributes)
    finally:
        if area.files is not None:
            area.files.close()
    blocks = range(job.plan.total_blocks)
    if isinstance(owner, OwnerRecord) and owner.fingerprint == job.plan.fingerprint:
        markers = DoneMarkers(store, job.array_dataset, job.plan.fingerprint)
        missing = list(markers.missing_runs(blocks))
    else:
        missing = [(0, job.plan.total_blocks - 1)] if job.plan.total_blocks else []
    found = regions(job, missing)
    done = job.plan.total_blocks - sum(r.last - r.first + 1 for r in found)
    return JobStatus(job, owner, done, found)
