"""The plan: a region of interest cut into chunk-aligned blocks, and blocks into partitions.

Everything here is arithmetic on a handful of integers. Block ids run in C order over the
block grid; partition i of k is a contiguous range of block ids (`partition_range`, the one
place that says which: the worker, the operator's status and its messages all use it). Nothing enumerates blocks, so a
plan of 10^7 blocks costs as little as one of ten.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .errors import InputError

Fit = Literal["shrink", "valid"]
FITS: tuple[str, ...] = ("shrink", "valid")
DEFAULT_FIT = "shrink"
Box = tuple[tuple[int, ...], tuple[int, ...]]


def fingerprint(identity: Mapping[str, Any]) -> str:
    """A short, stable hash of everything that decides what the output holds."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_block_shape(
    unit: Sequence[int], roi_shape: Sequence[int], sharded: bool
) -> tuple[int, ...]:
    """About eight write units (2 per axis, up to 3 axes), one shard if sharded, never
    larger than the ROI rounded up to whole units."""
    per_axis = 1 if sharded else 2
    shape = []
    for k, (u, r) in enumerate(zip(unit, roi_shape, strict=True)):
        n = per_axis if k >= len(unit) - 3 else 1
        shape.append(u * max(1, min(n, math.ceil(r / u))))
    return tuple(shape)


def round_up(shape: Sequence[int], step: Sequence[int]) -> tuple[int, ...]:
    """The smallest multiple of `step` at least `shape`, per axis."""
    return tuple(-(-int(x) // s) * s for x, s in zip(shape, step, strict=True))


def bounds(selection: Sequence[slice], shape: Sequence[int]) -> Box:
    """A selection of `shape`'s array as the voxel box it reads (its slices clipped)."""
    ends = [s.indices(n)[:2] for s, n in zip(selection, shape, strict=True)]
    return tuple(a for a, _ in ends), tuple(b for _, b in ends)


def _aligned(
    block_shape: Sequence[int], step: Sequence[int], begin: Sequence[int], shape: Sequence[int]
) -> tuple[int, ...]:
    """The block shape to suggest: rounded up to `step`, but no larger than the aligned span
    that covers the roi (a larger one is the same single block, and may not be a number the
    API takes: 2^63 - 1 rounded up is not an int64)."""
    spans = (
        round_up([b + n], [s])[0] - b // s * s for b, n, s in zip(begin, shape, step, strict=True)
    )
    return tuple(min(a, c) for a, c in zip(round_up(block_shape, step), spans, strict=True))


def _listed(values: Sequence[int]) -> str:
    """Values as a list option takes them: 16,16,16."""
    return ",".join(map(str, values))


@dataclass(frozen=True)
class Plan:
    """Blocks over `roi_begin`/`roi_shape` (voxel indices of the spatial axes)."""

    roi_begin: tuple[int, ...]
    roi_shape: tuple[int, ...]
    block_shape: tuple[int, ...]
    grid_origin: tuple[int, ...]
    grid_shape: tuple[int, ...]
    fit: str
    partitions: int
    fingerprint: str

    @classmethod
    def create(
        cls,
        *,
        array_shape: Sequence[int],
        write_unit: Sequence[int],
        roi_begin: Sequence[int],
        roi_shape: Sequence[int],
        block_shape: Sequence[int] | None = None,
        fit: str = "shrink",
        partitions: int = 1,
        identity: Mapping[str, Any] | None = None,
        sharded: bool = False,
        unit_name: str = "output chunk shape",
        align: Sequence[int] | None = None,
    ) -> Plan:
        """`align`: the grid the block grid starts on (default the write unit); a pyramid
        needs a coarser one (pyramid.py), a divisor of the block shape."""
        ndim = len(array_shape)
        if fit == "overhang":
            raise InputError(
                "fit", "'overhang' would write outside the roi; use 'shrink' or 'valid'"
            )
        if fit not in FITS:
            raise InputError("fit", f"{fit!r} is not one of {', '.join(FITS)}")
        if len(roi_shape) != ndim or len(roi_begin) != ndim:
            raise InputError(
                "roi", f"needs {ndim} values per offset and shape, one per spatial axis"
            )
        if any(s <= 0 for s in roi_shape):
            raise InputError("roi.shape", f"{tuple(roi_shape)} must be positive on every axis")
        if block_shape is None:
            block_shape = default_block_shape(write_unit, roi_shape, sharded)
        block_shape = tuple(int(b) for b in block_shape)
        if len(block_shape) != ndim:
            raise InputError(
                "block_shape", f"{block_shape} has {len(block_shape)} values; expected {ndim}"
            )
        if any(b <= 0 for b in block_shape):
            raise InputError("block_shape", f"{block_shape} must be positive on every axis")
        align = tuple(int(a) for a in (align or write_unit))
        step = tuple(math.lcm(int(u), a) for u, a in zip(write_unit, align, strict=True))
        if any(b % u for b, u in zip(block_shape, write_unit, strict=True)):
            raise InputError(
                "block_shape",
                f"{block_shape} is not a multiple of the {unit_name} {tuple(write_unit)}; "
                "blocks that split a chunk would race on it; use --block-shape "
                + _listed(_aligned(block_shape, step, roi_begin, roi_shape)),
            )
        if partitions < 1:
            raise InputError("partitions", f"{partitions} must be at least 1")
        if any(b % a for b, a in zip(block_shape, align, strict=True)):
            raise InputError(
                "block_shape",
                f"{block_shape} is not a multiple of the grid {align} it starts on; use "
                f"--block-shape {_listed(_aligned(block_shape, step, roi_begin, roi_shape))}",
            )
        roi_end = tuple(b + s for b, s in zip(roi_begin, roi_shape, strict=True))
        if fit == "valid":
            misaligned = [b % a for b, a in zip(roi_begin, align, strict=True)]
            if any(misaligned):
                raise InputError(
                    "roi.offset",
                    f"voxel {tuple(roi_begin)} is not on the {unit_name} grid {align}, "
                    "which fit=valid needs; use fit=shrink or an aligned offset",
                )
            origin = tuple(roi_begin)
            grid = tuple(s // b for s, b in zip(roi_shape, block_shape, strict=True))
            if 0 in grid:
                smaller = tuple(
                    min(b, r // s * s) for b, r, s in zip(block_shape, roi_shape, step, strict=True)
                )
                raise InputError(
                    "block_shape",
                    f"{block_shape} is larger than the roi {tuple(roi_shape)} on some axis, so "
                    "fit=valid leaves no block; use fit=shrink or "
                    + (
                        f"--block-shape {_listed(smaller)}"
                        if all(smaller)
                        else f"a larger roi: a block holds at least {step} voxels"
                    ),
                )
        else:
            origin = tuple(b - b % a for b, a in zip(roi_begin, align, strict=True))
            grid = tuple(
                math.ceil((e - o) / b) for e, o, b in zip(roi_end, origin, block_shape, strict=True)
            )
        total = math.prod(grid)
        ident = dict(identity or {})
        ident.update(
            roi_begin=list(roi_begin), roi_shape=list(roi_shape), block=list(block_shape), fit=fit
        )
        return cls(
            roi_begin=tuple(int(v) for v in roi_begin),
            roi_shape=tuple(int(v) for v in roi_shape),
            block_shape=block_shape,
            grid_origin=origin,
            grid_shape=grid,
            fit=fit,
            partitions=min(partitions, total),
            fingerprint=fingerprint(ident),
        )

    @property
    def total_blocks(self) -> int:
        return math.prod(self.grid_shape)

    @property
    def roi_end(self) -> tuple[int, ...]:
        return tuple(b + s for b, s in zip(self.roi_begin, self.roi_shape, strict=True))

    def block_coords(self, block_id: int) -> tuple[int, ...]:
        if not 0 <= block_id < self.total_blocks:
            raise IndexError(f"block {block_id} outside 0..{self.total_blocks - 1}")
        coords = []
        for n in reversed(self.grid_shape):
            block_id, c = divmod(block_id, n)
            coords.append(c)
        return tuple(reversed(coords))

    def block_box(self, block_id: int) -> Box:
        """[begin, end) of a block in voxel indices, clipped to the roi."""
        coords = self.block_coords(block_id)
        begin, end = [], []
        for c, o, b, rb, re in zip(
            coords, self.grid_origin, self.block_shape, self.roi_begin, self.roi_end, strict=True
        ):
            lo = o + c * b
            begin.append(max(lo, rb))
            end.append(min(lo + b, re))
        return tuple(begin), tuple(end)

    def run_boxes(self, first: int, last: int) -> list[Box]:
        """The voxel boxes (clipped to the roi) that blocks `first`..`last` cover: a run of
        block ids in C order is at most 2 x dims - 1 boxes, however long it is."""
        boxes = []
        for lo, hi in grid_boxes(first, last, self.grid_shape):
            begin, end = [], []
            for a, b, o, size, rb, re in zip(
                lo, hi, self.grid_origin, self.block_shape, self.roi_begin, self.roi_end,
                strict=True,
            ):  # fmt: skip
                begin.append(max(o + a * size, rb))
                end.append(min(o + b * size, re))
            boxes.append((tuple(begin), tuple(end)))
        return boxes

    def partition_range(self, partition: int, partitions: int | None = None) -> range:
        """Block ids of partition `partition` of `partitions` (the plan's own count by
        default)."""
        k = self.partitions if partitions is None else partitions
        if not 0 <= partition < k:
            raise InputError("partition", f"{partition} is outside 0..{k - 1}")
        return partition_range(partition, k, self.total_blocks)

    @property
    def voxels(self) -> int:
        """Voxels the plan processes (per channel)."""
        if self.fit == "shrink":
            return math.prod(self.roi_shape)
        return self.total_blocks * math.prod(self.block_shape)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_blocks"] = self.total_blocks
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        fields = cls.__dataclass_fields__
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
        )


def partition_range(partition: int, partitions: int, total_blocks: int) -> range:
    """Block ids of partition `partition` of `partitions` over `total_blocks` blocks: as even
    as whole blocks allow, contiguous, in order."""
    return range(
        partition * total_blocks // partitions, (partition + 1) * total_blocks // partitions
    )


def grid_boxes(first: int, last: int, shape: Sequence[int]) -> list[Box]:
    """Boxes of grid coordinates ([lo, hi)) that ids `first`..`last` (inclusive, C order)
    cover: a partial first slab, whole slabs, a partial last slab, recursively."""
    if first > last:
        return []
    if len(shape) == 1:
        return [((first,), (last + 1,))]
    inner = math.prod(shape[1:])
    a, a_rest = divmod(first, inner)
    b, b_rest = divmod(last, inner)

    def within(slab: int, lo: int, hi: int) -> list[Box]:
        return [((slab, *x), (slab + 1, *y)) for x, y in grid_boxes(lo, hi, shape[1:])]

    if a == b:
        return within(a, a_rest, b_rest)
    head = within(a, a_rest, inner - 1) if a_rest else []
    tail = within(b, 0, b_rest) if b_rest != inner - 1 else []
    whole_from, whole_to = a + bool(a_rest), b - (b_rest != inner - 1)
    middle = []
    if whole_from <= whole_to:
        middle = [((whole_from, *(0,) * (len(shape) - 1)), (whole_to + 1, *shape[1:]))]
    return head + middle + tail
