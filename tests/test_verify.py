"""`threshold-worker status` and `verify`: where a job stands, and whether its output is
complete and right, read from the output alone, regions named as world-unit ROIs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import blobs, io_args, marker_blocks, run_cli, write_array
from threshold_worker.markers import MARKER_DIR

ARGS_EXTRA = ["--block-shape", "8,16,16"]


@pytest.fixture
def done(tmp_path: Path) -> tuple[list[str], Path, np.ndarray]:
    """A finished job: 40x48x56 voxels of (8, 4, 4) nm at offset (80, 40, 0), 5x3x4 blocks."""
    data = blobs((40, 48, 56), seed=1)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (8, 16, 16), voxel_size=(8, 4, 4), offset=(80, 40, 0))
    args = [*io_args(container, "raw", tmp_path / "out.zarr", "mask", 0.5), *ARGS_EXTRA]
    assert run_cli("run", *args, "-n", "1").code == 0
    return args, tmp_path / "out.zarr" / "mask", data


def test_a_finished_output_verifies(done):
    args, _, _ = done
    result = run_cli("verify", *args, "--json")
    assert result.code == 0, result
    verdict = json.loads(result.out)
    assert verdict["ok"] and verdict["checked_blocks"] == 60 and verdict["wrong"] == []
    assert verdict["ours"] and verdict["missing_blocks"] == 0


def test_a_deleted_a_damaged_and_a_stale_chunk_are_each_found_and_named(done):
    args, out, data = done
    (out / "c" / "0" / "0" / "0").unlink()  # block 0: deleted
    (out / "c" / "2" / "1" / "1").write_bytes(b"not zstd")  # block 2*12+1*4+1 = 29: damaged
    # block 59 (4, 2, 3): its marker stays, its data becomes another threshold's (stale)
    array = zarr.open_array(str(out.parent), path="mask", mode="r+")
    array[32:40, 32:48, 48:56] = (data[32:40, 32:48, 48:56] > 0.9).astype("u1")
    result = run_cli("verify", *args, "--json")
    assert result.code == 1, result
    verdict = json.loads(result.out)
    assert not verdict["ok"] and verdict["complete"]
    assert [w["blocks"] for w in verdict["wrong"]] == ["0", "29", "59"]
    assert verdict["wrong"][0]["rois"] == [{"offset": [80, 40, 0], "shape": [64, 64, 64]}]
    assert verdict["wrong"][2]["rois"] == [{"offset": [336, 168, 192], "shape": [64, 64, 32]}]
    text = run_cli("verify", *args)
    assert (
        text.code == 1
        and "wrong       blocks 29: offset (208, 104, 64) shape (64, 64, 64)" in text.out
    )
    assert "verdict     NOT complete and right" in text.out


def test_missing_markers_are_listed_as_regions_and_verify_says_incomplete(done):
    args, out, _ = done
    for marker in (out / MARKER_DIR).rglob("*"):
        if marker.is_file():
            marker.unlink()
    (next((out / MARKER_DIR).iterdir()) / "0" / "0-4").touch()  # blocks 0-4 only
    status = json.loads(run_cli("status", *args, "--json").out)
    assert (status["done_blocks"], status["missing_blocks"]) == (5, 55)
    (missing,) = status["missing"]
    assert missing["blocks"] == "5-59"
    # the rest of a row, a whole row, then whole slabs: three boxes, not 55
    assert missing["rois"] == [
        {"offset": [80, 104, 64], "shape": [64, 64, 160]},
        {"offset": [80, 168, 0], "shape": [64, 64, 224]},
        {"offset": [144, 40, 0], "shape": [256, 192, 224]},
    ]
    verdict = run_cli("verify", *args)
    assert verdict.code == 1 and "blocks      5 done, 55 missing" in verdict.out


def test_another_jobs_output_is_not_this_jobs_however_right_it_looks(done):
    args, _, _ = done
    other = [*args[:-4], "-th", "0.7", *ARGS_EXTRA]
    status = json.loads(run_cli("status", *other, "--json").out)
    assert not status["ours"] and status["owner"].startswith("another job, complete")
    assert status["missing"] == [{"blocks": "0-59", "rois": status["missing"][0]["rois"]}]
    assert run_cli("verify", *other).code == 1


def test_a_sample_checks_that_many_blocks(done):
    args, _, _ = done
    verdict = json.loads(run_cli("verify", *args, "--sample", "7", "--json").out)
    assert verdict["checked_blocks"] == 7 and verdict["ok"]


def test_status_and_verify_write_nothing(done):
    args, out, _ = done
    shutil.copytree(out, out.parent / "before")
    before = sorted(
        p.relative_to(out.parent / "before") for p in (out.parent / "before").rglob("*")
    )
    run_cli("status", *args)
    run_cli("verify", *args)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_start_worker_verify_takes_wrong_blocks_back_and_the_retry_rewrites_them(done):
    """The verifying pass of a ThresholdJob's pods (start-worker --verify): a block made
    stale after it was marked is found, loses its marker (its neighbours keep theirs), the
    pod fails with exit 1 naming it, and the retry rewrites exactly that block."""
    args, out, data = done
    part = [*args, "--partitions", "2", "--partition", "1"]  # blocks 30-59
    assert run_cli("start-worker", *part, "--verify").code == 0  # all done and right
    array = zarr.open_array(str(out.parent), path="mask", mode="r+")
    array[32:40, 32:48, 48:56] = (data[32:40, 32:48, 48:56] > 0.9).astype("u1")  # block 59
    before = marker_blocks(out)
    failed = run_cli("start-worker", *part, "--verify")
    assert failed.code == 1, failed
    line = failed.err.strip().splitlines()[-1]
    assert line.startswith(f"error: {out}: 1 of 30 blocks checked differ from input > 0.5")
    assert "blocks 59 (offset (336, 168, 192) shape (64, 64, 32))" in line
    assert marker_blocks(out) == before - {59}
    again = run_cli("start-worker", *part, "--verify")
    assert again.code == 0, again
    assert again.out.startswith("1 blocks processed, 29 already done")
    assert run_cli("verify", *args).code == 0


def test_start_worker_verify_sample_checks_only_that_many(done, caplog):
    args, _, _ = done
    part = [*args, "--partitions", "2", "--partition", "0"]
    with caplog.at_level("INFO", logger="threshold_worker.worker"):
        assert run_cli("start-worker", *part, "--verify", "--verify-sample", "4").code == 0
    assert any("verified 4 blocks" in r.getMessage() for r in caplog.records)
    bad = run_cli("start-worker", *part, "--verify-sample", "4")
    assert bad.code == 2 and "--verify-sample: needs --verify" in bad.err


def test_unmark_takes_back_exactly_the_blocks_named():
    """Random runs of markers, random blocks taken back: what stays marked is the rest."""
    import random

    from zarr.storage import MemoryStore

    from threshold_worker.markers import BUCKET, DoneMarkers

    rng = random.Random(3)
    for _ in range(30):
        markers = DoneMarkers(MemoryStore(), "mask", "f" * 16)
        done = set(rng.sample(range(3 * BUCKET), rng.randint(1, 400)))
        markers.mark(sorted(done))
        markers.mark(sorted(rng.sample(sorted(done), min(len(done), 20))))  # overlapping runs
        wrong = set(rng.sample(range(3 * BUCKET), rng.randint(1, 50)))
        markers.unmark(wrong)
        blocks = range(3 * BUCKET)
        assert set(blocks) - set(markers.missing(blocks)) == done - wrong
