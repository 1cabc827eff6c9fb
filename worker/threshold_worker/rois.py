"""Blocks of a plan as world-unit ROIs: what status, verify and the failure ledger name, so
that a person can pass them back as `--roi-offset/--roi-shape` or look at them in a viewer."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .plan import Box

if TYPE_CHECKING:
    from .job import Job

Roi = dict[str, list[int]]


def world_roi(job: Job, box: Box) -> Roi:
    """A voxel box of the plan as a world-unit ROI (offset and shape, spatial axes)."""
    meta = job.input_meta
    begin, end = box
    offset = [o + b * v for o, b, v in zip(meta.offset, begin, meta.voxel_size, strict=True)]
    shape = [(e - b) * v for b, e, v in zip(begin, end, meta.voxel_size, strict=True)]
    return {"offset": offset, "shape": shape}


def run_rois(job: Job, first: int, last: int) -> list[Roi]:
    """Blocks `first`..`last`: at most 2 x dims - 1 ROIs, however long the run."""
    return [world_roi(job, box) for box in job.plan.run_boxes(first, last)]


def run_voxels(job: Job, first: int, last: int) -> int:
    """Voxels (per channel) that blocks `first`..`last` cover, clipped to the ROI."""
    return sum(
        math.prod(e - b for b, e in zip(*box, strict=True))
        for box in job.plan.run_boxes(first, last)
    )


def describe(rois: list[Roi]) -> str:
    return "; ".join(f"offset {tuple(r['offset'])} shape {tuple(r['shape'])}" for r in rois)
