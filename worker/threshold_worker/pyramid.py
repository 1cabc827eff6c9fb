"""A multiscale pyramid of the mask, written block by block in the pass that thresholds.

Levels s1..sN of an OME-Zarr output (`--pyramid N`): level k downsamples s0 by F_k = f^k
on each spatial axis (f: `--pyramid-factors`, 2 by default, 1 on a time axis; channel axes
keep their size).
A level-k voxel j stands for the window of s0 voxels [j*F_k, (j+1)*F_k), cut at the
array's end, and is

- `any` (the default): 1 where any voxel of its window is 1, so thin structures survive;
- `mode`: 1 where more than half of its window's voxels are 1 (a tie is 0, the smaller
  value, as scipy.stats.mode breaks ties).

Levels are made from s0 as this job leaves it, where s0 counts as 0 (its fill value)
outside the ROI. Every level is counted from s0, not from the level above, so `mode` is
the mode of the whole window.

No second pass over the input: every level chunk lies inside one block, so the block that
writes s0 there also writes each level chunk whole, once, before its done-marker. For
that, level k's chunk shape is gcd(2 x s0's chunk shape, block / F_k), per axis (64^3
chunks, 256^3 blocks, factor 2: s1 128^3, s2 64^3, s3 32^3, s4 16^3: one chunk of each
level per block), the block shape is a multiple of F_N (a given `--block-shape` that is
not is refused) and the block grid starts on a multiple of every level chunk's extent in
s0 voxels. The default block with a pyramid is twice the usual one per axis (then a
multiple of F_N): chunk files cost more than their bytes, and larger blocks hold fewer,
larger level chunks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
import zarr.errors

from .errors import InputError
from .ome import level_path
from .plan import bounds, default_block_shape, round_up

DEFAULT_FACTOR = 2
#: Level chunks may be this much larger than s0's per axis: a chunk file costs more than
#: its bytes on most file systems and object stores, and a mask chunk compresses well.
CHUNK_GROWTH = 2
#: The default block with a pyramid, per axis, against the usual one (plan.py): larger
#: blocks hold larger level chunks, so fewer of them.
BLOCK_GROWTH = 2
Selection = tuple[slice, ...]


@dataclass(frozen=True)
class Pyramid:
    """The levels' geometry: shapes and chunks in array axes (channels included)."""

    levels: int
    #: From one level to the next, per spatial axis.
    factors: tuple[int, ...]
    mode: str
    #: The array axes that are spatial, in order.
    spatial: tuple[int, ...]
    #: Levels 1..N.
    shapes: tuple[tuple[int, ...], ...]
    chunks: tuple[tuple[int, ...], ...]

    def scale(self, level: int) -> tuple[int, ...]:
        """F_level per spatial axis: s0 voxels per level voxel."""
        return tuple(f**level for f in self.factors)

    def array_scale(self, level: int) -> tuple[int, ...]:
        """F_level per array axis (1 on channel axes)."""
        scale = [1] * len(self.shapes[0])
        for i, f in zip(self.spatial, self.scale(level), strict=True):
            scale[i] = f
        return tuple(scale)

    @functools.cached_property
    def level_dtype(self) -> np.dtype:
        """What a level is made in: 0/1 for `any`; for `mode`, window counts of ones, in
        an integer type that holds s_N's windows."""
        if self.mode != "mode":
            return np.dtype(np.uint8)
        return np.min_scalar_type(math.prod(self.scale(self.levels)))

    @property
    def names(self) -> list[str]:
        return [f"s{k}" for k in range(1, self.levels + 1)]

    @property
    def align(self) -> tuple[int, ...]:
        """The grid (s0 voxels, spatial axes) every level chunk's extent divides."""
        extents = [
            [self.chunks[k - 1][i] * f for i, f in zip(self.spatial, self.scale(k), strict=True)]
            for k in range(1, self.levels + 1)
        ]
        return tuple(math.lcm(*axis) for axis in zip(*extents, strict=True))

    def identity(self) -> dict[str, Any]:
        """What the plan fingerprint covers: a changed pyramid trusts no old marker."""
        return {
            "levels": self.levels,
            "factors": list(self.factors),
            "mode": self.mode,
            "chunks": [list(c) for c in self.chunks],
        }


def plan_pyramid(
    levels: int,
    factors: Sequence[int] | None,
    mode: str,
    shape: Sequence[int],
    spatial: Sequence[int],
    chunks: Sequence[int],
    unit: Sequence[int],
    roi_shape: Sequence[int],
    block_shape: Sequence[int] | None,
    sharded: bool,
    axes: Sequence[str],
    timed: Sequence[bool] | None = None,
) -> tuple[Pyramid, tuple[int, ...]]:
    """The pyramid and the block shape that carries it (`chunks` in array axes, `unit`,
    `roi_shape`, `block_shape`, `timed` (which axes are time) in spatial ones);
    `InputError` naming --block-shape where a block cannot hold whole chunks of every
    level. A time axis is not downsampled unless `factors` says so."""
    n = len(spatial)
    timed = list(timed) if timed is not None else [False] * n
    f = tuple(factors) if factors is not None else tuple(1 if t else DEFAULT_FACTOR for t in timed)
    if len(f) != n:
        raise InputError(
            "pyramid_factors",
            f"{f} has {len(f)} values; the input has {n} spatial axes ({', '.join(axes)})",
        )
    deepest = tuple(x**levels for x in f)
    step = tuple(math.lcm(u, d) for u, d in zip(unit, deepest, strict=True))
    if block_shape is None:  # twice the usual: a quarter as many level chunk files
        usual = default_block_shape(unit, roi_shape, sharded)
        whole = round_up(roi_shape, unit)
        block = round_up(
            [min(BLOCK_GROWTH * b, w) for b, w in zip(usual, whole, strict=True)], step
        )
    else:
        block = tuple(block_shape)
        if len(block) != n:
            raise InputError("block_shape", f"{block} has {len(block)} values; expected {n}")
        if any(b % s for b, s in zip(block, step, strict=True)):
            grown = round_up(block, step)
            raise InputError(
                "block_shape",
                f"{block} is not a multiple of {step}, the output's write unit {tuple(unit)} "
                f"and level s{levels}'s factor {deepest}: a block must hold whole chunks of "
                f"every pyramid level; use --block-shape {','.join(map(str, grown))}",
            )
    spatial_chunks = [chunks[i] for i in spatial]
    shapes, level_chunks = [], []
    for k in range(1, levels + 1):
        level_shape, level_chunk = list(shape), list(chunks)
        for a, i in enumerate(spatial):
            scale = f[a] ** k
            level_shape[i] = -(-shape[i] // scale)
            level_chunk[i] = math.gcd(CHUNK_GROWTH * spatial_chunks[a], block[a] // scale)
        shapes.append(tuple(level_shape))
        level_chunks.append(tuple(level_chunk))
    pyramid = Pyramid(levels, f, mode, tuple(spatial), tuple(shapes), tuple(level_chunks))
    return pyramid, block


# -- downsampling -----------------------------------------------------------------------


def _reduce(
    a: np.ndarray, axis: int, f: int, op: Callable[..., Any], dtype: Any = None
) -> np.ndarray:
    """Combine each run of `f` along `axis` with `op` into `dtype` (the last run padded
    with 0)."""
    if f == 1:
        return a
    if a.shape[axis] % f:
        pad = [(0, 0)] * a.ndim
        pad[axis] = (0, f - a.shape[axis] % f)
        a = np.pad(a, pad)
    index: list[slice] = [slice(None)] * a.ndim

    def part(i: int) -> np.ndarray:
        index[axis] = slice(i, None, f)
        return a[tuple(index)]

    out = op(part(0), part(1), dtype=dtype or a.dtype)
    for i in range(2, f):
        op(out, part(i), out=out)
    return out


def _step(a: np.ndarray, pyramid: Pyramid) -> np.ndarray:
    """One level down: `any` ORs each window's 0/1 values, `mode` adds up its ones (0/1
    values at first, then counts) into an integer type that holds s_N's windows."""
    if pyramid.mode == "mode":
        dtype = pyramid.level_dtype
        for i, f in zip(pyramid.spatial, pyramid.factors, strict=True):
            a = _reduce(a, i, f, np.add, dtype)
        return a if a.dtype == dtype else a.astype(dtype)
    for i, f in zip(pyramid.spatial, pyramid.factors, strict=True):
        a = _reduce(a, i, f, np.bitwise_or)
    return a


def _window_sizes(begin: int, end: int, stop: int, scale: int) -> np.ndarray:
    """s0 voxels in each window j of [begin, end) that lie below `stop`."""
    j = np.arange(begin, end, dtype=np.int64)
    return np.minimum((j + 1) * scale, stop) - j * scale


def downsample(
    region: np.ndarray | None,
    pyramid: Pyramid,
    start: Sequence[int],
    stop: Sequence[int],
    level1: np.ndarray | None = None,
) -> Iterator[tuple[int, Selection, np.ndarray]]:
    """(level, selection in the level array, level data) of an s0 region [start, stop)
    (array axes; on spatial axes `start` is a multiple of F_N, `stop` one or the array's
    end), level after level; `level1`: the region's first step (`_step`), made already."""
    current = level1 if level1 is not None else _step(region, pyramid)  # type: ignore[arg-type]
    for k in range(1, pyramid.levels + 1):
        if k > 1:
            current = _step(current, pyramid)
        scale = pyramid.array_scale(k)
        begin = [a // s for a, s in zip(start, scale, strict=True)]
        end = [-(-b // s) for b, s in zip(stop, scale, strict=True)]
        selection = tuple(slice(a, b) for a, b in zip(begin, end, strict=True))
        if pyramid.mode != "mode":
            yield k, selection, current
            continue
        voxels = np.ones((1,) * current.ndim, dtype=np.int64)
        for i in pyramid.spatial:
            sizes = _window_sizes(begin[i], end[i], stop[i], scale[i])
            voxels = voxels * sizes.reshape([-1 if a == i else 1 for a in range(current.ndim)])
        yield k, selection, (current > voxels // 2).view(np.uint8)


@dataclass
class Partial:
    """A block's first level, gathered chunk by chunk (`LevelWriter.begin`)."""

    start: list[int]
    stop: list[int]
    level1: np.ndarray


class LevelWriter:
    """The levels of one output, written from each block's mask (`levels`, or `write`
    through zarr), or gathered chunk by chunk (`begin`, `add`, `finish`). A block's region
    is its whole cell of the block grid, cut at the array's end, with 0 where the ROI cuts
    the block."""

    def __init__(
        self,
        pyramid: Pyramid,
        arrays: Sequence[zarr.Array],
        shape: Sequence[int],
        grid_origin: Sequence[int],
        block_shape: Sequence[int],
    ) -> None:
        self.pyramid = pyramid
        self.arrays = list(arrays)
        self.shape = tuple(shape)
        self.grid_origin = tuple(grid_origin)
        self.block_shape = tuple(block_shape)

    def _region(self, selection: Selection) -> tuple[list[int], list[int], list[int], list[int]]:
        lo, hi = map(list, bounds(selection, self.shape))
        start, stop = list(lo), list(hi)
        for a, i in enumerate(self.pyramid.spatial):
            o, b = self.grid_origin[a], self.block_shape[a]
            start[i] = o + (lo[i] - o) // b * b
            stop[i] = min(start[i] + b, self.shape[i])
        return start, stop, lo, hi

    def levels(
        self, selection: Selection, mask: np.ndarray
    ) -> Iterator[tuple[zarr.Array, Selection, np.ndarray]]:
        for k, level_selection, data in self.level_data(selection, mask):
            yield self.arrays[k - 1], level_selection, data

    def level_data(
        self, selection: Selection, mask: np.ndarray
    ) -> Iterator[tuple[int, Selection, np.ndarray]]:
        """(level, selection in the level array, data) that the block at `selection`
        (with s0 `mask` there) writes: what `verify` compares each level with."""
        start, stop, lo, hi = self._region(selection)
        if start == lo and stop == hi:
            region = mask
        else:
            region = np.zeros([b - a for a, b in zip(start, stop, strict=True)], np.uint8)
            region[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))] = mask
        yield from downsample(region, self.pyramid, start, stop)

    def write(self, selection: Selection, mask: np.ndarray) -> None:
        """Through zarr-python (the fallback path, kernel.py)."""
        for array, level_selection, data in self.levels(selection, mask):
            array[level_selection] = data

    def stepwise(self, chunks: Sequence[int]) -> bool:
        """Whether chunks of this shape (array axes) hold whole windows of the first level,
        so that it can be made chunk by chunk."""
        pyramid = self.pyramid
        return all(
            chunks[i] % f == 0 for i, f in zip(pyramid.spatial, pyramid.factors, strict=True)
        )

    def begin(self, selection: Selection) -> Partial:
        start, stop, _, _ = self._region(selection)
        scale = self.pyramid.array_scale(1)
        shape = [-(-(b - a) // s) for a, b, s in zip(start, stop, scale, strict=True)]
        return Partial(start, stop, np.zeros(shape, self.pyramid.level_dtype))

    def add(self, partial: Partial, begin: Sequence[int], part: np.ndarray) -> None:
        """One chunk's mask (its in-array part, at `begin`, on the grid `stepwise` asks)."""
        reduced = _step(part, self.pyramid)
        scale = self.pyramid.array_scale(1)
        at = [(b - s) // f for b, s, f in zip(begin, partial.start, scale, strict=True)]
        partial.level1[tuple(slice(a, a + n) for a, n in zip(at, reduced.shape, strict=True))] = (
            reduced
        )

    def finish(self, partial: Partial) -> Iterator[tuple[zarr.Array, Selection, np.ndarray]]:
        levels = downsample(None, self.pyramid, partial.start, partial.stop, partial.level1)
        for k, level_selection, data in levels:
            yield self.arrays[k - 1], level_selection, data


# -- level arrays -----------------------------------------------------------------------


def create_levels(
    store: Any,
    dataset: str,
    pyramid: Pyramid,
    zarr_format: int,
    axis_names: Sequence[str],
    fresh: bool,
) -> None:
    """The level arrays of the image group `dataset`: made anew when `fresh`, else opened
    (and made where missing: a run stopped before it made them)."""
    for k, name in enumerate(pyramid.names):
        path = level_path(dataset, name)
        if not fresh:
            try:
                zarr.open_array(store, path=path, mode="r")
                continue
            except (FileNotFoundError, zarr.errors.ArrayNotFoundError):
                pass
        kwargs: dict[str, Any] = {}
        if zarr_format == 3:
            kwargs["dimension_names"] = list(axis_names)
        zarr.create_array(
            store,
            name=path,
            shape=pyramid.shapes[k],
            chunks=pyramid.chunks[k],
            dtype="uint8",
            fill_value=0,
            zarr_format=zarr_format,
            overwrite=True,
            **kwargs,
        )


def remove_nodes(store: Any, dataset: str, names: Sequence[str]) -> None:
    """Delete the named nodes of the image group (levels of an earlier job)."""
    if not names:
        return
    group = zarr.open_group(store, path=dataset, mode="r+")
    for name in names:
        del group[name]
