"""One way of thresholding a zarr array, run in its own process by `run.py`.

Usage: python methods.py METHOD INPUT_CONTAINER OUTPUT_CONTAINER THRESHOLD PROCESSES SCENARIO
Prints one JSON line: {"seconds": ..., "max_rss_mb": ...}. Only the work is timed: the
method's modules are imported before the clock starts. Every method reads `raw` and writes
`mask`; the scenario decides the output layout (zarr v3 chunks, zarr v2 chunks, or v3
shards).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path

import numcodecs
import numpy as np
import zarr

BLOCK = 128
SHARD = (128, 128, 128)


def output_layout(scenario: str, inp: zarr.Array) -> dict:
    if scenario == "sharded":
        return {"zarr_format": 3, "chunks": inp.chunks, "shards": SHARD}
    return {"zarr_format": inp.metadata.zarr_format, "chunks": inp.chunks}


def create_output(dst: str, inp: zarr.Array, scenario: str) -> zarr.Array:
    return zarr.create_array(
        dst,
        name="mask",
        shape=inp.shape,
        dtype="uint8",
        overwrite=True,
        **output_layout(scenario, inp),
    )


#: Levels of the pyramid table (issue 14): s1..s4 of the mask, in the same pass.
PYRAMID_LEVELS = 4

#: zarr's own name for the Rust pipeline of PyPI `zarrs`.
ZARRS_PIPELINE = "zarrs.ZarrsCodecPipeline"


def this_worker(
    src: str,
    dst: str,
    t: float,
    n: int,
    scenario: str,
    chunk_path: str | None = None,
    pipeline: str | None = None,
    pyramid: int | None = None,
) -> None:
    """`threshold-worker run`; `chunk_path` sets THRESHOLD_CHUNK_PATH, `pipeline` zarr's
    codec pipeline, for this process and (through the environment) its workers; `pyramid`
    writes an OME-Zarr image (0: s0 alone) with that many levels."""
    from threshold_worker.local import run_local
    from threshold_worker.params import JobParameters

    if chunk_path is not None:
        os.environ["THRESHOLD_CHUNK_PATH"] = chunk_path
    if pipeline is not None:
        os.environ["ZARR_CODEC_PIPELINE__PATH"] = pipeline
        zarr.config.set({"codec_pipeline.path": pipeline})

    spec = JobParameters(
        input_container=src,
        input_dataset="raw",
        output_container=dst,
        output_dataset="mask",
        threshold=t,
        overwrite=True,
        output_shards=SHARD if scenario == "sharded" else None,
        ome_zarr=pyramid is not None,
        pyramid=pyramid or 0,
    )
    run_local(spec, workers=n, progress=False)


def dask_array(src: str, dst: str, t: float, n: int, scenario: str) -> None:
    import dask
    import dask.array as da

    inp = zarr.open_array(src, path="raw", mode="r")
    out = create_output(dst, inp, scenario)
    chunks = out.shards or out.chunks  # dask writes whole shards, or it would race on them
    x = da.from_zarr(inp).rechunk(chunks)
    with dask.config.set(scheduler="threads", num_workers=n):
        (x > t).astype(np.uint8).to_zarr(out)


_daisy_arrays: tuple = ()


def _daisy_block(block, src: str, dst: str, t: float) -> None:
    global _daisy_arrays
    from funlib.persistence import open_ds

    if not _daisy_arrays:  # DaCapo's worker opens its arrays once, then loops over blocks
        _daisy_arrays = (open_ds(f"{src}/raw"), open_ds(f"{dst}/mask", mode="r+"))
    inp, out = _daisy_arrays
    out[block.write_roi] = (inp[block.write_roi] > t).astype(np.uint8)


def daisy_worker(src: str, dst: str, t: float, n: int, scenario: str) -> None:
    """DaCapo's threshold post-processing: daisy blocks, funlib.persistence arrays."""
    import daisy
    from funlib.geometry import Coordinate, Roi
    from funlib.persistence import open_ds

    inp = open_ds(f"{src}/raw")
    out = create_output(dst, zarr.open_array(src, path="raw", mode="r"), scenario)
    out.attrs.put(zarr.open_array(src, path="raw", mode="r").attrs.asdict())
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


#: A DaCapo-style threshold sweep: the thresholds its validation enumerates.
SWEEP = [round(0.1 * i, 1) for i in range(1, 10)]


def sweep_output(dst: str, value: float) -> str:
    """Where a one-threshold-per-run method writes threshold `value` of the sweep."""
    return f"{dst}/threshold_{value!r}.zarr"


def sweep_one_pass(src: str, dst: str, t: float, n: int, scenario: str) -> None:
    """This worker, every threshold of the sweep in one pass (`-th 0.1,...,0.9`)."""
    from threshold_worker.local import run_local
    from threshold_worker.params import JobParameters

    spec = JobParameters(
        input_container=src,
        input_dataset="raw",
        output_container=dst,
        output_dataset="threshold_{threshold}",
        thresholds=SWEEP,
        overwrite=True,
    )
    run_local(spec, workers=n, progress=False)


def sweep_separate(src: str, dst: str, t: float, n: int, scenario: str) -> None:
    """This worker, one run per threshold of the sweep (what DaCapo's loop does today)."""
    for value in SWEEP:
        this_worker(src, sweep_output(dst, value), value, n, scenario)


def sweep_daisy(src: str, dst: str, t: float, n: int, scenario: str) -> None:
    """DaCapo's daisy worker, one run per threshold of the sweep."""
    global _daisy_arrays
    for value in SWEEP:
        _daisy_arrays = ()
        daisy_worker(src, sweep_output(dst, value), value, n, scenario)


def _blocks(shape: tuple[int, ...]) -> list[tuple[slice, ...]]:
    return [
        (slice(z, z + BLOCK), slice(y, y + BLOCK), slice(x, x + BLOCK))
        for z in range(0, shape[0], BLOCK)
        for y in range(0, shape[1], BLOCK)
        for x in range(0, shape[2], BLOCK)
    ]


def zarr_loop(src: str, dst: str, t: float, n: int, scenario: str) -> None:
    inp = zarr.open_array(src, path="raw", mode="r")
    out = create_output(dst, inp, scenario)
    for sl in _blocks(inp.shape):
        out[sl] = (inp[sl] > t).astype(np.uint8)


def tensorstore_loop(src: str, dst: str, t: float, n: int, scenario: str) -> None:
    import tensorstore as ts

    z = zarr.open_array(src, path="raw", mode="r")
    v2 = z.metadata.zarr_format == 2
    inp = ts.open(
        {"driver": "zarr" if v2 else "zarr3", "kvstore": f"file://{src}/raw"}, read=True
    ).result()
    chunk = list(z.chunks)
    if v2:
        metadata = {
            "shape": list(z.shape),
            "chunks": chunk,
            "dtype": "|u1",
            "compressor": {"id": "zstd", "level": 0},
            "fill_value": 0,
        }
    else:
        inner = [{"name": "bytes"}, {"name": "zstd", "configuration": {"level": 0}}]
        codecs = inner
        grid = chunk
        if scenario == "sharded":
            codecs = [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": chunk,
                        "codecs": inner,
                        "index_location": "end",
                        "index_codecs": [
                            {"name": "bytes", "configuration": {"endian": "little"}},
                            {"name": "crc32c"},
                        ],
                    },
                }
            ]
            grid = list(SHARD)
        metadata = {
            "shape": list(z.shape),
            "data_type": "uint8",
            "codecs": codecs,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": grid}},
        }
    out = ts.open(
        {
            "driver": "zarr" if v2 else "zarr3",
            "kvstore": f"file://{dst}/mask",
            "metadata": metadata,
        },
        create=True,
        delete_existing=True,
    ).result()
    for sl in _blocks(z.shape):
        out[sl].write((inp[sl].read().result() > t).astype(np.uint8)).result()


#: (decoder, encoder, dtype, reused (raw, values, mask) buffers or None), set before the fork.
_floor_codecs: tuple = ()


def _floor_chunk(args: tuple[str, list[tuple[str, float]]]) -> None:
    """One input chunk read and decoded once, then a mask per (output file, threshold)."""
    src, outputs = args
    decode, encode, dtype, buffers = _floor_codecs
    if buffers is None:
        values = np.frombuffer(decode.decode(Path(src).read_bytes()), dtype=dtype)
        mask = np.empty(values.shape, np.uint8)
    else:
        raw, values, mask = buffers
        with open(src, "rb", buffering=0) as f:
            decode.decode(raw[: f.readinto(raw)], out=values)
    for dst, t in outputs:
        np.greater(values, t, out=mask.view(bool))
        if mask.any():
            Path(dst).write_bytes(encode.encode(mask))


def floor(
    src: str,
    dst: str,
    t: float,
    n: int,
    scenario: str,
    reuse: bool = False,
    sweep: list[float] | None = None,
) -> None:
    """The physical floor: read, decode, threshold, encode, write every chunk file, with
    nothing else. For a sharded output the floor is taken as the unsharded one (assembling
    a shard adds only an index). With `reuse`, decoded values and masks go into buffers kept
    from chunk to chunk (a fresh megabyte per chunk costs page faults). With `sweep`, each
    decoded chunk gives a mask per threshold, into `dst/threshold_<t>.zarr`."""
    if sweep is not None:
        _floor_pass(src, [(sweep_output(dst, v), v) for v in sweep], n, reuse)
    else:
        _floor_pass(src, [(dst, t)], n, reuse)


def sweep_floor_separate(src: str, dst: str, t: float, n: int, scenario: str) -> None:
    """The physical floor, one pass per threshold of the sweep."""
    for value in SWEEP:
        floor(src, sweep_output(dst, value), value, n, scenario, reuse=True)


def _floor_pass(src: str, outputs: list[tuple[str, float]], n: int, reuse: bool) -> None:
    global _floor_codecs
    inp = zarr.open_array(src, path="raw", mode="r")
    md = inp.metadata
    v2 = md.zarr_format == 2
    for dst, _ in outputs:
        zarr.create_array(
            dst,
            name="mask",
            shape=inp.shape,
            chunks=inp.chunks,
            dtype="uint8",
            zarr_format=md.zarr_format,
            overwrite=True,
        )
    if v2:
        decode, dtype = md.compressor, np.dtype(md.dtype.to_native_dtype())
        root_in, roots_out = Path(src) / "raw", [Path(d) / "mask" for d, _ in outputs]
        files = [f for f in root_in.iterdir() if not f.name.startswith(".")]
    else:
        decode, dtype = numcodecs.Zstd(), np.dtype("<f4")
        root_in, roots_out = Path(src) / "raw" / "c", [Path(d) / "mask" / "c" for d, _ in outputs]
        files = [f for f in root_in.rglob("*") if f.is_file()]
    buffers = None
    if reuse:
        voxels = math.prod(inp.chunks)
        buffers = (np.empty(4 << 20, np.uint8), np.empty(voxels, dtype), np.empty(voxels, np.uint8))
    _floor_codecs = (decode, numcodecs.Zstd(level=0), dtype, buffers)
    jobs = []
    for f in files:
        targets = []
        for root_out, (_, t) in zip(roots_out, outputs, strict=True):
            target = root_out / f.relative_to(root_in)
            target.parent.mkdir(parents=True, exist_ok=True)
            targets.append((str(target), t))
        jobs.append((str(f), targets))
    with get_context("fork").Pool(n) as pool:
        pool.map(_floor_chunk, jobs, chunksize=8)


METHODS: dict[str, Callable[[str, str, float, int, str], None]] = {
    "this-worker": this_worker,
    "this-worker-direct": functools.partial(this_worker, chunk_path="direct"),
    "this-worker-zarr": functools.partial(this_worker, chunk_path="zarr"),
    "this-worker-zarrs": functools.partial(this_worker, chunk_path="zarr", pipeline=ZARRS_PIPELINE),
    "dask": dask_array,
    "daisy": daisy_worker,
    "zarr-loop": zarr_loop,
    "tensorstore": tensorstore_loop,
    "floor": floor,
    "floor-reuse": functools.partial(floor, reuse=True),
    "sweep": sweep_one_pass,
    "sweep-separate": sweep_separate,
    "ome": functools.partial(this_worker, pyramid=0),
    "pyramid": functools.partial(this_worker, pyramid=PYRAMID_LEVELS),
    "sweep-daisy": sweep_daisy,
    "sweep-floor": functools.partial(floor, reuse=True, sweep=SWEEP),
    "sweep-floor-separate": sweep_floor_separate,
}
#: Imported before the clock starts, so that no method is charged for its imports (dask and
#: funlib.persistence take 0.25-0.35 s to import, this worker 0.09 s, tensorstore 0.01 s).
IMPORTS: dict[str, tuple[str, ...]] = {
    "this-worker": ("threshold_worker.job", "threshold_worker.local"),
    "this-worker-direct": ("threshold_worker.job", "threshold_worker.local"),
    "this-worker-zarr": ("threshold_worker.job", "threshold_worker.local"),
    "this-worker-zarrs": ("threshold_worker.job", "threshold_worker.local", "zarrs"),
    "dask": ("dask", "dask.array"),
    "daisy": ("daisy", "funlib.geometry", "funlib.persistence"),
    "tensorstore": ("tensorstore",),
    "sweep": ("threshold_worker.job", "threshold_worker.local"),
    "sweep-separate": ("threshold_worker.job", "threshold_worker.local"),
    "ome": ("threshold_worker.job", "threshold_worker.local"),
    "pyramid": ("threshold_worker.job", "threshold_worker.local", "threshold_worker.pyramid"),
    "sweep-daisy": ("daisy", "funlib.geometry", "funlib.persistence"),
}


def peak_rss_mb() -> float:
    """Peak resident memory of this process or any of its worker processes.

    This process's own peak is read from /proc (VmHWM) where there is one: getrusage keeps
    the peak of the process that started us across exec, which would charge every method
    with whatever memory `run.py` used.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                own = int(line.split()[1])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def main() -> None:
    name, src, dst, t, n, scenario = sys.argv[1:7]
    for module in IMPORTS.get(name, ()):
        importlib.import_module(module)
    start = time.perf_counter()
    METHODS[name](src, dst, float(t), int(n), scenario)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "max_rss_mb": peak_rss_mb(), "pid": os.getpid()}))


if __name__ == "__main__":
    main()
