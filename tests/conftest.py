"""Shared fixtures: real zarr containers on disk, a real S3 server on 127.0.0.1, and
helpers that run the CLI the way a user does."""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec

from threshold_worker.commands import main
from threshold_worker.markers import MARKER_DIR
from threshold_worker.metadata import AxisMetadata
from threshold_worker.params import JobParameters

BIN = Path(sys.executable).parent

# zarr.create_array options of the chunk layouts both the direct chunk path (test_chunkio)
# and the chunk format read from metadata JSON (test_chunk_format) are checked on; each
# file adds the layouts only it needs.
ZARR_LAYOUTS: dict[str, dict[str, Any]] = {
    "v3 zstd": dict(zarr_format=3),
    "v3 raw": dict(zarr_format=3, compressors=None),
    "v3 blosc": dict(zarr_format=3, compressors=BloscCodec(cname="lz4", clevel=5)),
    "v3 gzip": dict(zarr_format=3, compressors=GzipCodec(level=3)),
    "v3 big-endian": dict(zarr_format=3, serializer=BytesCodec(endian="big")),
    "v3 v2-keys": dict(zarr_format=3, chunk_key_encoding={"name": "v2", "separator": "."}),
    "v2 zstd": dict(zarr_format=2, compressors=numcodecs.Zstd(level=1)),
    "v2 none": dict(zarr_format=2, compressors=None),
    "v2 big-endian": dict(zarr_format=2, dtype=">f4"),
}


def write_array(
    container: Path | str,
    dataset: str,
    data: np.ndarray,
    chunks: Sequence[int],
    voxel_size: Sequence[int] | None = None,
    offset: Sequence[int] | None = None,
    axis_names: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    zarr_format: int = 3,
    store: Any = None,
    **kwargs: Any,
) -> zarr.Array:
    """An input array with funlib.persistence metadata (when geometry is given)."""
    attrs: dict[str, Any] = {}
    n_spatial = len(voxel_size) if voxel_size is not None else data.ndim
    if voxel_size is not None or axis_names is not None:
        names = (
            axis_names
            or [f"c{i}^" for i in range(data.ndim - n_spatial)] + list("zyx")[3 - n_spatial :]
        )
        meta = AxisMetadata(
            axis_names=tuple(names),
            types=tuple(types or ["channel" if n.endswith("^") else "space" for n in names]),
            voxel_size=tuple(voxel_size or [1] * n_spatial),
            offset=tuple(offset or [0] * n_spatial),
            units=("nm",) * n_spatial,
        )
        attrs = meta.attributes()
    arr = zarr.create_array(
        store if store is not None else str(container),
        name=dataset,
        shape=data.shape,
        chunks=tuple(chunks),
        dtype=data.dtype,
        zarr_format=zarr_format,
        attributes=attrs,
        overwrite=True,
        **kwargs,
    )
    arr[...] = data
    return arr


def blobs(shape: Sequence[int], seed: int = 0, dtype: Any = np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random(shape).astype(dtype)


def expected(data: np.ndarray, threshold: float) -> np.ndarray:
    return (data > threshold).astype(np.uint8)


def assert_thresholded(container: Path | str, dataset: str, data: np.ndarray, t: float) -> None:
    """The output equals numpy's `data > t`, voxel for voxel."""
    np.testing.assert_array_equal(
        zarr.open_array(str(container), path=dataset)[...], expected(data, t)
    )


def marker_blocks(array_dir: Path) -> set[int]:
    """Block ids the done-markers on disk name (`id` or a run `first-last`), read without
    the package's parser; the temporary file of a killed write names none."""
    done: set[int] = set()
    for p in (array_dir / MARKER_DIR).rglob("*"):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", p.name)
        if p.is_file() and m:
            done.update(range(int(m[1]), int(m[2] or m[1]) + 1))
    return done


def files_of(root: Path, folders: bool = False) -> dict[str, bytes | str]:
    """Every file under `root` with its bytes (and, with `folders`, every folder as "dir"):
    taken before and after a refused run, to show that it wrote nothing."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else "dir"
        for p in root.rglob("*")
        if folders or p.is_file()
    }


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out!r}, err={self.err!r})"


def run_cli(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """Run `threshold-worker` in this process, as the console script does."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return CliResult(code, out.getvalue(), err.getvalue())


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
    """Run the installed `threshold-worker` console script in a subprocess."""
    proc = subprocess.run(
        [str(BIN / "threshold-worker"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def job_parameters(container: Path, **kw: Any) -> JobParameters:
    """The job most tests run: `raw` of `container` into its `mask`, threshold 0.5, unless
    `kw` says otherwise."""
    fields: dict[str, Any] = {
        "input_container": str(container),
        "input_dataset": "raw",
        "output_container": str(container),
        "output_dataset": "mask",
        "threshold": 0.5,
    }
    return JobParameters(**{**fields, **kw})


def io_args(ic: Any, id_: str, oc: Any, od: str, th: float | str) -> list[str]:
    return ["-ic", str(ic), "-id", id_, "-oc", str(oc), "-od", od, "-th", str(th)]


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 3-d float32 input with anisotropic voxels and an offset."""
    data = blobs((40, 48, 56), seed=1)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (8, 16, 16), voxel_size=(8, 4, 4), offset=(80, 40, 0))
    return container, data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    """A real S3 HTTP server (moto) on 127.0.0.1 with one bucket; yields the AWS_* env."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket="lab-data")
    try:
        yield env
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
