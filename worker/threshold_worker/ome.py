"""OME-Zarr images: the geometry of an input level, and the image group of an output.

An OME-Zarr image is a group whose `multiscales` metadata (0.4: a group attribute, on zarr
v2; 0.5: under the `ome` attribute, on zarr v3) lists its levels (arrays named by path)
with each level's `coordinateTransformations` (a scale, then maybe a translation), and
optionally transformations shared by all levels, applied after the level's. A level's
world coordinate of voxel i is therefore `S * (s * i + t) + T` = `(S*s) * i + (S*t + T)`.

The worker addresses voxels in integer world units (`funlib.geometry`), so a level whose
scale or translation is not a whole number of its unit is re-expressed in a smaller SI
length unit in which it is (0.004 micrometer -> 4 nm; a half-voxel translation of a
downsampled level, 1.5 nm -> 1500 pm), a time in a smaller SI time unit (down to ns), and
an axis without a unit in 10^-k of its unnamed unit, the symbol `1e-k` (ome-zarr-py's
default s1: scale 2, translation 0.5 -> 20 and 5 of `1e-1`); an output's metadata turns
them back into the axis's own unit.

A time axis is an axis of its own, neither space nor channel: blocked like space (a
pointwise threshold does not care), kept whole in the output, never downsampled by a
pyramid unless `--pyramid-factors` says so.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import zarr
import zarr.errors
from zarr.abc.store import Store

from .errors import InputError
from .metadata import AxisMetadata, geometry
from .zarr_internals import run


class Levels(Protocol):
    """What the image's metadata needs of a pyramid (`pyramid.Pyramid`), named here so that
    ome, which pyramid uses for level paths, needs nothing of pyramid."""

    @property
    def levels(self) -> int: ...
    @property
    def factors(self) -> tuple[int, ...]: ...
    @property
    def mode(self) -> str: ...
    @property
    def names(self) -> list[str]: ...
    def array_scale(self, level: int) -> tuple[int, ...]: ...


#: The level an output image holds, named as ome-zarr-py and funlib.persistence name
#: pyramid levels (s0 full resolution, s1, ...), so a pyramid can be added beside it.
LEVEL = "s0"
#: The documents that make a folder a zarr node: v3, v2 array, v2 group.
NODE_DOCUMENTS = ("zarr.json", ".zarray", ".zgroup")
VERSIONS = {2: "0.4", 3: "0.5"}

#: OME-Zarr (UDUNITS-2) length units -> power of ten of a meter.
LENGTH_UNITS = {
    "kilometer": 3,
    "meter": 0,
    "decimeter": -1,
    "centimeter": -2,
    "millimeter": -3,
    "micrometer": -6,
    "nanometer": -9,
    "angstrom": -10,
    "picometer": -12,
    "femtometer": -15,
}
#: SI symbols (what funlib attributes and neuroglancer use) by power of ten.
SYMBOLS = {3: "km", 0: "m", -3: "mm", -6: "um", -9: "nm", -12: "pm", -15: "fm"}
SYMBOL_ALIASES = {"µm": -6, "μm": -6, "micron": -6, "A": -10, "Å": -10}
TIME_UNITS = {"second": "s", "millisecond": "ms", "microsecond": "us", "nanosecond": "ns"}
TIME_POWERS = {"second": 0, "millisecond": -3, "microsecond": -6, "nanosecond": -9}
TIME_SYMBOLS = {0: "s", -3: "ms", -6: "us", -9: "ns"}
#: An axis without a unit whose values are not whole is counted in 10^-k of that
#: (unnamed) unit, k up to this: as far down as lengths go (meter to femtometer).
UNITLESS_DIGITS = 15


def multiscales_of(attrs: Mapping[str, Any]) -> Any:
    """A group's `multiscales` list, wherever its version keeps it (None: not an image)."""
    ome = attrs.get("ome")
    if isinstance(ome, Mapping) and "multiscales" in ome:
        return ome["multiscales"]
    return attrs.get("multiscales")


def _parents(dataset: str) -> list[tuple[str, str]]:
    """(group path, level path relative to it), nearest group first."""
    parts = dataset.strip("/").split("/")
    return [("/".join(parts[:k]), "/".join(parts[k:])) for k in range(len(parts) - 1, -1, -1)]


def level_attributes(
    store: Store, dataset: str, ndim: int, label: str = ""
) -> dict[str, Any] | None:
    """The geometry the nearest image group above `dataset` gives it, as funlib
    attributes (`axis_names`, `types`, `voxel_size`, `offset`, `units`); None when no
    group above it has `multiscales`. Bad metadata is an `InputError` naming the
    attribute."""
    for group_path, level in _parents(dataset):
        try:
            group = zarr.open_group(store, path=group_path, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, KeyError):
            continue
        except zarr.errors.NodeTypeValidationError:
            continue
        multiscales = multiscales_of(group.attrs.asdict())
        if multiscales is None:
            continue
        where = f"{label + ': ' if label else ''}OME-Zarr group '{group_path or '/'}'"
        return _level(multiscales, level, ndim, where)
    return None


def _level(multiscales: Any, level: str, ndim: int, where: str) -> dict[str, Any]:
    if not isinstance(multiscales, list) or not multiscales:
        raise InputError(f"{where} attribute 'multiscales'", "is not a non-empty list")
    listed: list[str] = []
    for m, image in enumerate(multiscales):
        key = f"multiscales[{m}]"
        if not isinstance(image, Mapping) or not isinstance(image.get("datasets"), list):
            raise InputError(f"{where} attribute '{key}.datasets'", "is missing or not a list")
        for d, entry in enumerate(image["datasets"]):
            path = entry.get("path") if isinstance(entry, Mapping) else None
            listed.append(str(path))
            if isinstance(path, str) and path.strip("/") == level:
                return _geometry(image, entry, ndim, where, f"{key}.datasets[{d}]", key)
    raise InputError(
        f"{where} attribute 'multiscales'",
        f"lists the levels {listed} but not '{level}', the input array; name a listed level",
    )


def _geometry(
    image: Mapping[str, Any], entry: Mapping[str, Any], ndim: int, where: str, key: str, mkey: str
) -> dict[str, Any]:
    axes = image.get("axes")
    if not isinstance(axes, list) or len(axes) != ndim:
        raise InputError(
            f"{where} attribute '{mkey}.axes'",
            f"{axes!r} does not describe each of the array's {ndim} axes",
        )
    names, types, units = [], [], []
    for i, axis in enumerate(axes):
        if not isinstance(axis, Mapping) or not isinstance(axis.get("name"), str):
            raise InputError(
                f"{where} attribute '{mkey}.axes[{i}]'",
                f"{axis!r} is not an object with a name (OME-Zarr 0.4 or later)",
            )
        names.append(axis["name"])
        kind = axis.get("type")
        types.append(kind if kind in ("space", "time") else "channel")
        units.append(axis.get("unit"))
    scale, translation = _transforms(
        entry.get("coordinateTransformations"), ndim, where, f"{key}.coordinateTransformations"
    )
    if image.get("coordinateTransformations") is not None:
        big_s, big_t = _transforms(
            image["coordinateTransformations"], ndim, where, f"{mkey}.coordinateTransformations"
        )
        translation = [S * t + T for S, t, T in zip(big_s, translation, big_t, strict=True)]
        scale = [S * s for S, s in zip(big_s, scale, strict=True)]
    voxel, offset, symbols = [], [], []
    for i, kind in enumerate(types):
        if kind == "channel":
            continue
        v, o, symbol = _whole(scale[i], translation[i], units[i], where, f"{mkey}.axes[{i}]")
        voxel.append(v)
        offset.append(o)
        symbols.append(symbol)
    return {
        "axis_names": names,
        "types": types,
        "voxel_size": voxel,
        "offset": offset,
        "units": symbols,
    }


def _transforms(value: Any, ndim: int, where: str, key: str) -> tuple[list[float], list[float]]:
    """One scale, then at most one translation (identity entries aside), as the spec says."""
    if not isinstance(value, list):
        raise InputError(f"{where} attribute '{key}'", f"{value!r} is not a list")
    scale: list[float] | None = None
    translation = [0.0] * ndim
    seen: list[str] = []
    for k, t in enumerate(value):
        kind = t.get("type") if isinstance(t, Mapping) else None
        here = f"{key}[{k}]"
        if kind == "identity":
            continue
        if kind not in ("scale", "translation") or kind in seen:
            raise InputError(
                f"{where} attribute '{here}'",
                f"{t!r}: expected one 'scale', then at most one 'translation'",
            )
        seen.append(kind)
        if kind not in t:  # e.g. {"type": "scale", "path": ...}: stored elsewhere
            raise InputError(
                f"{where} attribute '{here}.{kind}'",
                "is missing (transformations stored at a path are not supported)",
            )
        numbers = t[kind]
        if not (
            isinstance(numbers, list)
            and len(numbers) == ndim
            and all(isinstance(n, (int, float)) and math.isfinite(n) for n in numbers)
        ):
            raise InputError(
                f"{where} attribute '{here}.{kind}'", f"{numbers!r} is not {ndim} finite numbers"
            )
        if kind == "scale":
            if any(n <= 0 for n in numbers):
                raise InputError(
                    f"{where} attribute '{here}.scale'", f"{numbers} must be positive on every axis"
                )
            scale = [float(n) for n in numbers]
        else:
            if scale is None:
                raise InputError(f"{where} attribute '{here}'", "a translation before the scale")
            translation = [float(n) for n in numbers]
    if scale is None:
        raise InputError(f"{where} attribute '{key}'", "has no 'scale' transformation")
    return scale, translation


def _whole(
    scale: float, translation: float, unit: Any, where: str, key: str
) -> tuple[int, int, str]:
    """Voxel size and offset as whole numbers of a unit: the axis's own, or the largest
    smaller SI length unit in which both are whole."""
    candidates: list[tuple[float, str]]
    if unit in LENGTH_UNITS:
        exponent = LENGTH_UNITS[unit]
        candidates = [(10.0 ** (exponent - p), SYMBOLS[p]) for p in sorted(SYMBOLS, reverse=True)
                      if p <= exponent]  # fmt: skip
    elif unit in TIME_POWERS:
        exponent = TIME_POWERS[unit]
        candidates = [(10.0 ** (exponent - p), TIME_SYMBOLS[p])
                      for p in sorted(TIME_SYMBOLS, reverse=True) if p <= exponent]  # fmt: skip
    elif unit is None:  # ome-zarr-py's default: 1 per s0 voxel, 0.5 for s1's centre
        candidates = [(10.0**k, unitless(k)) for k in range(UNITLESS_DIGITS + 1)]
    else:  # a unit this tool does not convert
        candidates = [(1.0, str(unit))]
    for factor, sym in candidates:
        v, o = scale * factor, translation * factor
        if _is_whole(v) and _is_whole(o) and round(v) > 0:
            return round(v), round(o), sym
    raise InputError(
        f"{where} attribute '{key}'",
        f"scale {scale:g} and translation {translation:g} {unit or '(no unit)'} are not whole "
        "numbers of any smaller unit (lengths down to femtometers, times to nanoseconds, "
        f"no unit to 1e-{UNITLESS_DIGITS} of it); the worker addresses voxels in whole "
        "world units",
    )


def unitless(k: int) -> str:
    """The symbol of 10^-k of an axis's unnamed unit: "" for the unit itself, else
    `1e-k`; `unit_factor` turns it back into the unit."""
    return "" if k == 0 else f"1e-{k}"


def unit_factor(symbol: str) -> float:
    """How many of the OME-Zarr unit `unit_name` names one `symbol` is: 10^-k for
    `1e-k` (an axis without a unit, counted in finer steps), else 1."""
    match = re.fullmatch(r"1e-([0-9]+)", symbol)
    return 10.0 ** -int(match.group(1)) if match else 1.0


def _exact(x: float) -> float:
    """`x` without the binary noise of a decimal scaling (20 * 0.1)."""
    return float(f"{x:.12g}")


def _is_whole(x: float) -> bool:
    return abs(x - round(x)) <= 1e-6 * max(1.0, abs(x))


# -- output ----------------------------------------------------------------------------


def unit_name(symbol: str) -> str | None:
    """The OME-Zarr name of a funlib unit symbol (None: no unit OME-Zarr knows)."""
    if symbol in LENGTH_UNITS or symbol in TIME_UNITS:
        return symbol
    power = SYMBOL_ALIASES.get(symbol)
    if power is None:
        power = next((p for p, s in SYMBOLS.items() if s == symbol), None)
    if power is not None:
        return next(n for n, p in LENGTH_UNITS.items() if p == power)
    return next((n for n, s in TIME_UNITS.items() if s == symbol), None)


ORDER = {"time": 0, "channel": 1, "space": 2}


def check_image(meta: AxisMetadata) -> None:
    """What OME-Zarr allows of an image's axes: 2 to 5 axes, 2 or 3 of them space, at most
    one time and one channel axis, in the order time, channel, space. Else the output
    cannot be an image."""
    kinds = [t if t in ("channel", "time") else "space" for t in meta.types]
    problem = None
    if not 2 <= len(kinds) <= 5:
        problem = f"has {len(kinds)} axes; OME-Zarr images have 2 to 5"
    elif kinds.count("space") not in (2, 3):
        problem = f"has {kinds.count('space')} spatial axes; OME-Zarr images have 2 or 3"
    elif kinds.count("time") > 1:
        problem = "has more than one time axis; OME-Zarr images have at most one"
    elif kinds.count("channel") > 1:
        problem = "has more than one channel axis; OME-Zarr images have at most one"
    elif kinds != sorted(kinds, key=ORDER.__getitem__):
        problem = (
            f"has its axes in the order {', '.join(kinds)}; OME-Zarr wants time first, then "
            "channels, then space"
        )
    if problem:
        raise InputError("ome_zarr", f"the input (axes {', '.join(meta.axis_names)}) {problem}")


def image_metadata(
    meta: AxisMetadata, zarr_format: int, name: str, pyramid: Levels | None = None
) -> dict[str, Any]:
    """The image group's attributes: OME-Zarr 0.4 for zarr v2, 0.5 for v3; level s0, then
    the pyramid's levels.

    Level k's scale is s0's times F_k; its translation puts each level voxel's center at
    the center of its window of s0 voxels, t0 + (F_k - 1) * v0 / 2, since OME-Zarr (RFC 5,
    written down in 0.6; what ome-zarr-py writes and neuroglancer reads) takes a voxel's
    center as its position: the levels then cover the same region of the world as s0.
    """
    axes: list[dict[str, str]] = []
    scale: list[float] = []
    translation: list[float] = []
    spatial = iter(zip(meta.voxel_size, meta.offset, meta.units, strict=True))
    for axis, kind in zip(meta.axis_names, meta.types, strict=True):
        if kind == "channel":
            axes.append({"name": axis, "type": "channel"})
            scale.append(1.0)
            translation.append(0.0)
            continue
        v, o, u = next(spatial)
        entry = {"name": axis, "type": "time" if kind == "time" else "space"}
        if (unit := unit_name(u)) is not None:
            entry["unit"] = unit
        axes.append(entry)
        factor = unit_factor(u)
        scale.append(_exact(v * factor))
        translation.append(_exact(o * factor))
    datasets = [_dataset(LEVEL, scale, translation)]
    for k, level in enumerate(pyramid.names if pyramid else [], start=1):
        assert pyramid is not None
        factors = pyramid.array_scale(k)
        datasets.append(
            _dataset(
                level,
                [_exact(s * f) for s, f in zip(scale, factors, strict=True)],
                [
                    _exact(t + (f - 1) * s / 2)
                    for s, t, f in zip(scale, translation, factors, strict=True)
                ],
            )
        )
    image: dict[str, Any] = {"name": name, "axes": axes, "datasets": datasets}
    if pyramid is not None and pyramid.levels:
        image["type"] = pyramid.mode
        image["metadata"] = {
            "description": f"{pyramid.mode} of each window of the mask (threshold_worker)",
            "method": "threshold_worker.pyramid.downsample",
            "kwargs": {"factors": list(pyramid.factors), "mode": pyramid.mode},
        }
    version = VERSIONS[zarr_format]
    if zarr_format == 2:
        return {"multiscales": [{"version": version, **image}]}
    return {"ome": {"version": version, "multiscales": [image]}}


def _dataset(path: str, scale: list[float], translation: list[float]) -> dict[str, Any]:
    return {
        "path": path,
        "coordinateTransformations": [
            {"type": "scale", "scale": scale},
            {"type": "translation", "translation": translation},
        ],
    }


def write_image_group(
    store: Store,
    group_path: str,
    meta: AxisMetadata,
    zarr_format: int,
    name: str,
    pyramid: Levels | None = None,
) -> None:
    """Put the image's metadata on its group (created if need be); other attributes stay."""
    group = zarr.open_group(store, path=group_path, mode="a", zarr_format=zarr_format)
    group.attrs.update(image_metadata(meta, zarr_format, name, pyramid))


def listed_levels(store: Store, group_path: str) -> list[str]:
    """The levels besides s0 that the group's own multiscales lists (pyramid levels this
    tool wrote): part of the output, replaced with it."""
    try:
        attrs = zarr.open_group(store, path=group_path, mode="r").attrs.asdict()
    except Exception:  # no group: none
        return []
    return _levels_listed(attrs)


def _levels_listed(attrs: Mapping[str, Any]) -> list[str]:
    """`listed_levels` of a group's attributes, read already."""
    try:
        datasets = multiscales_of(attrs)[0]["datasets"]
        paths = [str(d["path"]).strip("/") for d in datasets]
    except Exception:  # not an image, or metadata of another shape: none
        return []
    return [p for p in paths if re.fullmatch(r"s[1-9][0-9]*", p)]


def written_pyramid(store: Store, group_path: str) -> tuple[int, Any, Any] | None:
    """(levels, factors, mode) of the pyramid the image group's metadata describes, as
    this tool writes it (`image_metadata`); None when there is no such group."""
    try:
        attrs = zarr.open_group(store, path=group_path, mode="r").attrs.asdict()
        image = multiscales_of(attrs)[0]
    except Exception:  # no group, or not an image
        return None
    levels = len(_levels_listed(attrs))
    if not levels:
        return (0, None, None)
    kwargs = (image.get("metadata") or {}).get("kwargs") or {}
    return (levels, kwargs.get("factors"), kwargs.get("mode"))


def other_nodes(store: Store, group_path: str) -> list[str]:
    """Nodes in an output's image group other than its levels: an image group belongs to
    the output whole, so these would be left beside (and described by) a mask they are
    not.

    The group's entries are listed by name and only the others are asked for metadata;
    its own levels are never opened. Iterating the group would open each as a node, and
    zarr warns on stderr about a folder without metadata: an s0 that a concurrent
    `--overwrite` is replacing, whose refusal by the lease follows.
    """
    try:
        group = zarr.open_group(store, path=group_path, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return []
    ours = {LEVEL, *_levels_listed(group.attrs.asdict())}
    prefix = f"{group_path.strip('/')}/".lstrip("/")

    async def names() -> list[str]:
        return [n.rstrip("/") async for n in store.list_dir(prefix)]

    async def is_node(name: str) -> bool:
        for document in NODE_DOCUMENTS:
            if await store.exists(f"{prefix}{name}/{document}"):
                return True
        return False

    return sorted(n for n in run(names()) if n not in ours and run(is_node(n)))


def level_path(dataset: str, name: str = LEVEL) -> str:
    """The path of the image group `dataset`'s level `name` (s0 by default)."""
    return f"{dataset.strip('/')}/{name}"


def array_geometry(array: zarr.Array, where: str) -> AxisMetadata:
    """An opened array's geometry, its parent image's OME-Zarr metadata first
    (`metadata.geometry` says the order)."""
    ome = level_attributes(array.store_path.store, array.path, array.ndim, where)
    return geometry(array.attrs.asdict(), array.ndim, where, ome)


# -- images around an output ------------------------------------------------------------


@dataclass(frozen=True)
class Enclosing:
    """The nearest OME-Zarr image group above a path, and what it lists."""

    group: str
    levels: tuple[str, ...]
    #: The path's level in the image (its first component below the group), if listed.
    level: str | None

    def describe(self) -> str:
        name = self.group or "/"
        if self.level is None:
            return f"lies inside the OME-Zarr image '{name}' (levels {span(self.levels)})"
        others = [p for p in self.levels if p != self.level]
        rest = f"with levels {span(others)}" if others else "its only level"
        return f"is level {self.level} of the OME-Zarr image '{name}', {rest}"


def span(levels: Sequence[str]) -> str:
    """`s1-s3` for a run of numbered levels, else the names joined by commas."""
    numbers = [int(p[1:]) if re.fullmatch(r"s[0-9]+", p) else None for p in levels]
    if len(levels) > 1 and None not in numbers:
        first = numbers[0]
        assert first is not None
        if numbers == list(range(first, first + len(levels))):
            return f"{levels[0]}-{levels[-1]}"
    return ", ".join(levels) if levels else "none"


def enclosing_image(store: Store, dataset: str, skip: str | None = None) -> Enclosing | None:
    """The nearest group above `dataset` with `multiscales` (`skip`: a group that is the
    job's own image), or None. Metadata this tool cannot parse still makes it an image."""
    for group_path, below in _parents(dataset):
        if skip is not None and group_path == skip.strip("/"):
            continue
        try:
            group = zarr.open_group(store, path=group_path, mode="r")
        except Exception:  # no group there (nothing, or an array): look further up
            continue
        multiscales = multiscales_of(group.attrs.asdict())
        if multiscales is None:
            continue
        paths: list[str] = []
        with contextlib.suppress(Exception):
            for image in multiscales:
                paths += [str(d["path"]).strip("/") for d in image["datasets"]]
        first = below.split("/", 1)[0]
        level = below if below in paths else None
        if level is None and first in paths:
            level = first
        return Enclosing(group_path, tuple(paths), level)
    return None
