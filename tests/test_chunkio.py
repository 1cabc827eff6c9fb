"""The direct chunk path writes the same keys and bytes as zarr-python, or steps aside."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BytesCodec, GzipCodec, ShardingCodec, TransposeCodec, ZstdCodec
from zarr.storage import LocalStore

from conftest import (
    ZARR_LAYOUTS,
    assert_thresholded,
    blobs,
    expected,
    io_args,
    run_cli,
    write_array,
)
from threshold_worker.chunk_path import pipeline_survives_fork
from threshold_worker.chunkio import ChunkStore, DirectBlockIO
from threshold_worker.errors import JobError
from threshold_worker.job import Job, resolve
from threshold_worker.params import JobParameters
from threshold_worker.worker import BlockWorker


def rewrite_job(container: Path, dataset: str, **spec) -> Job:
    """The job thresholding `raw` into `dataset` of the same container, allowed to write
    over what it holds (`overwrite`), without the output's ownership rules: those are
    tested in test_ownership.py; here only the chunk-level result matters."""
    return resolve(
        JobParameters(
            input_container=str(container),
            input_dataset="raw",
            output_container=str(container),
            output_dataset=dataset,
            overwrite=True,  # resolve, then bypass the claim for an existing array
            **spec,
        )
    )


def threshold_with(container: Path, dataset: str, direct: bool, **spec) -> BlockWorker:
    """Threshold into `dataset`, writing over the chunks it holds (as a resumed or
    rewritten block does)."""
    job = rewrite_job(container, dataset, **spec)
    if not (container / dataset).exists():
        job.prepare()
    worker = BlockWorker(job, direct=direct)
    assert (worker.direct is not None) == direct
    worker.process(range(job.plan.total_blocks))
    return worker


def chunks_of(array_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(array_dir)): p.read_bytes()
        for p in sorted(array_dir.rglob("*"))
        if p.is_file()
        and not any(part.startswith(".threshold") for part in p.relative_to(array_dir).parts)
        and not p.name.startswith((".z", "zarr.json"))
    }


INPUTS = {
    **ZARR_LAYOUTS,
    "v2 blosc": dict(zarr_format=2, compressors=numcodecs.Blosc(cname="zstd", clevel=3, shuffle=2)),
    "v2 lz4": dict(zarr_format=2, compressors=numcodecs.LZ4()),
}


@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("roi", ["whole", "partial"])
def test_direct_and_zarr_paths_agree_chunk_by_chunk(tmp_path, name, roi):
    kwargs = dict(INPUTS[name])
    dtype = kwargs.pop("dtype", "<f4")
    data = blobs((36, 40, 44), seed=31).astype(dtype)  # not a multiple of the chunks: edge chunks
    data[:12] = 0.0  # whole zero chunks: deleted, not written
    container = tmp_path / "a.zarr"
    write_array(container, "raw", data, (8, 16, 16), **kwargs)
    spec = dict(threshold=0.5)
    if roi == "partial":  # blocks that cover only part of their border chunks
        spec.update(roi_offset=(3, 5, 7), roi_shape=(30, 33, 30))
    threshold_with(container, "direct", True, **spec)
    threshold_with(container, "zarr", False, **spec)
    direct, via_zarr = chunks_of(container / "direct"), chunks_of(container / "zarr")
    assert direct.keys() == via_zarr.keys()
    assert direct == via_zarr
    out = zarr.open_array(str(container), path="direct")[...]
    want = expected(data, 0.5)
    if roi == "partial":
        inside = np.zeros_like(want)
        inside[3:33, 5:38, 7:37] = want[3:33, 5:38, 7:37]
        want = inside
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("direct_first", [True, False])
def test_rerun_with_another_threshold_rewrites_and_deletes_the_same_way(tmp_path, direct_first):
    data = blobs((32, 32, 32), seed=32)
    container = tmp_path / "b.zarr"
    write_array(container, "raw", data, (16, 16, 16))
    for t in (0.1, 0.999):  # the second run leaves most chunks empty: they must go
        threshold_with(container, "a", direct_first, threshold=t)
        threshold_with(container, "b", not direct_first, threshold=t)
    assert chunks_of(container / "a") == chunks_of(container / "b")
    assert_thresholded(container, "a", data, 0.999)


def test_missing_input_chunks_read_as_fill_value(tmp_path):
    container = tmp_path / "f.zarr"
    arr = zarr.create_array(
        str(container), name="raw", shape=(32, 32), chunks=(16, 16), dtype="f4", fill_value=0.75
    )
    arr[:16, :16] = 0.0  # one chunk written; the other three are the fill value, 0.75 > 0.5
    threshold_with(container, "direct", True, threshold=0.5)
    threshold_with(container, "zarr", False, threshold=0.5)
    assert chunks_of(container / "direct") == chunks_of(container / "zarr")
    assert zarr.open_array(str(container), path="direct")[...].sum() == 3 * 256


def test_v2_fill_value_null_reads_as_zarr_reads_it(tmp_path):
    """zarr v2's `"fill_value": null`: zarr-python reads missing chunks as 0."""
    container = tmp_path / "n.zarr"
    arr = zarr.create_array(
        str(container),
        name="raw",
        shape=(32, 32),
        chunks=(16, 16),
        dtype="f4",
        zarr_format=2,
        fill_value=None,
    )
    arr[:16, :16] = 0.75  # one chunk written, three missing
    for threshold in (0.5, -0.5):  # missing chunks are 0: below, then above the threshold
        for name, direct in (("direct", True), ("zarr", False)):
            threshold_with(container, name, direct, threshold=threshold)
        assert chunks_of(container / "direct") == chunks_of(container / "zarr")
        got = zarr.open_array(str(container), path="direct")[...]
        np.testing.assert_array_equal(got, expected(arr[...], threshold))


def test_channels(tmp_path):
    data = blobs((2, 20, 24, 28), seed=33)
    container = tmp_path / "c.zarr"
    write_array(
        container, "raw", data, (1, 8, 8, 8), voxel_size=(4, 4, 4), axis_names=["c^", "z", "y", "x"]
    )
    threshold_with(container, "direct", True, threshold=0.5)
    threshold_with(container, "zarr", False, threshold=0.5)
    assert chunks_of(container / "direct") == chunks_of(container / "zarr")


def test_unusual_codec_chains_fall_back_to_zarr(tmp_path):
    data = blobs((16, 16, 16), seed=34)
    container = tmp_path / "u.zarr"
    transposed = write_array(
        container, "raw", data, (8, 8, 8), filters=[TransposeCodec(order=(2, 1, 0))]
    )
    plain = zarr.create_array(
        str(container), name="out", shape=(16, 16, 16), chunks=(8, 8, 8), dtype="u1"
    )
    sharded_gzip = zarr.create_array(
        str(container),
        name="sh",
        shape=(16, 16, 16),
        chunks=(4, 4, 4),
        shards=(8, 8, 8),
        dtype="u1",
        compressors=GzipCodec(),
    )
    gzip_out = zarr.create_array(
        str(container),
        name="gz",
        shape=(16, 16, 16),
        chunks=(8, 8, 8),
        dtype="u1",
        compressors=GzipCodec(),
    )
    assert DirectBlockIO.maybe(transposed, plain) is None
    source = zarr.open_array(str(container), path="out")
    assert DirectBlockIO.maybe(source, sharded_gzip) is None  # gzip inner chunks: decode only
    assert DirectBlockIO.maybe(sharded_gzip, plain) is None  # sharded inputs go through zarr
    assert DirectBlockIO.maybe(source, gzip_out) is None
    assert DirectBlockIO.maybe(source, plain) is not None
    worker = threshold_with(container, "mask", False, threshold=0.5)
    assert DirectBlockIO.maybe(worker.job.input, worker.output) is None  # transposed input
    assert_thresholded(container, "mask", data, 0.5)


def test_zstd_output_levels_match(tmp_path):
    data = blobs((16, 16, 16), seed=35)
    container = tmp_path / "z.zarr"
    write_array(container, "raw", data, (8, 8, 8))
    for name in ("d", "z"):
        zarr.create_array(
            str(container),
            name=name,
            shape=data.shape,
            chunks=(8, 8, 8),
            dtype="u1",
            compressors=ZstdCodec(level=7, checksum=True),
            attributes={},
        )
    for name, direct in (("d", True), ("z", False)):
        threshold_with(container, name, direct, threshold=0.3)
    assert chunks_of(container / "d") == chunks_of(container / "z")


@pytest.mark.parametrize("compressors", [None, "default"], ids=["raw-output", "zstd-output"])
def test_partial_border_chunks_of_existing_outputs_are_merged_the_same_way(tmp_path, compressors):
    data = blobs((32, 40, 40), seed=36)
    container = tmp_path / "m.zarr"
    write_array(container, "raw", data, (16, 16, 16))
    kwargs = {} if compressors == "default" else {"compressors": None}
    for name in ("d", "z"):
        out = zarr.create_array(
            str(container), name=name, shape=data.shape, chunks=(16, 16, 16), dtype="u1", **kwargs
        )
        out[...] = 1  # existing content outside the roi must survive the merge
    for name, direct in (("d", True), ("z", False)):
        threshold_with(
            container, name, direct, threshold=0.5, roi_offset=(5, 3, 7), roi_shape=(20, 30, 25)
        )
    assert chunks_of(container / "d") == chunks_of(container / "z")
    got = zarr.open_array(str(container), path="d")[...]
    want = np.ones_like(got)
    want[5:25, 3:33, 7:32] = expected(data[5:25, 3:33, 7:32], 0.5)
    np.testing.assert_array_equal(got, want)


def _sharded(layout: str, path: Path, name: str, shape: tuple[int, ...]) -> None:
    if layout == "index-at-start":
        serializer = ShardingCodec(
            chunk_shape=(8, 8, 8), index_location="start", codecs=[BytesCodec(), ZstdCodec(level=2)]
        )
        zarr.create_array(
            str(path),
            name=name,
            shape=shape,
            dtype="u1",
            chunks=(16, 16, 32),
            serializer=serializer,
            compressors=None,
        )
    else:
        kwargs = {"compressors": None} if layout == "raw-inner" else {}
        zarr.create_array(
            str(path),
            name=name,
            shape=shape,
            dtype="u1",
            chunks=(8, 8, 8),
            shards=(16, 16, 32),
            **kwargs,
        )


@pytest.mark.parametrize("layout", ["default", "index-at-start", "raw-inner"])
@pytest.mark.parametrize("roi", ["whole", "cut"])
def test_sharded_outputs_match_zarr_byte_for_byte(tmp_path, layout, roi):
    data = blobs((40, 36, 72), seed=37)  # edge shards on every axis
    data[:16] = 0.0  # whole empty shards: deleted
    container = tmp_path / "s.zarr"
    write_array(container, "raw", data, (8, 12, 24))
    for name in ("d", "z"):
        _sharded(layout, container, name, data.shape)
    spec = dict(threshold=0.5)
    if roi == "cut":
        spec.update(roi_offset=(0, 0, 0), roi_shape=(40, 30, 72))  # cuts the y-edge shards
    direct = threshold_with(container, "d", True, **spec)
    threshold_with(container, "z", False, **spec)
    assert direct.direct is not None and direct.direct.targets[0].shards is not None
    assert chunks_of(container / "d") == chunks_of(container / "z")
    got = zarr.open_array(str(container), path="d")[...]
    want = expected(data, 0.5)
    if roi == "cut":
        want[:, 30:] = 0
    np.testing.assert_array_equal(got, want)


def test_a_codec_around_the_shard_falls_back(tmp_path):
    container = tmp_path / "w.zarr"
    source = write_array(container, "raw", blobs((16, 16, 16)), (8, 8, 8))
    wrapped = zarr.create_array(
        str(container),
        name="w",
        shape=(16, 16, 16),
        dtype="u1",
        chunks=(16, 16, 16),
        serializer=ShardingCodec(chunk_shape=(8, 8, 8)),
    )  # + zstd around it
    assert DirectBlockIO.maybe(source, wrapped) is None


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-file", "renamed-file"])
def test_local_writes_create_replace_and_leave_nothing_behind(tmp_path, unnamed):
    """Both ways of writing a chunk atomically: an unnamed file linked in place (Linux
    O_TMPFILE), and a hidden temporary name renamed over the key (other file systems)."""
    store = ChunkStore(LocalStore(str(tmp_path)))
    assert store.files is not None
    store.files._unnamed = unnamed and hasattr(os, "O_TMPFILE")
    old = os.umask(0o002)  # a lab's group-shared folder: chunks follow the umask, as zarr's do
    try:
        store.put_many([("a/c/0/0", b"first"), ("a/c/0/1", b"x" * 3_000_000)])
        store.put_many([("a/c/0/0", b"second")], deletes=["a/c/0/1"])
    finally:
        os.umask(old)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["a/c/0/0"]  # no temporary file, the deleted key gone
    assert (tmp_path / "a/c/0/0").read_bytes() == b"second"
    assert (tmp_path / "a/c/0/0").stat().st_mode & 0o777 == 0o664
    assert store.files._unnamed == (unnamed and hasattr(os, "O_TMPFILE"))


def test_a_file_system_without_unnamed_files_falls_back_to_renames(tmp_path, monkeypatch):
    """NFS and many FUSE file systems refuse O_TMPFILE (EOPNOTSUPP); none is mounted here,
    so os.open is made to refuse it the same way."""
    if not hasattr(os, "O_TMPFILE"):
        pytest.skip("no O_TMPFILE on this platform: the rename path is the only one")
    real_open = os.open

    def no_tmpfile(path, flags, *args, **kwargs):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_tmpfile)
    store = ChunkStore(LocalStore(str(tmp_path)))
    store.put_many([("c/0/0", b"data")])
    assert store.files is not None and store.files._unnamed is False
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["0"]
    assert (tmp_path / "c/0/0").read_bytes() == b"data"


# -- THRESHOLD_CHUNK_PATH and zarr's codec pipelines ----------------------------------------

ZARRS = "zarrs.ZarrsCodecPipeline"


def default_worker(container: Path, dataset: str, **spec) -> BlockWorker:
    """A worker as every run makes it (`direct=True`): the knob alone decides."""
    job = rewrite_job(container, dataset, **spec)
    job.prepare()
    return BlockWorker(job)


def test_chunk_path_zarr_leaves_every_chunk_to_zarrs_pipeline(tmp_path, monkeypatch):
    data = blobs((24, 24, 24), seed=40)
    container = tmp_path / "k.zarr"
    write_array(container, "raw", data, (8, 8, 8))
    threshold_with(container, "direct", True, threshold=0.5)
    monkeypatch.setenv("THRESHOLD_CHUNK_PATH", "zarr")
    worker = default_worker(container, "zarr", threshold=0.5)
    assert worker.direct is None
    worker.process(range(worker.job.plan.total_blocks))
    with ThreadPoolExecutor(1) as pool:  # worker threads (object stores) ask again
        assert pool.submit(lambda: worker.direct).result() is None
    assert chunks_of(container / "zarr") == chunks_of(container / "direct")
    assert_thresholded(container, "zarr", data, 0.5)


@pytest.mark.parametrize("value", [None, "", "direct", " Direct "])
def test_chunk_path_direct_is_the_default_where_the_direct_path_covers_the_layout(
    tmp_path, monkeypatch, value
):
    if value is None:
        monkeypatch.delenv("THRESHOLD_CHUNK_PATH", raising=False)
    else:
        monkeypatch.setenv("THRESHOLD_CHUNK_PATH", value)
    container = tmp_path / "k.zarr"
    write_array(container, "raw", blobs((16, 16, 16), seed=41), (8, 8, 8))
    assert default_worker(container, "mask").direct is not None
    transposed = tmp_path / "t.zarr"
    write_array(
        transposed,
        "raw",
        blobs((16, 16, 16), seed=41),
        (8, 8, 8),
        filters=[TransposeCodec(order=(2, 1, 0))],
    )
    assert default_worker(transposed, "mask").direct is None  # not covered: zarr it is


def test_an_unknown_chunk_path_stops_the_run_before_it_writes(tmp_path, monkeypatch):
    container = tmp_path / "k.zarr"
    write_array(container, "raw", blobs((16, 16, 16), seed=42), (8, 8, 8))
    monkeypatch.setenv("THRESHOLD_CHUNK_PATH", "fast")
    with pytest.raises(JobError, match="THRESHOLD_CHUNK_PATH: 'fast' is not one of direct"):
        default_worker(container, "mask")  # not taken for "covered, so zarr"
    result = run_cli("run", *io_args(container, "raw", container, "out", 0.5), "-n", "2")
    assert result.code == 2
    assert "THRESHOLD_CHUNK_PATH: 'fast' is not one of direct, zarr" in result.err
    assert not (container / "out").exists()


def test_zarrs_reads_the_input_and_zarr_python_writes_the_guarded_output(tmp_path, monkeypatch):
    from zarrs import ZarrsCodecPipeline

    data = blobs((24, 24, 24), seed=43)
    container = tmp_path / "k.zarr"
    write_array(container, "raw", data, (8, 8, 8))
    threshold_with(container, "direct", True, threshold=0.5)
    monkeypatch.setenv("THRESHOLD_CHUNK_PATH", "zarr")
    assert pipeline_survives_fork()
    with zarr.config.set({"codec_pipeline.path": ZARRS}):
        assert not pipeline_survives_fork()
        worker = default_worker(container, "zarrs", threshold=0.5)
        assert type(worker.job.input.async_array.codec_pipeline) is ZarrsCodecPipeline
        # zarrs takes only zarr's own stores; the output's symlink guard is not one, so
        # zarr falls back to its own pipeline for the writes.
        store = worker.output.store_path.store
        with pytest.raises(NotImplementedError, match="GuardedStore"):
            ZarrsCodecPipeline.from_array_metadata_and_store(worker.output.metadata, store)
        assert type(worker.output.async_array.codec_pipeline) is not ZarrsCodecPipeline
        worker.process(range(worker.job.plan.total_blocks))
    assert chunks_of(container / "zarrs") == chunks_of(container / "direct")


@pytest.mark.timeout(120)
def test_a_run_with_the_zarrs_pipeline_spawns_its_processes(tmp_path):
    """zarrs hangs in forked children on blocks of several chunks (zarrs-python issue 171):
    with it, a run spawns its processes and finishes. (Forked, this run hangs.)"""
    data = blobs((32, 32, 32), seed=44)
    container = tmp_path / "k.zarr"
    write_array(container, "raw", data, (8, 8, 8))
    env = {**os.environ, "THRESHOLD_CHUNK_PATH": "zarr", "ZARR_CODEC_PIPELINE__PATH": ZARRS}
    args = [*io_args(container, "raw", container, "mask", 0.5), "-n", "2", "--block-shape=16,16,16"]
    entry = "from threshold_worker.commands import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", entry, "run", *args], env=env, capture_output=True, timeout=100
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert_thresholded(container, "mask", data, 0.5)
