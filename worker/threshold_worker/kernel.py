"""The per-block work: read, compare, write."""

from __future__ import annotations

import numpy as np
import zarr


def threshold(data: np.ndarray, value: float) -> np.ndarray:
    """`data > value` as uint8 0/1 (NaN gives 0), DaCapo's semantics."""
    return np.greater(data, value).view(np.uint8)


def threshold_block(
    source: zarr.Array, target: zarr.Array, selection: tuple[slice, ...], value: float
) -> int:
    """Threshold one block; returns the number of foreground voxels written."""
    mask = threshold(source[selection], value)
    target[selection] = mask
    return int(np.count_nonzero(mask))
