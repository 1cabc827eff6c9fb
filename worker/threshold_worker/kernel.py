"""The per-block work: read, compare, write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import zarr

from .errors import DamagedInput

if TYPE_CHECKING:
    from .pyramid import LevelWriter


def threshold(data: np.ndarray, value: float, out: np.ndarray | None = None) -> np.ndarray:
    """`data > value` as uint8 0/1 (NaN gives 0), DaCapo's semantics; every path of the
    worker thresholds through here. With `out` (uint8, any strides) it writes in place."""
    if out is None:
        return np.greater(data, value).view(np.uint8)
    np.greater(data, value, out=out.view(bool))
    return out


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
    except (RuntimeError, ValueError, TypeError) as e:  # codecs' errors: a damaged chunk
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
