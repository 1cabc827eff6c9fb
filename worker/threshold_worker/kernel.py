"""The per-block work: read, compare, write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import zarr

from .errors import CODEC_ERRORS, DamagedInput

if TYPE_CHECKING:
    from .pyramid import LevelWriter


def threshold(data: np.ndarray, value: float, out: np.ndarray | None = None) -> np.ndarray:
    """`data > value` as uint8 0/1 (NaN gives 0), DaCapo's semantics; every path of the
    worker thresholds through here. With `out` (uint8, any strides) it writes in place.

    As numpy (and so DaCapo) does, the threshold is compared in the input's precision: on
    float32, 0.3 is float32(0.3). A threshold beyond the type's range, which would round
    to infinity there, is compared as what it is: only +inf exceeds 1e300."""
    value = _in_range(data.dtype, value)
    if out is None:
        return np.greater(data, value).view(np.uint8)
    np.greater(data, value, out=out.view(bool))
    return out


def _in_range(dtype: np.dtype, value: float) -> float:
    """The type's largest finite value for a threshold above it, -inf for one below its
    smallest: the same comparison (only +inf exceeds the one; all but -inf and NaN the
    other), without rounding the threshold to an infinity."""
    if dtype.kind != "f" or not np.isfinite(value):
        return value
    big = float(np.finfo(dtype).max)
    if value >= big:
        return big  # x > value only for +inf, and x > max is true for +inf alone
    if value < -big:
        return -np.inf
    return value


def threshold_block(
    source: zarr.Array,
    targets: Sequence[zarr.Array],
    selection: tuple[slice, ...],
    values: Sequence[float],
    levels: Sequence[LevelWriter | None] = (),
) -> list[int]:
    """Threshold one block through zarr-python, read once, into each target with its
    value, and its pyramid levels (`levels`, one per target or none); returns the
    foreground voxels written to each."""
    try:
        data = source[selection]
    except CODEC_ERRORS as e:  # a damaged chunk
        region = ", ".join(f"{s.start}:{s.stop}" for s in selection)
        raise DamagedInput(f"a chunk of {source.store_path} in [{region}]", e) from None
    foreground = []
    for i, (target, value) in enumerate(zip(targets, values, strict=True)):
        mask = threshold(data, value)
        target[selection] = mask
        if levels and (writer := levels[i]) is not None:
            writer.write(selection, mask)
        foreground.append(int(np.count_nonzero(mask)))
    return foreground
