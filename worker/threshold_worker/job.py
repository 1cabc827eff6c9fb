"""A threshold job: what to read, what to write, and the plan that connects them.

`resolve` checks everything a job needs before anything is written, so bad input leaves
storage untouched; `Job.prepare` then creates (or reuses) the output array. The CLI's
`plan`, `prepare`, `run` and `start-worker` all go through here.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import zarr
import zarr.errors
from funlib.geometry import Coordinate, Roi
from upath import UPath

from . import ome, pyramid
from .arrays import open_zarr, roi_to_selection, write_unit
from .errors import InputError, WorkerError
from .lease import Freshness, Holder, Lease, lease_for
from .metadata import AxisMetadata
from .ownership import (
    OWNER_FILE,
    Action,
    Found,
    OutputArea,
    OwnerRecord,
    Unreadable,
    decide,
    finished,
    new_record,
    output_gone,
    output_lost,
)
from .params import JobParameters
from .paths import as_upath, container_url, is_local, overlap
from .plan import Plan, fingerprint, round_up
from .pyramid import LevelWriter, Pyramid
from .retry import fatal, retry, transient
from .storage import CheckedStore, open_store

JOB_ATTRIBUTE = "threshold_job"
#: Fewer retries while opening: an endpoint that never answers is more often a typo than an
#: outage, and a Kubernetes Job retries the pod anyway (exit 1).
OPENING_DELAYS = (0.5, 2.0)


@dataclass(frozen=True)
class OutputGeometry:
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    zarr_format: int
    exists: bool
    #: An existing array that is what this job would create (shape, dtype, geometry, layout).
    fits: bool = False


@dataclass
class Job:
    spec: JobParameters
    input: zarr.Array
    input_meta: AxisMetadata
    input_path: UPath
    output_path: UPath
    output: OutputGeometry
    roi: Roi
    plan: Plan
    #: The existing output's attributes (None when there is none, or it is unreadable).
    output_attributes: dict[str, Any] | None = None
    #: Levels s1..sN of the OME-Zarr output (`--pyramid`), or None.
    pyramid: Pyramid | None = None
    #: A partition of a job whose prepare step made the output: it must find that output.
    prepared: bool = False

    @property
    def output_meta(self) -> AxisMetadata:
        return self.input_meta

    @property
    def remote(self) -> bool:
        """Input or output on an object store: requests in flight decide throughput there,
        and its clients are bound to the event loop of the process that made them."""
        return not is_local(self.input_path) or not is_local(self.output_path)

    def selection(self, box: tuple[tuple[int, ...], tuple[int, ...]]) -> tuple[slice, ...]:
        """Array index slices for a plan box (spatial voxel indices), channels whole."""
        slices: list[slice] = [slice(None)] * len(self.input.shape)
        begin, end = box
        for k, i in enumerate(self.input_meta.spatial_indices):
            slices[i] = slice(begin[k], end[k])
        return tuple(slices)

    def block_selection(self, block_id: int) -> tuple[slice, ...]:
        return self.selection(self.plan.block_box(block_id))

    def record(self) -> dict[str, Any]:
        """What the output's attributes say about the job that wrote it."""
        return {
            "fingerprint": self.plan.fingerprint,
            "threshold": self.spec.threshold,
            "input": f"{container_url(self.input_path)}#{self.spec.input_dataset}",
            "roi": {"offset": list(self.roi.offset), "shape": list(self.roi.shape)},
            "block_shape": list(self.plan.block_shape),
            "fit": self.plan.fit,
        }

    @property
    def array_dataset(self) -> str:
        """The mask array's path: `output_dataset`, or its level inside the OME-Zarr image
        group `output_dataset` names. Ownership, markers and the lease live in the array."""
        return output_array(self.spec)

    @property
    def where(self) -> str:
        return f"{self.output_path}/{self.array_dataset}"

    def output_store(self) -> Any:
        """The output's store, guarded: nothing below the array is reached through a link."""
        return open_store(self.output_path, guard=self.array_dataset)

    def decide(
        self, area: OutputArea, found: Found, whole_job: bool, fits: bool | None = None
    ) -> Action:
        """What this job may do with the output it found (`ownership.decide`); `fits`:
        whether the array there now is what this job creates (None: as `resolve` saw it)."""
        has_data = found is None and area.has_data()
        return decide(
            found,
            has_data,
            self.plan.fingerprint,
            self.spec.overwrite,
            whole_job,
            self.output.fits if fits is None else fits,
            self.where,
            (self.record()["input"], float(self.spec.threshold)),
            self.differences(area.store),
            self.prepared,
            stranger=has_data and not area.is_array_or_ours(),
        )

    def differences(self, store: Any) -> list[str]:
        """What the existing output says was done differently from this job: its pyramid
        (the image group's levels and their method), roi, block shape, fit."""
        found: list[str] = []
        if self.spec.ome_zarr:
            theirs = ome.written_pyramid(store, self.spec.output_dataset)
            ours = (
                (self.pyramid.levels, list(self.pyramid.factors), self.pyramid.mode)
                if self.pyramid is not None
                else (0, None, None)
            )
            if theirs is not None and theirs != ours:
                found.append(
                    f"the pyramid differs: the output has {_pyramid_words(theirs)}, this job "
                    f"asks for {_pyramid_words(ours)}"
                )
        old = (self.output_attributes or {}).get(JOB_ATTRIBUTE)
        if isinstance(old, dict):
            mine = self.record()
            for key, name in (("roi", "roi"), ("block_shape", "block shape"), ("fit", "fit")):
                if key in old and old[key] != mine[key]:
                    found.append(f"the {name} differs ({old[key]} there, {mine[key]} now)")
        return found

    def fits_now(self) -> bool:
        """Whether the output array, as it is now, is what this job creates. The claim asks
        under the lease: what `resolve` saw may be gone, e.g. an array that a run of this
        same job was replacing (cleared, then made anew) and now writes."""
        existing = _open_existing_output(self.output_path, self.array_dataset, overwrite=True)
        layout = (self.output.chunks, self.output.shards, self.output.zarr_format)
        return _fits(existing, layout, self.output.shape, self.input_meta, self.where)

    def claim(self, whole_job: bool = True) -> OutputClaim:
        """The output, made this job's, under its lease (see `ownership`)."""
        return OutputClaim(self, whole_job)

    def prepare(self, whole_job: bool = True) -> zarr.Array:
        """Claim the output and let it go again: what the prepare step of a cluster job does."""
        with self.claim(whole_job) as claim:
            return claim.array

    def open_output(self) -> zarr.Array:
        return zarr.open_array(
            self.output_store(),
            path=self.array_dataset,
            mode="r+",
            config={"write_empty_chunks": False},
        )

    def level_writer(self, check: Any = None) -> LevelWriter | None:
        """The pyramid's level arrays, each through a store guarded as the output's is
        (`check`: the lease's, asked before every write to an object store)."""
        if self.pyramid is None:
            return None
        arrays = []
        for name in self.pyramid.names:
            path = ome.level_path(self.spec.output_dataset, name)
            store = open_store(self.output_path, guard=path)
            if check is not None and isinstance(store, CheckedStore):
                store.check = check
            arrays.append(
                zarr.open_array(store, path=path, mode="r+", config={"write_empty_chunks": False})
            )
        plan = self.plan
        return LevelWriter(
            self.pyramid, arrays, self.output.shape, plan.grid_origin, plan.block_shape
        )

    def _create_output(self, store: Any) -> zarr.Array:
        geometry = self.output
        kwargs: dict[str, Any] = {}
        if geometry.zarr_format == 3:
            kwargs["dimension_names"] = list(self.output_meta.axis_names)
            kwargs["shards"] = geometry.shards
        return zarr.create_array(
            store,
            name=self.array_dataset,
            shape=geometry.shape,
            chunks=geometry.chunks,
            dtype="uint8",
            fill_value=0,
            zarr_format=geometry.zarr_format,
            attributes={**self.output_meta.attributes(), JOB_ATTRIBUTE: self.record()},
            **kwargs,
        )


@dataclass
class OutputClaim:
    """Holds the output's lease for as long as the job writes; `array` is the output."""

    job: Job
    whole_job: bool
    array: Any = None
    record: OwnerRecord | None = None
    _lease: Lease | None = field(default=None, repr=False)
    _area: OutputArea | None = field(default=None, repr=False)

    def __enter__(self) -> OutputClaim:
        job = self.job
        store = job.output_store()
        self._area = OutputArea(store, job.array_dataset)
        holder = Holder.me(job.plan.fingerprint, job.spec.threshold)
        self._lease = lease_for(job.output_path, job.array_dataset, self._area.files, holder)
        self.array = retry(
            lambda: self._lease.acquire(lambda: self._claim(store)),  # type: ignore[union-attr]
            "claiming the output",
            job.where,
        )
        return self

    def _claim(self, store: Any) -> zarr.Array:
        job, area = self.job, self._area
        assert area is not None
        found = area.read_owner(job.output_attributes)
        fits = job.fits_now() if job.spec.overwrite else None  # as it is, under the lease
        action = job.decide(area, found, self.whole_job, fits)
        if area.files is not None:
            area.files.clean_temporaries()
        if action is Action.RESUME:
            assert isinstance(found, OwnerRecord)
            self.record = found
            return self._open_or_create(store, fresh=False)
        if isinstance(found, Unreadable) and area.files is not None:
            area.files.unlink(OWNER_FILE)  # a link in its place: removed, never followed
        # Markers first: once the record names this job, no old marker may be trusted.
        record = new_record(job.record(), "clearing")
        area.write_owner(record)
        area.clear_markers()
        if action is Action.CLEAR:
            area.clear_data()
        array = self._open_or_create(store, fresh=True)
        if action is Action.ADOPT and job.output.exists:
            array.attrs.update({JOB_ATTRIBUTE: job.record()})
        self.record = replace(record, state="writing")
        area.write_owner(self.record)
        return array

    def _open_or_create(self, store: Any, fresh: bool) -> zarr.Array:
        """The output array, and its image group and pyramid levels; `fresh`: the output is
        (re)made, so levels of an earlier job go, and this job's are made anew."""
        try:
            array = zarr.open_array(store, path=self.job.array_dataset, mode="r+")
        except (FileNotFoundError, zarr.errors.ArrayNotFoundError):
            array = self.job._create_output(store)
        if self.job.spec.ome_zarr:  # inside the lease: the group holds only this image
            job, group = self.job, self.job.spec.output_dataset
            levels = job.pyramid
            if fresh:
                pyramid.remove_nodes(store, group, ome.listed_levels(store, group))
            name = group.rsplit("/", 1)[-1]
            # The metadata first: a level it lists may be missing (made by the next run),
            # but a level it does not list would be a stranger in the group.
            ome.write_image_group(
                store, group, job.output_meta, job.output.zarr_format, name, levels
            )
            if levels is not None:
                pyramid.create_levels(
                    store, group, levels, job.output.zarr_format, job.output_meta.axis_names,
                    fresh,
                )  # fmt: skip
        return array

    @property
    def freshness(self) -> Freshness | None:
        """The check every write makes that the lease is still ours (None: it cannot lapse)."""
        return self._lease.freshness if self._lease is not None else None

    def confirm(self) -> None:
        """The output is still this job's, read afresh through its path: one deleted or
        moved while the job wrote (its writes make the folders again, and `rm -rf` fails on
        them half-way) must not end the job with exit 0 over what is left."""
        job = self.job
        with _fresh_area(job) as area:
            found = area.read_owner()
            ours = isinstance(found, OwnerRecord) and found.fingerprint == job.plan.fingerprint
            if not (ours and area.has_array_document()):
                raise output_lost(job.where, self.whole_job)

    def complete(self) -> None:
        """Every block of the job has its marker: say so in the owner record."""
        assert self._area is not None and self.record is not None
        if self.freshness is not None:
            self.freshness.check()
        self.record = finished(self.record)
        self._area.write_owner(self.record)

    def __exit__(self, *exc: object) -> None:
        if self._lease is not None:
            self._lease.release()
        if self._area is not None and self._area.files is not None:
            self._area.files.close()


def _pyramid_words(pyramid: tuple[int, Any, Any]) -> str:
    levels, factors, mode = pyramid
    if not levels:
        return "no pyramid"
    factors_text = f"factors {','.join(map(str, factors))}, " if factors else ""
    names = f"levels s1-s{levels}" if levels > 1 else "level s1"
    return f"{names} ({factors_text}mode {mode})"


def _check_threshold(value: float) -> None:
    if not math.isfinite(value):
        raise InputError("threshold", f"{value} is not a finite number")


def _check_dtype(array: zarr.Array, where: str) -> None:
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf":
        raise InputError(
            where, f"dtype {dtype} is not a real number type; expected bool, int, uint or float"
        )


def _roi(spec: JobParameters, meta: AxisMetadata, shape: Sequence[int], where: str) -> Roi:
    full = meta.roi(shape)
    if spec.roi_offset is None and spec.roi_shape is None:
        return full
    for name, value in (("roi_offset", spec.roi_offset), ("roi_shape", spec.roi_shape)):
        if value is not None and len(value) != full.dims:
            raise InputError(
                name,
                f"{tuple(value)} has {len(value)} values; the input has {full.dims} spatial "
                f"axes ({', '.join(meta.spatial_axes)})",
            )
    offset = Coordinate(spec.roi_offset) if spec.roi_offset is not None else full.offset
    rshape = Coordinate(spec.roi_shape) if spec.roi_shape is not None else full.end - offset
    if spec.roi_shape is None and any(s <= 0 for s in rshape):
        raise InputError("roi_offset", f"{tuple(offset)} lies outside {where}, whose roi is {full}")
    if any(s <= 0 for s in rshape):
        raise InputError("roi_shape", f"{tuple(rshape)} must be positive on every axis")
    roi = Roi(offset, rshape)
    try:
        roi_to_selection(meta, shape, roi, where)  # grid and bounds checks
    except InputError as e:
        nearest = (roi - full.offset).snap_to_grid(meta.voxel_size, mode="grow") + full.offset
        nearest = nearest.intersect(full)
        if nearest.empty or nearest == roi:
            raise
        hint = _roi_options(spec, full, nearest.offset, nearest.end)
        raise InputError(e.field, f"{e.problem}; use {hint} (the voxels it covers)") from None
    return roi


def _roi_options(spec: JobParameters, full: Roi, begin: Coordinate, end: Coordinate) -> str:
    """The ROI options that give [begin, end): each one the job gave, or one that would
    differ from its default (the array's offset, its end)."""
    given = []
    if spec.roi_offset is not None or begin != full.offset:
        given.append(f"--roi-offset {','.join(map(str, begin))}")
    if spec.roi_shape is not None or end != full.end:
        given.append(f"--roi-shape {','.join(map(str, end - begin))}")
    return " ".join(given)


def _aligned_roi(
    spec: JobParameters,
    meta: AxisMetadata,
    shape: Sequence[int],
    roi: Roi,
    first: Sequence[int],
    grid: Sequence[int],
    block: Sequence[int] | None,
) -> str:
    """For fit=valid: the ROI options that start `roi` on the next point of the block grid
    (`first`: its first voxel, per spatial axis), if a block still fits in what is left."""
    voxel = meta.voxel_size
    start = round_up(first, grid)
    begin = meta.offset + Coordinate(start) * voxel
    left = (roi.end - begin) / voxel
    if any(n < b for n, b in zip(left, block or grid, strict=True)):
        return ""
    return f", e.g. {_roi_options(spec, meta.roi(shape), begin, roi.end)}"


#: Names zarr gives its own documents: never a node's name.
ZARR_NAMES = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")
#: Object stores this worker can run on: its processes and pods must all reach them.
LOCAL_ONLY = ("memory",)


def check_dataset(name: str, value: str) -> None:
    """An array path inside a container: '/'-separated names, none empty, '.' or '..' (which
    would name another place than it says), none of zarr's or this tool's reserved names."""
    if not value:
        raise InputError(name, "is empty; expected the path of an array inside the container")
    if "\\" in value:
        raise InputError(name, f"'{value}' contains a backslash; separate names with '/'")
    for part in value.split("/"):
        if part in ("", ".", ".."):
            raise InputError(
                name,
                f"'{value}' has an empty, '.' or '..' segment; expected names separated by "
                "single slashes, e.g. 100000/val/prediction",
            )
        if part.startswith((".threshold", "__")) or part in ZARR_NAMES:
            raise InputError(
                name,
                f"'{value}': '{part}' is reserved (zarr's documents, names starting with "
                "'__' or '.threshold'); choose another name",
            )
        if len(part.encode()) > NAME_BYTES:
            raise InputError(name, _too_long(part))


def _too_long(name: str) -> str:
    return f"'{name[:40]}...' is longer than {NAME_BYTES} bytes, the file-name limit"


def container_path(name: str, value: str) -> UPath:
    """The container a job names, or a one-line error for one it cannot use."""
    if not value.strip():
        raise InputError(name, "is empty; expected a path or a URL such as s3://bucket/x.zarr")
    try:
        path = as_upath(value)
    except ValueError as e:
        raise InputError(name, str(e)) from None
    if path.protocol in LOCAL_ONLY:
        raise InputError(
            name,
            f"{path.protocol}:// lives inside one process, which the worker's processes and "
            "pods do not share; use a path or an object store",
        )
    if not is_local(path):
        segments = str(path).split("://", 1)[-1].rstrip("/").split("/")
        if (odd := next((s for s in segments if s in ("", ".", "..")), None)) is not None:
            shown = f"'{odd}'" if odd else "an empty"
            raise InputError(
                name,
                f"{value} has {shown} segment: object-store keys are names, not folders, so "
                "the store would write a key spelled so, where a path would mean another "
                "place; write the URL without it, e.g. s3://bucket/path/x.zarr",
            )
        try:
            path.fs  # noqa: B018 -- loads the file system's package
        except ImportError as e:
            raise InputError(name, f"{path.protocol}:// needs a package: {e}") from None
    return path


def _parent_array(path: UPath, dataset: str) -> str | None:
    """The array the output would be created inside of (zarr refuses arrays in arrays)."""
    parts = dataset.split("/")
    try:
        store = open_store(path, read_only=True)
    except (FileNotFoundError, OSError):
        return None
    for k in range(len(parts)):
        parent = "/".join(parts[:k])
        try:
            zarr.open_array(store, path=parent, mode="r")
        except Exception:
            continue
        return f"{path}/{parent}" if parent else str(path)
    return None


def _enclosing_format(path: UPath, dataset: str) -> tuple[str, int] | None:
    """The nearest existing group above `dataset` (the container's root at the latest)
    and its zarr format; None when no group holds the output yet."""
    try:
        store = open_store(path, read_only=True)
    except (FileNotFoundError, OSError):
        return None
    parts = dataset.strip("/").split("/")
    for k in range(len(parts) - 1, -1, -1):
        parent = "/".join(parts[:k])
        try:
            group = zarr.open_group(store, path=parent, mode="r")
        except Exception:  # nothing there, or not a group: look further up
            continue
        return (f"{path}/{parent}" if parent else str(path)), group.metadata.zarr_format
    return None


#: What a file name (NAME_MAX) and a path (PATH_MAX) hold on Linux file systems, in bytes.
NAME_BYTES, PATH_BYTES = 255, 4096
#: The longest path below an output array this worker writes: a 5-d chunk key, a marker of
#: a run of block ids, a temporary file's name (the chunk key, then 32 hex digits).
BELOW_OUTPUT_BYTES = 256


def _fits_the_file_system(container: str, dataset: str) -> None:
    """Refuse, before anything is written, an output whose names or path the file system
    cannot hold (ENAMETOOLONG would come mid-claim, after the owner record)."""
    for name in container.split("/"):  # the dataset's names: check_dataset
        if len(name.encode()) > NAME_BYTES:
            raise InputError("output_container", _too_long(name))
    size = len(os.path.join(container, dataset).encode())
    if size > PATH_BYTES - BELOW_OUTPUT_BYTES:
        raise InputError(
            "output_container",
            f"the output's path is {size} bytes long, and the files below it need up to "
            f"{BELOW_OUTPUT_BYTES} more of the {PATH_BYTES} a path holds; choose a shorter one",
        )


def _part(place: str, container: str, field: str) -> str:
    """The field that names `place`: the container's (`field`), or the dataset below it."""
    return field if len(place) <= len(container) else "output_dataset"


def _reachable(container: str, dataset: str, field: str = "output_container") -> str:
    """The nearest existing folder of a local output (or the output itself): refused, before
    the output is opened, where a file or a link that leads nowhere stands in the way."""
    full = os.path.join(container, dataset)
    if os.path.exists(container) and not os.path.isdir(container):
        raise InputError(field, f"{container} is a file, not a zarr container (a directory)")
    probe = full
    while not os.path.exists(probe):
        if os.path.islink(probe):  # os.path.exists follows links: this one leads nowhere
            raise InputError(
                _part(probe, container, field),
                f"{probe} is a link that leads nowhere (to a missing place, or round in a "
                "loop); mend or remove it, or choose another output",
            )
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        made = "created below it" if probe != full else "an array"
        raise InputError(
            _part(probe, container, field), f"{probe} is a file, so {full} cannot be {made}"
        )
    return probe


def _writable_location(path: UPath, nearest: str | None, field: str) -> None:
    """The output can be written where it is (or will be): before anything is. `nearest`:
    on a local disk, the output's nearest existing folder (`_reachable`)."""
    if not is_local(path):
        name = f"{path.protocol}://{path.drive.rstrip('/')}"
        bucket = UPath(name, **path.storage_options)
        try:
            found = bucket.exists()
        except Exception as e:  # credentials, endpoint: say which
            raise fatal(e, name, field) or InputError(
                field, f"cannot reach {name}: {type(e).__name__}: {e}"
            ) from None
        if not found:
            raise InputError(
                field, f"bucket {name} does not exist, so the output cannot be written"
            )
        return
    assert nearest is not None
    probe = nearest
    if _read_only_fs(probe):
        raise InputError(
            field, f"{probe} is on a read-only file system; the output needs one it can write"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(
            field,
            f"{probe} is not writable by this user (uid {os.getuid()}), so the output cannot be written",
        )


def _read_only_fs(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _open_existing_output(path: UPath, dataset: str, overwrite: bool) -> zarr.Array | None:
    """The output array if there is one; a damaged one is refused unless it is replaced."""
    where = f"{path}/{dataset}"
    try:
        store = open_store(path, read_only=True)
        return zarr.open_array(store, path=dataset, mode="r")
    except (FileNotFoundError, zarr.errors.ArrayNotFoundError):
        return None
    except zarr.errors.NodeTypeValidationError:
        if _is_image(path, dataset):
            raise InputError(
                "output_dataset",
                f"{where} is an OME-Zarr image group, and without --ome-zarr the output is a "
                f"plain array in its place; {_SAME_KIND}: pass --ome-zarr, delete the image "
                "first, or choose another output_dataset",
            ) from None
        raise InputError(
            "output_dataset", f"'{dataset}' in {path} is a group; name a new or existing array"
        ) from None
    except PermissionError as e:
        raise InputError(
            "output_container", f"cannot read {e.filename or where}: permission denied"
        ) from None
    except Exception as e:
        error = fatal(e, where, "output_container")
        if error is not None:
            raise error from None
        if transient(e):
            raise  # retried; damaged metadata is what remains
        if overwrite:
            return None  # replaced as a whole
        raise InputError(
            "output_dataset",
            f"{where} exists but its zarr metadata is unreadable ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); repair it, or pass --overwrite to replace it",
        ) from None


#: Why an output of the other kind (plain array, OME-Zarr image) is refused. Plain outputs
#: keep their lease, owner record and markers in the array, images in their s0: the two
#: kinds of one name share no lease, so no job may replace one with the other.
_SAME_KIND = "--overwrite replaces an output with one of its own kind only"


def _is_image(path: UPath, dataset: str) -> bool:
    try:
        group = zarr.open_group(open_store(path, read_only=True), path=dataset, mode="r")
    except Exception:  # not a readable group: not an image
        return False
    return ome.multiscales_of(group.attrs.asdict()) is not None


def _positive(name: str, value: Sequence[int] | None, n: int) -> None:
    if value is None:
        return
    if len(value) != n:
        raise InputError(name, f"{tuple(value)} has {len(value)} values; expected {n}")
    if any(v <= 0 for v in value):
        raise InputError(name, f"{tuple(value)} must be positive on every axis")


def _agrees(spec: JobParameters, existing: zarr.Array, meta: AxisMetadata, where: str) -> None:
    """Layout options given for an existing output must be what it has: never ignored."""
    spatial = meta.spatial_indices
    chunks = tuple(existing.chunks[i] for i in spatial)
    shards = tuple(existing.shards[i] for i in spatial) if existing.shards else None
    fmt = existing.metadata.zarr_format
    for name, wanted, has in (
        ("output_chunks", spec.output_chunks, chunks),
        ("output_shards", spec.output_shards, shards),
        ("zarr_format", spec.zarr_format, fmt),
    ):
        wanted = tuple(wanted) if isinstance(wanted, list) else wanted
        if wanted is not None and wanted != has:
            shown = has if has is not None else "none"
            raise InputError(
                name,
                f"{wanted} differs from the existing output {where}, which has {shown}; "
                "leave the option out to keep it, or pass --overwrite to replace the output",
            )


def _mismatches(
    existing: zarr.Array, shape: tuple[int, ...], meta: AxisMetadata, where: str
) -> list[str]:
    """How an existing output differs from what the job writes (shape, dtype, geometry)."""
    problems = []
    if tuple(existing.shape) != shape:
        problems.append(f"shape {tuple(existing.shape)} (expected {shape})")
    if np.dtype(existing.dtype) != np.uint8:
        problems.append(f"dtype {existing.dtype} (expected uint8)")
    if existing.fill_value is None or existing.fill_value != 0:  # v2's null: undefined
        fill = "null" if existing.fill_value is None else existing.fill_value
        problems.append(  # chunks never written (outside the roi) read as the fill value
            f"fill value {fill} (expected 0, which unwritten chunks read as)"
        )
    if not problems:
        out_meta = ome.array_geometry(existing, where)
        if out_meta.voxel_size != meta.voxel_size or out_meta.offset != meta.offset:
            problems.append(
                f"voxel size {tuple(out_meta.voxel_size)} and offset {tuple(out_meta.offset)}"
                f" (expected {tuple(meta.voxel_size)} and {tuple(meta.offset)})"
            )
    return problems


def _layout(existing: zarr.Array) -> tuple[Any, ...]:
    shards = tuple(existing.shards) if existing.shards else None
    return tuple(existing.chunks), shards, existing.metadata.zarr_format


def _fits(
    existing: zarr.Array | None,
    layout: tuple[Any, ...],
    shape: tuple[int, ...],
    meta: AxisMetadata,
    where: str,
) -> bool:
    """Whether an existing output is what the job creates: its shape, dtype and geometry
    (`_mismatches`) and its `layout` (chunks, shards, zarr format, as `_layout` gives it)."""
    if existing is None:
        return False
    return not _mismatches(existing, shape, meta, where) and _layout(existing) == layout


def _output_geometry(
    spec: JobParameters,
    source: zarr.Array,
    meta: AxisMetadata,
    existing: zarr.Array | None,
    where: str,
    around: tuple[str, int] | None = None,
) -> OutputGeometry:
    """`around`: the nearest existing group above a new output, and its zarr format,
    which the output takes (v2 metadata beside v3's, or v3 inside a v2 hierarchy, is a
    hierarchy no zarr reader lists whole)."""
    shape = tuple(source.shape)
    spatial = meta.spatial_indices
    if existing is not None and not spec.overwrite:
        if problems := _mismatches(existing, shape, meta, where):
            raise InputError(
                "output_dataset",
                f"{where} exists with {'; '.join(problems)}; pass --overwrite to replace it",
            )
        _agrees(spec, existing, meta, where)
        chunks, shards, fmt = _layout(existing)
        return OutputGeometry(shape, chunks, shards, fmt, exists=True, fits=True)
    n = len(spatial)
    _positive("output_chunks", spec.output_chunks, n)
    _positive("output_shards", spec.output_shards, n)
    chunks = list(source.chunks)
    if spec.output_chunks is not None:
        for k, i in enumerate(spatial):
            chunks[i] = spec.output_chunks[k]
    for i in meta.channel_indices:
        chunks[i] = shape[i]
    shards = None
    if spec.output_shards is not None:
        shards = list(chunks)
        for k, i in enumerate(spatial):
            shards[i] = spec.output_shards[k]
        if any(s % c for s, c in zip(shards, chunks, strict=True)):
            inner = [chunks[i] for i in spatial]
            grown = round_up(spec.output_shards, inner)
            raise InputError(
                "output_shards",
                f"{tuple(spec.output_shards)} is not a multiple of the output chunk shape "
                f"{tuple(inner)}; use --output-shards {','.join(map(str, grown))}",
            )
    if spec.zarr_format is not None and spec.zarr_format not in (2, 3):
        raise InputError("zarr_format", f"{spec.zarr_format} is not 2 or 3")
    if around is not None:
        group, has = around
        if spec.zarr_format is not None and spec.zarr_format != has:
            raise InputError(
                "output_container",
                f"{group} is a zarr v{has} group, so an output below it must be v{has} too, "
                f"not --zarr-format {spec.zarr_format} (v2 and v3 metadata side by side make "
                f"a hierarchy no zarr reader lists whole); leave --zarr-format out or pass "
                f"{has}, or choose another output_container",
            )
        if shards and has == 2:
            raise InputError(
                "output_shards",
                f"sharding needs zarr format 3, and {group} is a zarr v2 group, so an output "
                "below it is v2; leave --output-shards out, or choose another output_container",
            )
    fmt = (
        spec.zarr_format
        or (around[1] if around else None)
        or (3 if shards else source.metadata.zarr_format)
    )
    if shards and fmt == 2:
        raise InputError("output_shards", "sharding needs zarr format 3, not 2")
    layout = (tuple(chunks), tuple(shards) if shards else None, fmt)
    fits = _fits(existing, layout, shape, meta, where)
    return OutputGeometry(shape, *layout, exists=existing is not None, fits=fits)


def resolve(
    spec: JobParameters, whole_job: bool = True, writing: bool = True, prepared: bool = False
) -> Job:
    """Check the job against the storage it names, writing nothing; raise `InputError` on
    bad input and `OutputConflict` when the output belongs to another job. `whole_job` is
    False for one partition of a job (which may not replace an output), `prepared` True for
    a partition of a job whose prepare step made the output (which must be there);
    `writing` is False for a look at the output (status, verify), which may be read-only
    and anyone's."""
    _check_threshold(spec.threshold)
    check_dataset("input_dataset", spec.input_dataset)
    check_dataset("output_dataset", spec.output_dataset)
    input_path = container_path("input_container", spec.input_container)
    output_path = container_path("output_container", spec.output_container)
    nearest = None
    if is_local(output_path):  # before the output is looked at: names, files, dead links
        _fits_the_file_system(output_path.path, spec.output_dataset)
        nearest = _reachable(output_path.path, spec.output_dataset)
    where = f"{input_path}/{spec.input_dataset}"
    source = retry(
        lambda: open_zarr(input_path, spec.input_dataset, "r", "input"),
        "opening the input",
        where,
        field="input_container",
        waits=OPENING_DELAYS,
    )
    _check_dtype(source, "input_dataset")
    meta = retry(
        lambda: ome.array_geometry(source, where), "reading the input's metadata", where,
        field="input_container", waits=OPENING_DELAYS,
    )  # fmt: skip
    if spec.ome_zarr:
        ome.check_image(meta)
    roi = _roi(spec, meta, source.shape, where)

    array_dataset = output_array(spec)
    out_where = f"{output_path}/{array_dataset}"
    relation = overlap(input_path, spec.input_dataset, output_path, spec.output_dataset)
    if relation is not None:
        how = {
            "same": "is the input array",
            "inside": "lies inside the input array",
            "contains": "contains the input array",
        }[relation]
        # What the user named: an OME-Zarr output is its image group, levels and all, not s0.
        named = f"{output_path}/{spec.output_dataset}"
        if spec.ome_zarr:
            named += " (the OME-Zarr image --ome-zarr writes, every level of it)"
        raise InputError(
            "output_dataset",
            f"{named} {how} {where} (compared as files, after links); choose an output "
            "apart from the input",
        )
    if (parent := _parent_array(output_path, array_dataset)) is not None:
        if spec.ome_zarr and parent == f"{output_path}/{spec.output_dataset}":
            raise InputError(
                "output_dataset",
                f"{parent} is a plain zarr array, and --ome-zarr writes an OME-Zarr image "
                f"group in its place; {_SAME_KIND}: delete the array first, leave out "
                "--ome-zarr, or choose another output_dataset",
            )
        raise InputError(
            "output_dataset",
            f"{out_where} would lie inside the array {parent}, and zarr arrays hold no other "
            "nodes; choose a path outside it",
        )
    _not_in_an_image(output_path, spec, input_path)
    existing = retry(
        lambda: _open_existing_output(output_path, array_dataset, spec.overwrite),
        "opening the output",
        out_where,
        waits=OPENING_DELAYS,
    )
    if writing:
        _writable_location(output_path, nearest, "output_container")
    if spec.ome_zarr:
        _image_group_free(output_path, spec.output_dataset)
    around = _enclosing_format(output_path, array_dataset)
    try:
        geometry = _output_geometry(spec, source, meta, existing, out_where, around)
    except InputError:
        if prepared and existing is not None:  # it was fine when prepared
            raise output_gone(out_where) from None
        raise

    spatial = meta.spatial_indices
    unit_full = geometry.shards or geometry.chunks
    unit = tuple(unit_full[i] for i in spatial)
    sel = roi_to_selection(meta, source.shape, roi, where)
    identity = {
        "input": {
            "url": container_url(input_path),
            "dataset": spec.input_dataset,
            "shape": list(source.shape),
            "dtype": str(source.dtype),
            "chunks": list(write_unit(source)),
            "voxel_size": list(meta.voxel_size),
            "offset": list(meta.offset),
            "version": input_version(input_path, spec.input_dataset),
        },
        "output": {
            "url": container_url(output_path),
            "dataset": spec.output_dataset,
            **({"ome_zarr": ome.LEVEL} if spec.ome_zarr else {}),
            "chunks": list(geometry.chunks),
            "shards": list(geometry.shards) if geometry.shards else None,
            "zarr_format": geometry.zarr_format,
        },
        "threshold": repr(float(spec.threshold)),
    }
    roi_shape = [sel[i].stop - sel[i].start for i in spatial]
    block_shape, levels, align = spec.block_shape, None, None
    if spec.pyramid:
        levels, block_shape = pyramid.plan_pyramid(
            spec.pyramid, spec.pyramid_factors, spec.pyramid_mode, geometry.shape, spatial,
            geometry.chunks, unit, roi_shape, spec.block_shape, geometry.shards is not None,
            meta.spatial_axes, [meta.types[i] == "time" for i in spatial],
        )  # fmt: skip
        align = levels.align
        identity["output"]["pyramid"] = levels.identity()
    try:
        plan = Plan.create(
            array_shape=[source.shape[i] for i in spatial],
            write_unit=unit,
            roi_begin=[sel[i].start for i in spatial],
            roi_shape=roi_shape,
            block_shape=block_shape,
            fit=spec.fit,
            partitions=spec.partition_count,
            identity=identity,
            sharded=geometry.shards is not None,
            unit_name=("output shard shape" if geometry.shards else "output chunk shape")
            + (" and pyramid level chunk" if levels else ""),
            align=align,
        )
    except InputError as e:  # said in voxels: the job's ROI options are in world units
        if e.field != "roi.offset":
            raise
        first = [sel[i].start for i in spatial]
        hint = _aligned_roi(spec, meta, source.shape, roi, first, align or unit, block_shape)
        raise InputError(e.field, f"{e.problem}{hint}") from None
    job = Job(
        spec=spec,
        input=source,
        input_meta=meta,
        input_path=input_path,
        output_path=output_path,
        output=geometry,
        roi=roi,
        plan=plan,
        output_attributes=existing.attrs.asdict() if existing is not None else None,
        pyramid=levels,
        prepared=prepared,
    )
    if writing and (
        prepared or existing is not None or not is_local(output_path) or os.path.isdir(job.where)
    ):
        retry(lambda: _check_owner(job, whole_job), "reading the output's owner", out_where)
    return job


def output_array(spec: JobParameters) -> str:
    """Where a job's mask array is: `output_dataset`, or level s0 of the image it names."""
    return ome.level_path(spec.output_dataset) if spec.ome_zarr else spec.output_dataset


def _not_in_an_image(path: UPath, spec: JobParameters, input_path: UPath) -> None:
    """An output inside another OME-Zarr image's group (one of its levels, or beside
    them) would change the image behind its metadata's back: a plain run into `s0` would
    leave the other levels, which the group still lists, as another job's result. Writing
    the image whole is no way out when the input is one of its levels."""
    try:
        store = open_store(path, read_only=True)
    except (FileNotFoundError, OSError):
        return
    own = spec.output_dataset if spec.ome_zarr else None
    found = ome.enclosing_image(store, output_array(spec), skip=own)
    if found is None:
        return
    name = found.group or "/"
    if overlap(input_path, spec.input_dataset, path, found.group) == "contains":
        how = (
            f"the input {input_path}/{spec.input_dataset} lies in that image too, which is "
            "replaced whole or not at all: choose an output_dataset outside it"
        )
    elif found.level is not None:
        how = (
            f"write the image with --ome-zarr -od {name} (its levels are replaced with it), "
            "or choose another output_dataset"
        )
    else:
        how = "an OME-Zarr image group holds its levels alone: choose an output outside it"
    raise InputError("output_dataset", f"{path}/{spec.output_dataset} {found.describe()}; {how}")


def _image_group_free(path: UPath, dataset: str) -> None:
    """An OME-Zarr output's group holds the mask alone: other nodes in it would sit beside
    a mask that the group's metadata describes, and no overwrite removes them."""
    try:
        store = open_store(path, read_only=True)
    except (FileNotFoundError, OSError):
        return
    others = ome.other_nodes(store, dataset)
    if others:
        raise InputError(
            "output_dataset",
            f"{path}/{dataset} holds {', '.join(others[:5])}{' ...' if len(others) > 5 else ''}"
            f" beside {ome.LEVEL}; an OME-Zarr output is an image group of its own: choose "
            "another output_dataset",
        )


def input_version(container: UPath, dataset: str) -> str:
    """Which version of the input array this is: the identity of its metadata document,
    which a re-created array (DaCapo predicting again into the same path) changes. Done-
    markers of a job on an older version are then not trusted."""
    for name in ("zarr.json", ".zarray"):
        if is_local(container):
            try:
                st = os.stat(os.path.join(container.path, dataset, name))
            except FileNotFoundError:
                continue
            return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
        path = container / dataset / name
        try:
            info = path.fs.info(path.path)
        except FileNotFoundError:
            continue
        return ":".join(
            str(info.get(k)) for k in ("ETag", "LastModified", "generation", "mtime", "size")
        )
    return ""


def _check_owner(job: Job, whole_job: bool) -> None:
    """Refuse now, before anything is written, what the claim would refuse later."""
    with _fresh_area(job) as area:
        job.decide(area, area.read_owner(job.output_attributes), whole_job)


@contextlib.contextmanager
def _fresh_area(job: Job) -> Iterator[OutputArea]:
    """The output's files as they are now, read through its path, read-only."""
    area = OutputArea(open_store(job.output_path, read_only=True), job.array_dataset)
    try:
        yield area
    finally:
        if area.files is not None:
            area.files.close()


def resolve_sweep(
    params: JobParameters, whole_job: bool = True, writing: bool = True, prepared: bool = False
) -> list[Job]:
    """The jobs of one pass over the input: one per threshold, each the very job a single
    run of that threshold would be (its own output, owner record, lease and markers), all
    on one block grid so that each block is read once for all of them."""
    jobs = [resolve(p, whole_job, writing, prepared) for p in params.sweep()]
    first = jobs[0]
    for job in jobs[1:]:
        if _grid(job.plan) != _grid(first.plan):
            raise InputError(
                "output_dataset",
                f"{job.where} is laid out unlike {first.where} (chunks {job.output.chunks}, "
                f"shards {job.output.shards} against {first.output.chunks}, "
                f"{first.output.shards}): a sweep writes every output on one block grid; "
                "pass --overwrite with one --output-chunks, or sweep them apart",
            )
        for other in jobs[: jobs.index(job)]:
            if overlap(job.output_path, job.spec.output_dataset, other.output_path,
                       other.spec.output_dataset):  # fmt: skip
                raise InputError(
                    "output_dataset", f"{job.where} and {other.where} are one place; "
                    "give each threshold its own output",
                )  # fmt: skip
    return jobs


def _grid(plan: Plan) -> tuple[Any, ...]:
    return plan.roi_begin, plan.roi_shape, plan.block_shape, plan.grid_origin, plan.grid_shape


def sweep_fingerprint(jobs: Sequence[Job]) -> str:
    """A sweep's plan fingerprint: its single job's, or one over all of its jobs' (what a
    cluster's prepare step reports and its partitions expect)."""
    if len(jobs) == 1:
        return jobs[0].plan.fingerprint
    return fingerprint({"sweep": [job.plan.fingerprint for job in jobs]})


@contextlib.contextmanager
def claim_all(jobs: Sequence[Job], whole_job: bool = True) -> Iterator[list[OutputClaim]]:
    """Every output of a sweep claimed, each under its own lease, for as long as it runs;
    one refusal lets go of those already claimed."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(job.claim(whole_job)) for job in jobs]


@contextlib.contextmanager
def still_ours(claims: Sequence[OutputClaim]) -> Iterator[None]:
    """Around the writing of blocks: each output is read afresh when it ends (`OutputClaim.
    confirm`), so that an output lost meanwhile is told as such, rather than as a run that
    went well or a raw error of a write that failed for it. The worker's own errors say
    their cause already (a lapsed lease, whose new holder confirm would see as a loss)."""
    try:
        yield
    except WorkerError:
        raise
    except Exception:
        for claim in claims:
            claim.confirm()
        raise
    for claim in claims:
        claim.confirm()
