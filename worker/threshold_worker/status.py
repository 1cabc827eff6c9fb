"""Where a job stands, read from its output alone: whose output it is, which blocks are done
(their done-markers), which failed (the failure ledger, less what is done since) and which
regions are missing, as world-unit ROIs; what remains and how fast the job went.

Nothing here writes. Markers are listed a bucket at a time and name runs of blocks, so the
cost follows the number of marker objects, not of blocks; missing blocks come out as runs,
and a run as at most 2 x dims - 1 boxes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .intervals import Run, blocks_run, format_run
from .job import Job
from .ledger import FailureLedger, FailureRecord, newest_records, still_failed
from .markers import DoneMarkers
from .ownership import OutputArea, OwnerRecord, Remembered, Unreadable
from .rois import describe, run_rois, run_voxels, world_roi
from .storage import open_store

__all__ = ["JobStatus", "Region", "job_status", "regions", "world_roi"]


@dataclass
class Region:
    """Blocks `first`..`last` of the plan and the world-unit ROIs they cover."""

    first: int
    last: int
    rois: list[dict[str, list[int]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"blocks": format_run(self.first, self.last), "rois": self.rois}


def regions(job: Job, items: Iterator[Run] | list[Run]) -> list[Region]:
    return [Region(a, b, run_rois(job, a, b)) for a, b in items]


@dataclass
class JobStatus:
    job: Job
    owner: Any
    done: int
    #: Every block without a done-marker, failed or not.
    missing: list[Region]
    #: The missing blocks the failure ledger names, with the newest record's error.
    failed: list[FailureRecord] = field(default_factory=list)
    #: Failed blocks that a ledger object only counted (beyond its record cap).
    unlisted_failed: int = 0
    #: Voxels of the missing blocks.
    remaining_voxels: int = 0

    @property
    def failed_blocks(self) -> int:
        return sum(r.blocks for r in self.failed)

    def missing_runs(self) -> list[Run]:
        return [(r.first, r.last) for r in self.missing]

    def failed_runs(self) -> list[Run]:
        return [(r.first, r.last) for r in self.failed]

    def rate(self) -> dict[str, Any] | None:
        """Blocks and voxels per second since the job started (until it finished, or now):
        an average over the job's life, pauses between reruns included."""
        owner = self.owner
        if not self.ours or not isinstance(owner, OwnerRecord):
            return None
        try:
            began = _when(owner.started)
            ended = _when(owner.finished) if owner.finished else dt.datetime.now(dt.UTC)
        except ValueError:
            return None
        seconds = (ended - began).total_seconds()
        if seconds <= 0:
            return None
        voxels = self.job.plan.voxels - self.remaining_voxels
        return {
            "seconds": seconds,
            "blocks_per_second": self.done / seconds,
            "voxels_per_second": voxels / seconds,
            "since": owner.started,
        }

    @property
    def total(self) -> int:
        return self.job.plan.total_blocks

    @property
    def missing_blocks(self) -> int:
        return sum(r.last - r.first + 1 for r in self.missing)

    def owner_text(self) -> str:
        owner = self.owner
        if owner is None:
            if not self.job.output.exists:
                return "none: there is no output here yet"
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
            "failed_blocks": self.failed_blocks,
            "unlisted_failed_blocks": self.unlisted_failed,
            "remaining": {"blocks": self.missing_blocks, "voxels": self.remaining_voxels},
            "rate": self.rate(),
            "failed": [r.to_dict() for r in self.failed],
            "missing": [r.to_dict() for r in self.missing],
        }

    def lines(self, limit: int = 20) -> list[str]:
        out = [
            f"output      {self.job.where}",
            f"owner       {self.owner_text()}",
            f"plan        {self.job.plan.fingerprint}: {self.total} blocks",
            f"blocks      {self.done} done, {self.missing_blocks} missing"
            + (f" ({self.failed_blocks} of them failed)" if self.failed_blocks else ""),
        ]
        rate = self.rate()
        if rate is not None:
            out.append(
                f"rate        {rate['blocks_per_second']:.2f} blocks/s, "
                f"{rate['voxels_per_second'] / 1e6:.2f} Mvoxel/s on average since {rate['since']}"
            )
        if self.missing:
            left = f"remaining   {self.missing_blocks} blocks, {self.remaining_voxels:,} voxels"
            if rate is not None and rate["blocks_per_second"] > 0:
                left += (
                    f", about {self.missing_blocks / rate['blocks_per_second']:.0f} s at that rate"
                )
            out.append(left)
        for record in self.failed[:limit]:
            out.append(f"failed      {record.describe()}: exit {record.exit_code}, {record.error}")
        if len(self.failed) > limit:
            out.append(
                f"failed      ... and {len(self.failed) - limit} more runs (--json lists all)"
            )
        if self.unlisted_failed:
            out.append(
                f"failed      ... and {self.unlisted_failed} more failed blocks the ledger only "
                "counted; they are among the missing blocks"
            )
        for region in self.missing[:limit]:
            out.append(
                f"missing     {blocks_run(region.first, region.last)}: {describe(region.rois)}"
            )
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
    failed: list[FailureRecord] = []
    unlisted = 0
    if isinstance(owner, OwnerRecord) and owner.fingerprint == job.plan.fingerprint:
        markers = DoneMarkers(store, job.array_dataset, job.plan.fingerprint)
        missing = list(markers.missing_runs(blocks))
        entries = FailureLedger(store, job.spec.output_dataset, job.plan.fingerprint).read()
        failed = still_failed(newest_records(entries), missing)
        for record in failed:
            record.rois = run_rois(job, record.first, record.last)
        unlisted = sum(
            e.more_blocks
            for e in entries
            if e.more_within is not None and _meets(e.more_within, missing)
        )
    else:
        missing = [(0, job.plan.total_blocks - 1)] if job.plan.total_blocks else []
    found = regions(job, missing)
    done = job.plan.total_blocks - sum(r.last - r.first + 1 for r in found)
    remaining = sum(run_voxels(job, a, b) for a, b in missing)
    return JobStatus(job, owner, done, found, failed, unlisted, remaining)


def _meets(run: Run, runs: list[Run]) -> bool:
    return any(a <= run[1] and run[0] <= b for a, b in runs)


def _when(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
