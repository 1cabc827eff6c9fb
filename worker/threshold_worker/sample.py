"""Synthetic prediction volumes (smooth blobs in [0, 1]) and a PNG preview of results.

For the demo, the tests and the benchmarks: volumes of any size are generated slab by
slab, so memory stays bounded by one slab.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr
from upath import UPath

from .metadata import AxisMetadata
from .paths import as_upath
from .storage import open_store


def _smoothing_matrix(n: int, period: float) -> np.ndarray:
    """Rows of Gaussian weights that turn a coarse noise grid into a smooth axis."""
    coarse = max(2, int(np.ceil(n / period)) + 2)
    pos = np.arange(n) / period + 1.0
    w = np.exp(-0.5 * ((pos[:, None] - np.arange(coarse)[None, :]) / 0.7) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def make_sample(
    container: UPath | str,
    dataset: str = "raw",
    shape: Sequence[int] = (256, 256, 256),
    chunks: Sequence[int] = (64, 64, 64),
    voxel_size: Sequence[int] = (8, 4, 4),
    offset: Sequence[int] | None = None,
    dtype: str = "float32",
    zarr_format: int = 3,
    blob_size: float = 12.0,
    noise: float = 0.02,
    seed: int = 0,
    overwrite: bool = True,
) -> zarr.Array:
    """A 3-d blob volume with funlib.persistence metadata; values in [0, 1] for floats,
    scaled to the type's range for integers."""
    if len(shape) != 3:
        raise ValueError(f"shape: {tuple(shape)} must have 3 values (z, y, x)")
    rng = np.random.default_rng(seed)
    # Anisotropic voxels: blobs are round in world units, so shorter in voxels along z.
    vs = np.asarray(voxel_size, dtype=float)
    periods = blob_size * vs.min() / vs
    mats = [_smoothing_matrix(n, p) for n, p in zip(shape, periods, strict=True)]
    coarse = rng.standard_normal([m.shape[1] for m in mats]).astype(np.float32)
    meta = AxisMetadata(
        axis_names=("z", "y", "x"),
        types=("space",) * 3,
        voxel_size=tuple(int(v) for v in voxel_size),
        offset=tuple(int(v) for v in (offset or (0, 0, 0))),
        units=("nm",) * 3,
    )
    store = open_store(as_upath(container))
    array = zarr.create_array(
        store,
        name=dataset,
        shape=tuple(shape),
        chunks=tuple(chunks),
        dtype=dtype,
        zarr_format=zarr_format,
        attributes=meta.attributes(),
        overwrite=overwrite,
        **({"dimension_names": list(meta.axis_names)} if zarr_format == 3 else {}),
    )
    yx = np.einsum("ya,xb,zab->zyx", mats[1], mats[2], coarse, optimize=True)
    scale = 1.0 / (3.0 * coarse.std() * np.sqrt((mats[0] ** 2).sum(1).mean()) + 1e-6)
    slab = chunks[0]
    for z0 in range(0, shape[0], slab):
        z1 = min(z0 + slab, shape[0])
        block = np.tensordot(mats[0][z0:z1], yx, axes=(1, 0))
        block = 1.0 / (1.0 + np.exp(-(block * scale * 8.0 - 1.5)))  # soft, mostly background
        if noise:
            block += rng.normal(0.0, noise, block.shape).astype(np.float32)
        block = np.clip(block, 0.0, 1.0)
        if np.dtype(dtype).kind in "iu":
            block = block * np.iinfo(dtype).max
        array[z0:z1] = block.astype(dtype)
    return array


def _slice(array: zarr.Array, z: int) -> np.ndarray:
    """One z slice, first channel."""
    plane = np.asarray(array[..., z, :, :])
    while plane.ndim > 2:
        plane = plane[0]
    return plane


def preview(
    input_array: zarr.Array,
    mask_array: zarr.Array,
    path: Path | str,
    z: int | None = None,
    min_width: int = 768,
    level: zarr.Array | None = None,
    factors: Sequence[int] = (1, 1, 1),
) -> Path:
    """Write a PNG of one z slice: input (grey) and mask (white on black) side by side, and
    a pyramid level of the mask (`level`, `factors` s0 voxels per level voxel along z, y, x)
    blown up to the same size, so that what the level keeps is seen against s0."""
    from PIL import Image

    z = input_array.shape[-3] // 2 if z is None else z
    raw = _slice(input_array, z).astype(np.float64)
    lo, hi = np.nanmin(raw), np.nanmax(raw)
    grey = ((raw - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
    gap = np.full((grey.shape[0], 8), 128, dtype=np.uint8)
    panels = [grey, gap, (_slice(mask_array, z) > 0).astype(np.uint8) * 255]
    if level is not None:
        fz, fy, fx = factors[-3:]
        coarse = (_slice(level, z // fz) > 0).astype(np.uint8) * 255
        big = np.repeat(np.repeat(coarse, fy, axis=0), fx, axis=1)[: grey.shape[0], : grey.shape[1]]
        panels += [gap, big]
    img = Image.fromarray(np.concatenate(panels, axis=1), mode="L")
    if img.width < min_width:
        factor = int(np.ceil(min_width / img.width))
        img = img.resize((img.width * factor, img.height * factor), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
