"""`ZarrArray`, DaCapo's array wrapper, on zarr-python 3 with world-unit ROIs.

Reads zarr v2 and v3 on any store `storage.open_store` understands. Unlike DaCapo HEAD,
arrays open with mode `a` by default, so outputs are writable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.errors
from funlib.geometry import Coordinate, Roi
from upath import UPath

from .errors import InputError
from .metadata import AxisMetadata, read_metadata
from .ome import array_geometry
from .paths import as_upath, is_local
from .storage import open_store

logger = logging.getLogger(__name__)


@dataclass
class ZarrArrayConfig:
    """The subset of DaCapo's `ZarrArrayConfig` that `ZarrArray` reads."""

    name: str
    file_name: UPath | Path | str
    dataset: str
    mode: str = "a"
    axes: list[str] | None = None
    snap_to_grid: Coordinate | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)


def open_zarr(
    container: UPath, dataset: str, mode: str = "r", field_prefix: str = "input"
) -> zarr.Array:
    """Open an existing array, turning zarr's exceptions into one-line `InputError`s."""
    # Opening never creates: "a" (writable) opens an existing array as "r+".
    mode = "r+" if mode in ("a", "w-") else mode
    if is_local(container) and not os.path.isdir(container.path):  # a writable store would mkdir it
        raise InputError(f"{field_prefix}_container", f"{container} does not exist")
    try:
        store = open_store(container, read_only=mode == "r")
        return zarr.open_array(store, path=dataset, mode=mode)
    except FileNotFoundError:
        if not _exists(container):
            raise InputError(f"{field_prefix}_container", f"{container} does not exist") from None
        raise InputError(
            f"{field_prefix}_dataset", f"no array '{dataset}' in container {container}"
        ) from None
    except zarr.errors.ArrayNotFoundError:
        raise InputError(
            f"{field_prefix}_dataset", f"no array '{dataset}' in container {container}"
        ) from None
    except zarr.errors.NodeTypeValidationError:
        raise InputError(
            f"{field_prefix}_dataset",
            f"'{dataset}' in {container} is a group, not an array; name one of its arrays",
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(
            f"{field_prefix}_dataset",
            f"'{dataset}' in {container} is not a readable zarr array: {e}",
        ) from None


def _exists(container: UPath) -> bool:
    try:
        return container.exists()
    except Exception:  # an unreachable object store: report the path as missing
        return False


def write_unit(array: zarr.Array) -> tuple[int, ...]:
    """The smallest region that can be written without touching a neighbour: a shard
    for sharded arrays, else a chunk."""
    return tuple(array.shards or array.chunks)


class ZarrArray:
    """A zarr array addressed in world units (`funlib.geometry.Roi`)."""

    def __init__(self, array_config: ZarrArrayConfig) -> None:
        self.name = array_config.name
        self.file_name = as_upath(array_config.file_name)
        self.dataset = array_config.dataset
        self._axes = list(array_config.axes) if array_config.axes else None
        self.snap_to_grid = array_config.snap_to_grid
        self._mode = array_config.mode

    def __str__(self) -> str:
        return f"ZarrArray({self.file_name}, {self.dataset})"

    def __repr__(self) -> str:
        return (
            f"ZarrArray(name={self.name!r}, file_name={str(self.file_name)!r}, "
            f"dataset={self.dataset!r})"
        )

    @property
    def mode(self) -> str:
        return self._mode

    @cached_property
    def data(self) -> zarr.Array:
        return open_zarr(self.file_name, self.dataset, self._mode)

    @property
    def attrs(self) -> dict[str, Any]:
        return self.data.attrs.asdict()

    @cached_property
    def _metadata(self) -> AxisMetadata:
        where = f"{self.file_name}/{self.dataset}"
        if self._axes is None:
            return array_geometry(self.data, where)
        attrs = {**self.data.attrs.asdict(), "axis_names": self._axes}  # the caller's word
        attrs.pop("types", None)
        return read_metadata(attrs, self.data.ndim, where)

    @property
    def axes(self) -> list[str]:
        return list(self._metadata.axis_names)

    @property
    def dims(self) -> int:
        """Number of spatial dimensions."""
        return len(self._metadata.spatial_indices)

    @property
    def voxel_size(self) -> Coordinate:
        return self._metadata.voxel_size

    @property
    def roi(self) -> Roi:
        roi = self._metadata.roi(self.data.shape)
        if self.snap_to_grid is not None:
            roi = roi.snap_to_grid(self.snap_to_grid, mode="shrink")
        return roi

    @property
    def writable(self) -> bool:
        return self._mode != "r"

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def num_channels(self) -> int | None:
        channels = self._metadata.channel_indices
        return int(np.prod([self.data.shape[i] for i in channels])) if channels else None

    @property
    def spatial_axes(self) -> list[str]:
        return self._metadata.spatial_axes

    def _slices(self, roi: Roi) -> tuple[slice, ...]:
        return roi_to_selection(self._metadata, self.data.shape, roi, str(self))

    def __getitem__(self, roi: Roi) -> np.ndarray:
        return self.data[self._slices(roi)]

    def __setitem__(self, roi: Roi, value: np.ndarray | float | int) -> None:
        if not self.writable:
            raise PermissionError(f"{self} was opened read-only (mode 'r')")
        self.data[self._slices(roi)] = value

    @classmethod
    def create_from_array_identifier(
        cls,
        array_identifier: Any,
        axes: Sequence[str],
        roi: Roi,
        num_channels: int | None,
        voxel_size: Coordinate,
        dtype: Any,
        mode: str = "a",
        write_size: Coordinate | None = None,
        name: str | None = None,
        overwrite: bool = False,
    ) -> ZarrArray:
        """Create (or, when it already matches, reuse) an array for `roi`.

        `axes` name the spatial axes, optionally preceded by a channel axis (`c` or
        `c^`) that `num_channels` sizes. `write_size` (world units) sets the chunk shape.
        """
        voxel_size = Coordinate(voxel_size)
        axes = list(axes)
        spatial = [a for a in axes if not a.endswith("^") and a not in ("c", "channel")]
        if len(spatial) != roi.dims or voxel_size.dims != roi.dims:
            raise InputError("axes", f"{axes} do not match the {roi.dims}-d roi {roi}")
        if not (roi.shape % voxel_size == Coordinate((0,) * roi.dims)):
            raise InputError(
                "roi", f"shape {roi.shape} is not a multiple of voxel size {voxel_size}"
            )
        shape = list(roi.shape / voxel_size)
        chunks = (
            list(write_size / voxel_size) if write_size is not None else [min(s, 64) for s in shape]
        )
        names = spatial
        types = ["space"] * len(spatial)
        if num_channels is not None:
            shape.insert(0, num_channels)
            chunks.insert(0, num_channels)
            names = ["c^", *spatial]
            types = ["channel", *types]
        meta = AxisMetadata(
            axis_names=tuple(names),
            types=tuple(types),
            voxel_size=voxel_size,
            offset=Coordinate(roi.offset),
            units=("nm",) * roi.dims,
        )
        container = as_upath(array_identifier.container)
        dataset = array_identifier.dataset
        store = open_store(container)
        try:
            existing = zarr.open_array(store, path=dataset, mode="r")
        except (
            FileNotFoundError,
            zarr.errors.ArrayNotFoundError,
            zarr.errors.NodeTypeValidationError,
        ):
            existing = None
        if existing is not None and not overwrite:
            if tuple(existing.shape) != tuple(shape) or existing.dtype != np.dtype(dtype):
                raise InputError(
                    f"{container}/{dataset}",
                    f"exists with shape {existing.shape} and dtype {existing.dtype}; expected "
                    f"{tuple(shape)} and {np.dtype(dtype)} (pass overwrite=True to replace it)",
                )
        else:
            zarr.create_array(
                store,
                name=dataset,
                shape=tuple(shape),
                chunks=tuple(chunks),
                dtype=dtype,
                fill_value=0,
                attributes=meta.attributes(),
                dimension_names=list(names),
                overwrite=overwrite,
            )
        config = ZarrArrayConfig(
            name=name or dataset, file_name=container, dataset=dataset, mode=mode
        )
        return cls(config)

    @classmethod
    def open_from_array_identifier(cls, array_identifier: Any, name: str = "") -> ZarrArray:
        config = ZarrArrayConfig(
            name=name or array_identifier.dataset,
            file_name=array_identifier.container,
            dataset=array_identifier.dataset,
        )
        array = cls(config)
        array.data  # noqa: B018  -- fail here, not at first use, when it does not exist
        return array

    def add_metadata(self, metadata: dict[str, Any]) -> None:
        self.data.attrs.update(metadata)

    # -- neuroglancer -----------------------------------------------------------------

    def _daisy_array(self) -> Any:
        """The same data as a `funlib.persistence.Array`, as DaCapo's daisy tasks use."""
        try:
            from funlib.persistence import Array
        except ImportError as e:
            raise ImportError(
                "_daisy_array needs funlib.persistence: pip install funlib.persistence"
            ) from e
        m = self._metadata
        return Array(
            self.data, m.offset, m.voxel_size, list(m.axis_names), list(m.units), list(m.types)
        )

    def _can_neuroglance(self) -> bool:
        return self.dims in (2, 3)

    def _output_dimensions(self) -> dict[str, list[Any]]:
        """Axis name -> [scale, unit], neuroglancer's `CoordinateSpace` in JSON form."""
        m = self._metadata
        dims: dict[str, list[Any]] = {}
        spatial = iter(zip(m.voxel_size, m.units, strict=True))
        for name, kind in zip(m.axis_names, m.types, strict=True):
            if kind == "channel":
                dims[name] = [1, ""]
            else:
                size, unit = next(spatial)
                dims[name] = [size, unit or "nm"]
        return dims

    def _transform_matrix(self) -> list[list[float]]:
        """Rows of neuroglancer's affine (ndim x ndim+1): voxel to world units."""
        m = self._metadata
        ndim = len(m.axis_names)
        spatial = {axis: k for k, axis in enumerate(m.spatial_indices)}
        rows = []
        for i in range(ndim):
            row = [0.0] * (ndim + 1)
            if i in spatial:
                row[i] = float(m.voxel_size[spatial[i]])
                row[ndim] = float(m.offset[spatial[i]])
            else:
                row[i] = 1.0
            rows.append(row)
        return rows

    def _source_name(self) -> str:
        return self.name or self.dataset

    def _neuroglancer_source(self) -> Any:
        ng = _import_neuroglancer()
        m = self._metadata
        space = ng.CoordinateSpace(
            names=list(m.axis_names),
            units=[unit for _, (_, unit) in self._output_dimensions().items()],
            scales=[scale for _, (scale, _) in self._output_dimensions().items()],
        )
        offset = [0] * len(m.axis_names)
        for k, i in enumerate(m.spatial_indices):
            offset[i] = m.offset[k] // m.voxel_size[k]
        return ng.LocalVolume(data=self.data, dimensions=space, voxel_offset=offset)

    def _neuroglancer_layer(self) -> tuple[Any, dict[str, Any]]:
        ng = _import_neuroglancer()
        source = self._neuroglancer_source()
        if np.issubdtype(self.dtype, np.integer) and self.dtype.itemsize <= 8:
            return ng.SegmentationLayer(source=source), {"visible": True}
        return ng.ImageLayer(source=source), {"visible": True}


def _import_neuroglancer() -> Any:
    try:
        import neuroglancer
    except ImportError as e:
        raise ImportError(
            "neuroglancer layers need the neuroglancer package: pip install neuroglancer"
        ) from e
    return neuroglancer


def roi_to_selection(
    meta: AxisMetadata, shape: Sequence[int], roi: Roi, where: str
) -> tuple[slice, ...]:
    """Index slices (channels whole) for a world-unit ROI that lies on the voxel grid."""
    voxel = meta.voxel_size
    if roi.dims != voxel.dims:
        raise InputError(
            "roi", f"{roi} has {roi.dims} dimensions; {where} has {voxel.dims} spatial"
        )
    rel = roi.offset - meta.offset
    if rel % voxel != Coordinate((0,) * voxel.dims) or roi.shape % voxel != Coordinate(
        (0,) * voxel.dims
    ):
        raise InputError("roi", f"{roi} is not on the voxel grid of {where} (voxel size {voxel})")
    if not meta.roi(shape).contains(roi):
        raise InputError("roi", f"{roi} lies outside {where}, whose roi is {meta.roi(shape)}")
    begin = rel / voxel
    end = begin + roi.shape / voxel
    slices: list[slice] = [slice(None)] * len(shape)
    for k, i in enumerate(meta.spatial_indices):
        slices[i] = slice(begin[k], end[k])
    return tuple(slices)
