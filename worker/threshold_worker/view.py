"""A neuroglancer link to a job's input and mask, and a small HTTP server for local data.

The state holds the input as an image layer and the mask as a segmentation layer (segment
1 shown). A layer's source is `zarr2://` or `zarr3://` and a URL neuroglancer reads
(`s3://bucket/key`, `s3+http(s)://endpoint/bucket/key` for another S3 server,
`gs://bucket/key`, or `http://127.0.0.1:PORT/...` from `serve`) of:

- the OME-Zarr image group, when the array is a level of one (an `--ome-zarr` mask, or
  an input level such as `s1`): neuroglancer reads the group's `multiscales` itself (axes,
  units, each level's scale and translation, a voxel's position at its centre) and uses
  every level of the pyramid, so the source has no `transform`: one would replace
  neuroglancer's reading of the metadata, not add to it;
- else the array, with a `transform` whose output dimensions carry the voxel size in
  meters and whose last column the offset in voxels: the geometry comes from this tool's
  metadata (funlib or DaCapo attributes), not from what neuroglancer would guess from the
  array alone. Beside an image group layer, the offset is a voxel's centre, as the tool
  reads OME-Zarr translations (half a voxel less), so the layers overlay.

A group whose axes neuroglancer would read in other units than the view's dimensions (a
mask of an input without units, which this tool shows in nm, as DaCapo's arrays are)
falls back to its first level with a transform.

`serve` answers GET, HEAD (with byte ranges: neuroglancer reads shard indexes so) and CORS
preflights with `Access-Control-Allow-Origin: *`, for neuroglancer in a browser; it binds
127.0.0.1 by default, which browsers let an https page read (mixed-content exception).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shlex
import threading
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zarr
from upath import UPath

from . import ome
from .arrays import open_zarr
from .errors import InputError
from .metadata import AxisMetadata
from .paths import PROTOCOL_ALIASES, as_upath, is_local
from .storage import open_store

logger = logging.getLogger(__name__)

NEUROGLANCER = "https://neuroglancer-demo.appspot.com/#!"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
#: Power of ten of the SI base unit, by the unit symbols funlib attributes use.
PREFIXES = {"km": 3, "m": 0, "mm": -3, "um": -6, "µm": -6, "nm": -9, "pm": -12, "fm": -15,
            "s": 0, "ms": -3, "us": -6, "ns": -9}  # fmt: skip


@dataclass(frozen=True)
class ViewArray:
    """One array to show: where it is, its zarr format and geometry."""

    container: UPath
    dataset: str
    zarr_format: int
    shape: tuple[int, ...]
    meta: AxisMetadata
    #: The OME-Zarr image group the array is a level of (None: a plain array).
    group: str | None = None

    @classmethod
    def open(cls, container: str, dataset: str, field_prefix: str) -> ViewArray:
        """The array `dataset` names, or the first level of the OME-Zarr image it names."""
        path = as_upath(container)
        dataset = dataset.strip("/")
        level = _image_level(path, dataset)
        if level is not None:
            dataset = f"{dataset}/{level}" if dataset else level
        array = open_zarr(path, dataset, "r", field_prefix)
        meta = ome.array_geometry(array, f"{path}/{dataset}")
        shape = tuple(array.shape)
        group = image_group(path, dataset)
        return cls(path, dataset, array.metadata.zarr_format, shape, meta, group)


def job_arrays(job: Any) -> tuple[ViewArray, ViewArray]:
    """A resolved job's input and mask, without opening them again."""
    image = ViewArray(
        job.input_path,
        job.spec.input_dataset,
        job.input.metadata.zarr_format,
        tuple(job.input.shape),
        job.input_meta,
        image_group(job.input_path, job.spec.input_dataset),
    )
    mask = ViewArray(
        job.output_path,
        job.array_dataset,
        job.output.zarr_format,
        job.output.shape,
        job.output_meta,
        job.spec.output_dataset.strip("/") if job.spec.ome_zarr else None,
    )
    return image, mask


def hint(job: Any) -> str:
    """What the `run` summary says: the link when neuroglancer reads both arrays from object
    stores, else the `view --serve` command that serves them."""
    image, mask = job_arrays(job)
    if not needs_server(image, mask):
        return link(state(image, mask))
    spec = job.spec
    words = ["-ic", spec.input_container, "-id", spec.input_dataset,
             "-oc", spec.output_container, "-od", spec.output_dataset]  # fmt: skip
    return f"threshold-worker view {shlex.join(words)} --serve"


def image_levels(container: UPath, dataset: str) -> list[tuple[str, list[float]]]:
    """The levels of the OME-Zarr image group `dataset` names, with their scales, first
    level first; [] where it names no image (an array, or nothing)."""
    try:
        group = zarr.open_group(open_store(container, read_only=True), path=dataset, mode="r")
        datasets = ome.multiscales_of(group.attrs.asdict())[0]["datasets"]
        return [
            (str(d["path"]).strip("/"), list(d["coordinateTransformations"][0]["scale"]))
            for d in datasets
        ]
    except Exception:  # not a group, or no image there: the caller opens it as an array
        return []


def image_group(container: UPath, dataset: str) -> str | None:
    """The OME-Zarr image group whose `multiscales` lists the array `dataset` as a level."""
    try:
        found = ome.enclosing_image(open_store(container, read_only=True), dataset)
    except Exception:  # unreadable: shown as a plain array
        return None
    if found is None or found.level != dataset.strip("/")[len(found.group) :].strip("/"):
        return None
    return found.group


def group_dimensions(container: UPath, group: str) -> dict[str, list[Any]] | None:
    """The non-channel dimensions neuroglancer makes of an image group: each axis's name,
    and its first level's scale (the multiscale-wide one applied) in SI base units, as
    [scale, unit]; "" for an axis without a unit. None where neuroglancer would not read
    the group (no image, a unit it does not know)."""
    try:
        root = zarr.open_group(open_store(container, read_only=True), path=group, mode="r")
        image = ome.multiscales_of(root.attrs.asdict())[0]
        axes = image["axes"]
        n = len(axes)
        where = f"{container}/{group}"
        scale, _ = ome._transforms(image["datasets"][0]["coordinateTransformations"], n, where, "")
        if image.get("coordinateTransformations") is not None:
            wide, _ = ome._transforms(image["coordinateTransformations"], n, where, "")
            scale = [a * b for a, b in zip(wide, scale, strict=True)]
    except Exception:  # not an image this tool or neuroglancer reads
        return None
    dims: dict[str, list[Any]] = {}
    for axis, s in zip(axes, scale, strict=True):
        if axis.get("type") == "channel":
            continue
        unit = axis.get("unit")
        if unit is None:
            dims[axis["name"]] = [s, ""]
        elif unit in ome.LENGTH_UNITS:
            dims[axis["name"]] = [_si(s, ome.LENGTH_UNITS[unit]), "m"]
        elif unit in ome.TIME_POWERS:
            dims[axis["name"]] = [_si(s, ome.TIME_POWERS[unit]), "s"]
        else:
            return None
    return dims


def _si(size: float, power: int) -> float:
    return float(f"{size * 10.0**power:.12g}")


def _image_level(container: UPath, dataset: str) -> str | None:
    try:
        group = zarr.open_group(open_store(container, read_only=True), path=dataset, mode="r")
    except Exception:  # not a group (an array, or nothing: open_zarr says which)
        return None
    multiscales = ome.multiscales_of(group.attrs.asdict())
    with contextlib.suppress(Exception):
        return str(multiscales[0]["datasets"][0]["path"]).strip("/")
    return None


def unit_scale(size: float, unit: str, unitless: str = "nm") -> list[Any]:
    """A neuroglancer dimension: [scale in SI base units, base unit]; no unit means
    `unitless`: nm, as DaCapo's arrays are in nm, or "" (no unit) as neuroglancer reads an
    OME-Zarr axis without one; `1e-k` is 10^-k of an OME-Zarr axis without a unit."""
    factor = ome.unit_factor(unit)
    if factor != 1.0:
        return [_si(size * factor, 0), ""]
    unit = unit or unitless
    if not unit:
        return [float(size), ""]
    power = PREFIXES.get(unit)
    if power is None:
        return [float(size), unit]
    base = "s" if unit.endswith("s") else "m"
    return [_si(size, power), base]


def _channel_name(name: str) -> str:
    return name if name.endswith("^") else f"{name}^"


def transform(array: ViewArray, unitless: str = "nm", centred: bool = False) -> dict[str, Any]:
    """The layer source's transform: array axes -> named world axes (voxel size, offset;
    `centred`: the offset is voxel 0's centre, as OME-Zarr's translation is)."""
    m = array.meta
    ndim = len(m.axis_names)
    spatial = {axis: k for k, axis in enumerate(m.spatial_indices)}
    outputs: dict[str, list[Any]] = {}
    matrix: list[list[float]] = []
    for i, name in enumerate(m.axis_names):
        row = [0.0] * (ndim + 1)
        row[i] = 1.0
        if i in spatial:
            k = spatial[i]
            outputs[name] = unit_scale(m.voxel_size[k], m.units[k], unitless)
            row[ndim] = m.offset[k] / m.voxel_size[k] - (0.5 if centred else 0.0)
        else:
            outputs[_channel_name(name)] = [1, ""]
        matrix.append(row)
    return {"outputDimensions": outputs, "matrix": matrix}


def source_url(array: ViewArray, base_url: str | None = None, group: bool = False) -> str:
    """Where neuroglancer reads the array (`group`: its OME-Zarr image group): `zarr2://`
    or `zarr3://` and the node's URL."""
    scheme = f"zarr{array.zarr_format}://"
    container = array.container
    node = array.group if group and array.group is not None else array.dataset
    if is_local(container):
        if base_url is None:
            raise InputError("container", f"{container} is local: serve it (view --serve)")
        return f"{scheme}{base_url.rstrip('/')}/{urllib.parse.quote(node)}".rstrip("/")
    protocol = PROTOCOL_ALIASES.get(container.protocol, container.protocol)
    bucket_key = (str(container).split("://", 1)[1].strip("/") + "/" + node).rstrip("/")
    if protocol == "s3":
        options = container.storage_options
        endpoint = (
            options.get("endpoint_url")
            or (options.get("client_kwargs") or {}).get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL", "")
        )
        if endpoint:  # another S3 server than Amazon's: path style on that host
            return f"{scheme}s3+{endpoint.rstrip('/')}/{bucket_key}"
        return f"{scheme}s3://{bucket_key}"
    if protocol == "gs":
        return f"{scheme}gs://{bucket_key}"
    if protocol in ("http", "https"):
        return f"{scheme}{str(container).rstrip('/')}/{node}".rstrip("/")
    raise InputError("container", f"{protocol}:// is not a store neuroglancer can read")


def needs_server(*arrays: ViewArray) -> bool:
    return any(is_local(a.container) for a in arrays)


def state(
    image: ViewArray, mask: ViewArray, base_urls: dict[str, str] | None = None
) -> dict[str, Any]:
    """Neuroglancer's JSON state: world axes at the input's voxel size, centred on it."""
    base_urls = base_urls or {}
    m = image.meta
    # An input shown through its image group: its axes without a unit are neuroglancer's
    # unitless ones, not DaCapo's nm.
    unitless = "" if _group_dims(image) is not None else "nm"
    dims = {
        m.axis_names[i]: unit_scale(m.voxel_size[k], m.units[k], unitless)
        for k, i in enumerate(m.spatial_indices)
    }
    groups = {id(a): _reads_group(a, dims) for a in (image, mask)}
    any_group = any(groups.values())
    shape = m.spatial_shape(image.shape)
    centre = [m.offset[k] / m.voxel_size[k] + shape[k] / 2 for k in range(len(m.spatial_indices))]

    def source(array: ViewArray, base_url: str | None) -> dict[str, Any]:
        if groups[id(array)]:
            return {"url": source_url(array, base_url, group=True)}
        return {
            "url": source_url(array, base_url),
            "transform": transform(array, unitless, centred=any_group),
        }

    return {
        "dimensions": dims,
        "position": centre,
        "crossSectionScale": 1,
        "layers": [
            {
                "type": "image",
                "name": "input",
                "source": [source(image, base_urls.get("input"))],
            },
            {
                "type": "segmentation",
                "name": "mask",
                "source": [source(mask, base_urls.get("output"))],
                "segments": ["1"],
            },
        ],
        "selectedLayer": {"layer": "mask"},
        "layout": "4panel",
    }


def _group_dims(array: ViewArray) -> dict[str, list[Any]] | None:
    return group_dimensions(array.container, array.group) if array.group is not None else None


def _reads_group(array: ViewArray, dims: dict[str, list[Any]]) -> bool:
    """Whether the layer can show `array`'s image group: neuroglancer reads it in the
    view's dimensions (the same axes, each in the same unit; the scales may differ, as
    an input level s1's from its group's s0)."""
    found = _group_dims(array)
    if found is None or set(found) != set(dims):
        return False
    return all(found[name][1] == dims[name][1] for name in dims)


def link(view_state: dict[str, Any]) -> str:
    """The neuroglancer URL whose fragment is the state (url-encoded JSON)."""
    text = json.dumps(view_state, separators=(",", ":"))
    return NEUROGLANCER + urllib.parse.quote(text, safe="")


# -- serving local containers -----------------------------------------------------------


def roots(image: ViewArray, mask: ViewArray) -> dict[str, str]:
    """URL prefix -> local directory: `input` and `output`, each a container."""
    found = {}
    for name, array in (("input", image), ("output", mask)):
        if is_local(array.container):
            found[name] = os.path.realpath(array.container.path)
    return found


class _Handler(SimpleHTTPRequestHandler):
    """Static files of a few roots, with CORS and single byte ranges. Does not emulate:
    multi-range requests, conditional requests, compression."""

    roots: dict[str, str] = {}

    def _target(self, path: str) -> str | None:
        """The file a URL path names, or None: outside every root, or through a link out."""
        parts = [p for p in urllib.parse.unquote(urllib.parse.urlsplit(path).path).split("/") if p]
        if not parts or parts[0] not in self.roots or any(p in (".", "..") for p in parts):
            return None
        root = self.roots[parts[0]]
        target = os.path.realpath(os.path.join(root, *parts[1:]))
        if target != root and not target.startswith(root + os.sep):
            return None
        return target

    def translate_path(self, path: str) -> str:
        target = self._target(path)
        assert target is not None  # send_head answered 404 before
        return target

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header(
            "Access-Control-Expose-Headers", "Content-Range, Content-Length, Content-Encoding, ETag"
        )
        super().end_headers()

    def do_OPTIONS(self) -> None:  # a CORS preflight
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Range, Content-Type")
        self.send_header("Access-Control-Max-Age", "3000")
        self.end_headers()

    def send_head(self) -> Any:
        path = self._target(self.path)
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND, "Not found")
            return None
        header = self.headers.get("Range")
        if header is None or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
        if match is None or match.groups() == ("", ""):
            return super().send_head()  # not one range: the whole file, as RFC 9110 allows
        first, last = match.groups()
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(size - 1, int(last)) if last else size - 1
        if start >= size or start > end:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def serve(
    directories: dict[str, str], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving: call `serve_forever`) for the given roots."""
    handler = type("Handler", (_Handler,), {"roots": dict(directories)})
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise InputError("--port", f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def base_urls(
    server: ThreadingHTTPServer | None, host: str, port: int, names: list[str]
) -> dict[str, str]:
    """The URL of each served root (the server's real port, when it picked one)."""
    if server is not None:
        host, port = server.server_address[:2]  # type: ignore[misc]
    shown = f"[{host}]" if ":" in str(host) else host
    return {name: f"http://{shown}:{port}/{name}" for name in names}


def in_background(server: ThreadingHTTPServer) -> threading.Thread:
    """Serve from a daemon thread (tests, notebooks); `server.shutdown()` stops it."""
    thread = threading.Thread(target=server.serve_forever, name="view-server", daemon=True)
    thread.start()
    return thread
