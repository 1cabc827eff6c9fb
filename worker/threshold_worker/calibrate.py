"""What a job will cost: bytes to read and write, and a run time measured on a few blocks.

`plan --calibrate N` reads N blocks spread evenly over the plan, thresholds them and encodes
their output chunks exactly as a run would (the same chunk path, the same codecs), timed;
the outputs are in-memory arrays of the planned layout, so nothing is written anywhere. The
estimate scales the mean time per block to the plan's blocks over the given parallelism:
it assumes the processes (or pods) do not slow each other down, which holds while the disk
or the object store keeps up; the first blocks read from a cold cache, so a run that finds
the input in the page cache goes faster.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.storage import MemoryStore

from .chunkio import ChunkFormat, DirectBlockIO, chunk_format
from .job import Job
from .kernel import threshold_block
from .ledger import BLOCK_LOCAL
from .plan import bounds
from .zarr_internals import run

#: zarr's metadata documents in the in-memory outputs: not chunks.
_METADATA = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")


@dataclass(frozen=True)
class Calibration:
    blocks: int
    seconds: float
    voxels: int
    #: Stored (encoded) bytes of the input chunks the blocks read; None where the input's
    #: chunks are not plain keys (sharded).
    input_stored_bytes: int | None
    input_decoded_bytes: int
    #: Encoded bytes of the output chunks the blocks made (all outputs of a sweep).
    output_bytes: int
    chunk_path: str
    #: Sampled blocks that failed on their own (a damaged input chunk): not timed.
    failed: int = 0

    @property
    def seconds_per_block(self) -> float:
        return self.seconds / self.blocks if self.blocks else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "blocks": self.blocks,
            "seconds": self.seconds,
            "seconds_per_block": self.seconds_per_block,
            "voxels": self.voxels,
            "input_stored_bytes": self.input_stored_bytes,
            "input_decoded_bytes": self.input_decoded_bytes,
            "output_bytes": self.output_bytes,
            "chunk_path": self.chunk_path,
            "failed": self.failed,
        }


def sample_blocks(total: int, n: int) -> list[int]:
    """`n` block ids spread evenly over `total` (all of them if n >= total)."""
    n = min(n, total)
    return sorted({i * total // n for i in range(n)}) if n else []


def _in_memory_output(job: Job, chunks: dict[str, Any]) -> zarr.Array:
    """The job's output as it would be created, in `chunks` (a dict) instead of storage."""
    return job._create_output(MemoryStore(store_dict=chunks))


def calibrate(jobs: Sequence[Job], n: int) -> Calibration:
    """Time `n` blocks of the job (each job of a sweep: one read, a mask per threshold)."""
    job = jobs[0]
    stores: list[dict[str, Any]] = [{} for _ in jobs]
    targets = [_in_memory_output(j, d) for j, d in zip(jobs, stores, strict=True)]
    values = [float(j.spec.threshold) for j in jobs]
    direct = DirectBlockIO.maybe(job.input, targets)
    source = chunk_format(job.input, writing=False)
    itemsize = np.dtype(job.input.dtype).itemsize
    seconds, voxels, stored, decoded, written, failed = 0.0, 0, 0, 0, 0, 0
    ids = sample_blocks(job.plan.total_blocks, n)
    for block_id in ids:
        selection = job.block_selection(block_id)
        began = time.perf_counter()
        try:
            if direct is not None:
                direct.threshold_block(selection, values)
            else:
                threshold_block(job.input, targets, selection, values)
        except BLOCK_LOCAL:  # a run would record it and go on: so does the estimate
            failed += 1
            continue
        seconds += time.perf_counter() - began
        size = math.prod(s.stop - s.start for s in _slices(selection, job.input.shape))
        voxels += size // _channels(job)
        decoded += size * itemsize
        if source is not None:
            stored += _stored_bytes(job, source, selection)
        for chunks in stores:  # count the encoded chunks, then drop them: memory stays small
            for key in [k for k in chunks if k.rsplit("/", 1)[-1] not in _METADATA]:
                written += len(chunks.pop(key))
    return Calibration(
        blocks=len(ids) - failed,
        seconds=seconds,
        voxels=voxels,
        input_stored_bytes=stored if source is not None else None,
        input_decoded_bytes=decoded,
        output_bytes=written,
        chunk_path="direct" if direct is not None else "zarr",
        failed=failed,
    )


def _slices(selection: tuple[slice, ...], shape: Sequence[int]) -> list[range]:
    return [range(a, b) for a, b in zip(*bounds(selection, shape), strict=True)]


def _channels(job: Job) -> int:
    return math.prod(job.input.shape[i] for i in job.input_meta.channel_indices)


def _stored_bytes(job: Job, fmt: ChunkFormat, selection: tuple[slice, ...]) -> int:
    """Stored size of the input chunks a block reads (missing chunks: 0)."""
    lo, hi = bounds(selection, fmt.shape)
    spans = [range(a // c, (b - 1) // c + 1) for a, b, c in zip(lo, hi, fmt.chunks, strict=True)]
    store = job.input.store_path.store
    total = 0
    for coords in itertools.product(*spans):
        size = run(_getsize(store, fmt.key(coords)))
        total += size or 0
    return total


async def _getsize(store: Any, key: str) -> int | None:
    try:
        return await store.getsize(key)
    except FileNotFoundError:
        return None


def read_bytes(job: Job) -> int:
    """Decoded bytes of the input chunks the plan reads: chunks are read whole, so the ROI
    rounded out to the input's chunk grid (clipped to the array), every channel."""
    fmt_chunks = tuple(job.input.chunks)
    shape = tuple(job.input.shape)
    spatial = job.input_meta.spatial_indices
    plan = job.plan
    n = 1
    for k, i in enumerate(spatial):
        c = fmt_chunks[i]
        lo = plan.roi_begin[k] // c * c
        hi = min(-(-plan.roi_end[k] // c) * c, shape[i])
        if plan.fit == "valid":
            end = plan.grid_origin[k] + plan.grid_shape[k] * plan.block_shape[k]
            hi = min(-(-end // c) * c, shape[i])
        n *= hi - lo
    return n * _channels(job) * np.dtype(job.input.dtype).itemsize


def cost(jobs: Sequence[Job], parallelism: int, calibration: Calibration | None) -> dict[str, Any]:
    """Bytes to read and to write, and, with a calibration, the run time at `parallelism`
    processes (or pods)."""
    job = jobs[0]
    plan = job.plan
    out_voxels = plan.voxels * _channels(job) * len(jobs)
    report: dict[str, Any] = {
        "blocks": plan.total_blocks,
        "partitions": plan.partitions,
        "parallelism": parallelism,
        "read_bytes_decoded": read_bytes(job),
        "read_bytes_stored_estimate": None,
        "write_bytes_at_most": out_voxels,  # uint8, before compression
        "write_bytes_estimate": None,
        "seconds_estimate": None,
        "calibration": calibration.to_dict() if calibration is not None else None,
    }
    if calibration is not None and calibration.blocks:
        cal = calibration
        if cal.input_stored_bytes is not None and cal.input_decoded_bytes:
            ratio = cal.input_stored_bytes / cal.input_decoded_bytes
            report["read_bytes_stored_estimate"] = round(report["read_bytes_decoded"] * ratio)
        if cal.voxels:
            per_voxel = cal.output_bytes / (cal.voxels * _channels(job))
            report["write_bytes_estimate"] = round(per_voxel * plan.voxels * _channels(job))
        workers = max(1, min(parallelism, plan.total_blocks))
        report["seconds_estimate"] = cal.seconds_per_block * plan.total_blocks / workers
    return report
