"""One way of thresholding a zarr array, run in its own process by `run.py`.

Usage: python methods.py METHOD INPUT_CONTAINER OUTPUT_CONTAINER THRESHOLD PROCESSES
Prints one JSON line: {"seconds": ..., "max_rss_mb": ...}. Only the work is timed, not
interpreter start-up or imports. Every method reads `raw` and writes `mask`.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import zarr

BLOCK = 128


def this_worker(src: str, dst: str, t: float, n: int) -> None:
    from threshold_worker.job import JobSpec
    from threshold_worker.local import run_local

    spec = JobSpec(
        input_container=src,
        input_dataset="raw",
        output_container=dst,
        output_dataset="mask",
        threshold=t,
        overwrite=True,
    )
    run_local(spec, workers=n, progress=False)


def dask_array(src: str, dst: str, t: float, n: int) -> None:
    import dask
    import dask.array as da

    x = da.from_zarr(zarr.open_array(src, path="raw", mode="r"))
    with dask.config.set(scheduler="threads", num_workers=n):
        (x > t).astype(np.uint8).to_zarr(dst, component="mask", overwrite=True)


_daisy_arrays: tuple = ()


def _daisy_block(block, src: str, dst: str, t: float) -> None:
    global _daisy_arrays
    from funlib.persistence import open_ds

    if not _daisy_arrays:  # DaCapo's worker opens its arrays once, then loops over blocks
        _daisy_arrays = (open_ds(f"{src}/raw"), open_ds(f"{dst}/mask", mode="r+"))
    inp, out = _daisy_arrays
    out[block.write_roi] = (inp[block.write_roi] > t).astype(np.uint8)


def daisy_worker(src: str, dst: str, t: float, n: int) -> None:
    """DaCapo's threshold post-processing: daisy blocks, funlib.persistence arrays."""
    import functools

    import daisy
    from funlib.geometry import Coordinate, Roi
    from funlib.persistence import open_ds, prepare_ds

    inp = open_ds(f"{src}/raw")
    prepare_ds(
        f"{dst}/mask",
        shape=inp.shape,
        offset=inp.offset,
        voxel_size=inp.voxel_size,
        axis_names=inp.axis_names,
        units=inp.units,
        chunk_shape=inp.chunk_shape,
        dtype=np.uint8,
        mode="w",
    )
    block = Roi((0, 0, 0), Coordinate(BLOCK, BLOCK, BLOCK) * inp.voxel_size)
    task = daisy.Task(
        "threshold",
        total_roi=inp.roi,
        read_roi=block,
        write_roi=block,
        process_function=functools.partial(_daisy_block, src=src, dst=dst, t=t),
        read_write_conflict=False,
        fit="valid",
        max_workers=n,
    )
    assert daisy.run_blockwise([task])


def _blocks(shape: tuple[int, ...]) -> list[tuple[slice, ...]]:
    return [
        (slice(z, z + BLOCK), slice(y, y + BLOCK), slice(x, x + BLOCK))
        for z in range(0, shape[0], BLOCK)
        for y in range(0, shape[1], BLOCK)
        for x in range(0, shape[2], BLOCK)
    ]


def zarr_loop(src: str, dst: str, t: float, n: int) -> None:
    inp = zarr.open_array(src, path="raw", mode="r")
    out = zarr.create_array(
        dst, name="mask", shape=inp.shape, chunks=inp.chunks, dtype="uint8", overwrite=True
    )
    for sl in _blocks(inp.shape):
        out[sl] = (inp[sl] > t).astype(np.uint8)


def tensorstore_loop(src: str, dst: str, t: float, n: int) -> None:
    import tensorstore as ts

    inp = ts.open({"driver": "zarr3", "kvstore": f"file://{src}/raw"}, read=True).result()
    spec = {
        "driver": "zarr3",
        "kvstore": f"file://{dst}/mask",
        "metadata": {
            "shape": list(inp.shape),
            "data_type": "uint8",
            "chunk_grid": {
                "name": "regular",
                "configuration": {"chunk_shape": list(inp.chunk_layout.read_chunk.shape)},
            },
            "codecs": [{"name": "bytes"}, {"name": "zstd", "configuration": {"level": 0}}],
        },
    }
    out = ts.open(spec, create=True, delete_existing=True).result()
    for sl in _blocks(inp.shape):
        out[sl].write((inp[sl].read().result() > t).astype(np.uint8)).result()


def _floor_chunk(args: tuple[str, str, float]) -> None:
    import numcodecs

    src, dst, t = args
    raw = numcodecs.Zstd().decode(Path(src).read_bytes())
    mask = np.greater(np.frombuffer(raw, dtype="<f4"), t).view(np.uint8)
    if mask.any():
        Path(dst).write_bytes(numcodecs.Zstd(level=0).encode(mask))


def floor(src: str, dst: str, t: float, n: int) -> None:
    """The physical floor: read, decode, threshold, encode, write every chunk file."""
    inp = zarr.open_array(src, path="raw", mode="r")
    zarr.create_array(
        dst, name="mask", shape=inp.shape, chunks=inp.chunks, dtype="uint8", overwrite=True
    )
    root_in, root_out = Path(src) / "raw" / "c", Path(dst) / "mask" / "c"
    jobs = []
    for f in root_in.rglob("*"):
        if f.is_file():
            target = root_out / f.relative_to(root_in)
            target.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((str(f), str(target), t))
    with get_context("fork").Pool(n) as pool:
        pool.map(_floor_chunk, jobs, chunksize=8)


METHODS: dict[str, Callable[[str, str, float, int], None]] = {
    "this-worker": this_worker,
    "dask": dask_array,
    "daisy": daisy_worker,
    "zarr-loop": zarr_loop,
    "tensorstore": tensorstore_loop,
    "floor": floor,
}


def main() -> None:
    name, src, dst, t, n = sys.argv[1:6]
    start = time.perf_counter()
    METHODS[name](src, dst, float(t), int(n))
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {"seconds": seconds, "max_rss_mb": max(own, children) / 1024, "pid": os.getpid()}
        )
    )


if __name__ == "__main__":
    main()
