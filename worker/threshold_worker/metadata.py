"""Spatial metadata of an array: which axes are channels, voxel size, offset, units.

Read from the parent image's OME-Zarr `multiscales` when the array is one of its levels,
else from the attributes that funlib.persistence writes (`voxel_size`, `offset`,
`axis_names`, `units`, `types`), falling back to the older DaCapo keys (`resolution`,
`axes`): `geometry` is that order. Written back in funlib.persistence's format so that DaCapo, funlib and
neuroglancer tooling open our outputs with the same geometry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from funlib.geometry import Coordinate, Roi

from .errors import InputError

logger = logging.getLogger(__name__)

CHANNEL_NAMES = {"c", "c^", "ch", "channel", "channels"}


@dataclass(frozen=True)
class AxisMetadata:
    """Geometry of an array: one entry per array axis in `axis_names` and `types`,
    one per spatial axis in `voxel_size`, `offset` and `units`."""

    axis_names: tuple[str, ...]
    types: tuple[str, ...]
    voxel_size: Coordinate
    offset: Coordinate
    units: tuple[str, ...]

    @property
    def spatial_indices(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.types) if t != "channel")

    @property
    def channel_indices(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.types) if t == "channel")

    @property
    def spatial_axes(self) -> list[str]:
        return [self.axis_names[i] for i in self.spatial_indices]

    def spatial_shape(self, shape: Sequence[int]) -> Coordinate:
        return Coordinate(shape[i] for i in self.spatial_indices)

    def roi(self, shape: Sequence[int]) -> Roi:
        """The array's extent in world units."""
        return Roi(self.offset, self.spatial_shape(shape) * self.voxel_size)

    def attributes(self) -> dict[str, Any]:
        """The attributes funlib.persistence reads."""
        return {
            "axis_names": list(self.axis_names),
            "types": list(self.types),
            "voxel_size": list(self.voxel_size),
            "offset": list(self.offset),
            "units": list(self.units),
        }


def _is_channel_name(name: str) -> bool:
    return name.endswith("^") or name.lower() in CHANNEL_NAMES


def _int_list(value: Any, key: str, where: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, (int, float)) and float(v).is_integer() for v in value
    ):
        raise InputError(f"{where} attribute '{key}'", f"{value!r} is not a list of integers")
    return [int(v) for v in value]


def read_metadata(attrs: Mapping[str, Any], ndim: int, where: str) -> AxisMetadata:
    """Derive geometry from an array's attributes; `where` names the array in errors."""
    names = attrs.get("axis_names", attrs.get("axes"))
    types = attrs.get("types")
    voxel = attrs.get("voxel_size", attrs.get("resolution"))
    offset = attrs.get("offset")
    units = attrs.get("units")

    if names is not None:
        if not isinstance(names, (list, tuple)) or len(names) != ndim:
            raise InputError(
                f"{where} attribute 'axis_names'",
                f"{names!r} does not name each of the array's {ndim} axes",
            )
        names = [str(n) for n in names]
    if types is not None:
        if not isinstance(types, (list, tuple)) or len(types) != ndim:
            raise InputError(
                f"{where} attribute 'types'", f"{types!r} does not type each of {ndim} axes"
            )
        types = ["channel" if t == "channel" else str(t) for t in types]
    elif names is not None:
        types = ["channel" if _is_channel_name(n) else "space" for n in names]
    else:
        spatial = len(voxel) if isinstance(voxel, (list, tuple)) else len(offset or []) or ndim
        if spatial > ndim:
            raise InputError(
                f"{where} attribute 'voxel_size'", f"has {spatial} entries for a {ndim}-d array"
            )
        types = ["channel"] * (ndim - spatial) + ["space"] * spatial

    n_spatial = sum(t != "channel" for t in types)
    if n_spatial == 0:
        raise InputError(where, "has no spatial axis; expected at least one non-channel axis")
    if names is None:
        spatial_names = ["z", "y", "x"] if n_spatial == 3 else [f"d{i}" for i in range(n_spatial)]
        it = iter(spatial_names)
        ci = iter(range(ndim))
        names = [f"c{next(ci)}^" if t == "channel" else next(it) for t in types]

    voxel_size = _int_list(voxel, "voxel_size", where) if voxel is not None else [1] * n_spatial
    offsets = _int_list(offset, "offset", where) if offset is not None else [0] * n_spatial
    for key, value in (("voxel_size", voxel_size), ("offset", offsets)):
        if len(value) != n_spatial:
            raise InputError(
                f"{where} attribute '{key}'",
                f"{value} has {len(value)} entries; expected one per spatial axis ({n_spatial})",
            )
    if any(v <= 0 for v in voxel_size):
        raise InputError(f"{where} attribute 'voxel_size'", f"{voxel_size} must be positive")
    if units is None:
        units = [""] * n_spatial
    elif isinstance(units, str):
        units = [units] * n_spatial
    elif len(units) != n_spatial:
        raise InputError(
            f"{where} attribute 'units'", f"{units!r} has no unit for each spatial axis"
        )
    return AxisMetadata(
        axis_names=tuple(names),
        types=tuple(types),
        voxel_size=Coordinate(voxel_size),
        offset=Coordinate(offsets),
        units=tuple(str(u) for u in units),
    )


#: funlib.persistence's keys and DaCapo's older ones: what an array's own attributes say.
ARRAY_KEYS = ("axis_names", "axes", "types", "voxel_size", "resolution", "offset", "units")


def geometry(
    attrs: Mapping[str, Any], ndim: int, where: str, ome: Mapping[str, Any] | None = None
) -> AxisMetadata:
    """An array's geometry, by one order of precedence:

    1. OME-Zarr: when the array is a level of an image (`ome`, what `ome.level_attributes`
       read from the parent group's `multiscales`), that metadata wins whole;
    2. funlib.persistence's attributes on the array (`axis_names`, `voxel_size`, `offset`,
       `units`, `types`);
    3. DaCapo's older keys (`axes`, `resolution`);
    4. defaults (voxel size 1, offset 0, channels first).

    OME-Zarr wins because it is the image's own description of its levels, the one every
    viewer and OME tool reads and keeps in step when levels are added or moved, while
    funlib attributes on one level are a per-array copy that such tools do not update. A
    disagreement is logged, naming both.
    """
    if ome is None:
        return read_metadata(attrs, ndim, where)
    meta = read_metadata(ome, ndim, f"{where} (OME-Zarr multiscales)")
    if any(k in attrs for k in ARRAY_KEYS):
        try:
            own = read_metadata(attrs, ndim, where)
        except InputError as e:
            logger.warning("%s: ignoring its own attributes (%s); OME-Zarr's win", where, e)
            return meta
        theirs = (own.voxel_size, own.offset)
        if theirs != (meta.voxel_size, meta.offset):
            logger.warning(
                "%s: its funlib attributes say voxel size %s, offset %s; the OME-Zarr image "
                "says %s, %s, which wins",
                where,
                tuple(own.voxel_size),
                tuple(own.offset),
                tuple(meta.voxel_size),
                tuple(meta.offset),
            )
    return meta
