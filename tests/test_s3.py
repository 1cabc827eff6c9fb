"""Containers on an object store: a real S3 HTTP server (moto) on 127.0.0.1.

Credentials and the endpoint come from AWS_* environment variables, as they would from a
Kubernetes Secret.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from upath import UPath

from conftest import blobs, expected, io_args, run_cli, write_array
from threshold_worker import InputError, LocalArrayIdentifier, ZarrArray
from threshold_worker.storage import open_store
from threshold_worker.store import LocalArrayStore


@pytest.fixture
def s3_volume(s3_server, request):
    url = f"s3://lab-data/{request.node.name}/in.zarr"
    data = blobs((32, 40, 48), seed=21)
    write_array(
        None,
        "raw",
        data,
        (16, 16, 16),
        voxel_size=(8, 4, 4),
        offset=(16, 0, 0),
        store=open_store(UPath(url)),
    )
    return url, data


def test_run_on_s3_matches_numpy_and_resumes(s3_volume):
    url, data = s3_volume
    args = io_args(url, "raw", url, "mask", 0.5)
    first = run_cli("run", *args, "-n", "2", "--block-shape", "16,16,16")
    assert first.code == 0, first
    assert "3 already done" not in first.out
    out = zarr.open_array(open_store(UPath(url), read_only=True), path="mask", mode="r")
    np.testing.assert_array_equal(out[...], expected(data, 0.5))
    assert out.attrs["voxel_size"] == [8, 4, 4] and out.attrs["offset"] == [16, 0, 0]
    again = run_cli("run", *args, "-n", "1", "--block-shape", "16,16,16")
    assert "0 processed, 18 already done, 18 total" in again.out


def test_start_worker_shards_on_s3(s3_volume):
    url, data = s3_volume
    args = io_args(url, "raw", url, "mask", 0.25)
    prep = run_cli("prepare", *args, "--partitions", "3")
    assert prep.code == 0, prep
    for shard in range(3):
        result = run_cli("start-worker", *args, "--partition", str(shard), "--partitions", "3")
        assert result.code == 0, result
    out = zarr.open_array(open_store(UPath(url), read_only=True), path="mask", mode="r")
    np.testing.assert_array_equal(out[...], expected(data, 0.25))


def test_missing_bucket_path_is_bad_input(s3_server):
    result = run_cli(
        "plan", *io_args("s3://lab-data/none.zarr", "raw", "s3://lab-data/o.zarr", "m", 0.5)
    )
    assert result.code == 2
    assert "input_container" in result.err and "does not exist" in result.err


def test_array_store_on_s3(s3_server):
    store = LocalArrayStore("s3://lab-data/runs")
    pred = store.validation_prediction_array("run1", 10, "val")
    assert str(pred.container) == "s3://lab-data/runs/run1/validation.zarr"
    from funlib.geometry import Coordinate, Roi

    array = ZarrArray.create_from_array_identifier(
        pred, ["z", "y", "x"], Roi((0, 0, 0), (16, 16, 16)), None, Coordinate(1, 1, 1), np.float32
    )
    array[array.roi] = np.ones((16, 16, 16), np.float32)
    again = ZarrArray.open_from_array_identifier(LocalArrayIdentifier(pred.container, pred.dataset))
    assert again[again.roi].sum() == 16**3
    store.remove(pred)
    with pytest.raises(InputError, match="no array"):
        ZarrArray.open_from_array_identifier(pred)


def test_output_bucket_that_does_not_exist_is_bad_input(s3_volume):
    url, _ = s3_volume
    result = run_cli("run", *io_args(url, "raw", "s3://no-such-bucket/o.zarr", "mask", 0.5))
    assert result.code == 2, result
    assert result.err.strip() == (
        "error: output_container: bucket s3://no-such-bucket does not exist, "
        "so the output cannot be written"
    )


def test_blocks_in_flight_on_object_stores(s3_volume):
    """More blocks than the window of concurrent blocks, in one call, as a shard does."""
    from threshold_worker.job import resolve
    from threshold_worker.params import JobParameters
    from threshold_worker.worker import BlockWorker

    url, data = s3_volume
    job = resolve(
        JobParameters(
            input_container=url,
            input_dataset="raw",
            output_container=url,
            output_dataset="mask",
            threshold=0.4,
            block_shape=(16, 16, 16),
        )
    )
    job.prepare()
    worker = BlockWorker(job)
    assert worker.remote and job.plan.total_blocks > 2 * worker.REMOTE_CONCURRENCY
    seen = []
    stats = worker.process(range(job.plan.total_blocks), lambda b, v: seen.append(b))
    assert stats.processed == job.plan.total_blocks and sorted(seen) == list(
        range(job.plan.total_blocks)
    )
    out = zarr.open_array(open_store(UPath(url), read_only=True), path="mask", mode="r")
    np.testing.assert_array_equal(out[...], expected(data, 0.4))
