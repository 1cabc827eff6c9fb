"""`plan` tells what a job costs: bytes to read and write, blocks and partitions, and with
`--calibrate N` a run time measured on N blocks, for a given parallelism; it writes
nothing, calibration included."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import blobs, io_args, run_cli, write_array
from threshold_worker.calibrate import sample_blocks


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder below `root` with its size and modification time."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.stat(path, follow_symlinks=False)
            found[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return found


@pytest.fixture
def job_args(tmp_path: Path) -> list[str]:
    """40 x 48 x 64 float32 voxels in chunks of 8 x 16 x 16 (voxel size 2, 1, 1); the ROI
    is voxels 8..40 x 0..48 x 16..48: 4 x 3 x 2 = 24 blocks of one chunk."""
    data = blobs((40, 48, 64), seed=3)
    write_array(tmp_path / "in.zarr", "raw", data, (8, 16, 16), voxel_size=(2, 1, 1))
    return [
        *io_args(tmp_path / "in.zarr", "raw", tmp_path / "out.zarr", "mask", 0.5),
        "--roi-offset", "16,0,16",
        "--roi-shape", "64,48,32",
        "--block-shape", "8,16,16",
    ]  # fmt: skip


def test_plan_reports_bytes_blocks_and_partitions_without_calibrating(job_args):
    result = run_cli("plan", *job_args, "--partitions", "3", "--json")
    assert result.code == 0, result
    cost = json.loads(result.out)["cost"]
    assert cost["blocks"] == 24 and cost["partitions"] == 3
    assert cost["read_bytes_decoded"] == 32 * 48 * 32 * 4  # float32
    assert cost["write_bytes_at_most"] == 32 * 48 * 32  # one uint8 per voxel of the ROI
    assert cost["seconds_estimate"] is None and cost["calibration"] is None
    text = run_cli("plan", *job_args)
    assert "read         196.6 kB decoded\n" in text.out
    assert "time         unknown: --calibrate N measures N blocks" in text.out


def test_calibration_times_blocks_and_estimates_for_the_parallelism(job_args):
    result = run_cli("plan", *job_args, "--calibrate", "5", "-n", "4", "--json")
    assert result.code == 0, result
    cost = json.loads(result.out)["cost"]
    cal = cost["calibration"]
    assert cal["blocks"] == 5 and cal["failed"] == 0 and cal["chunk_path"] == "direct"
    assert cal["voxels"] == 5 * 8 * 16 * 16
    assert cal["input_decoded_bytes"] == 5 * 8 * 16 * 16 * 4
    assert cal["input_stored_bytes"] > 0 and cal["seconds"] > 0
    assert cost["parallelism"] == 4
    assert cost["seconds_estimate"] == pytest.approx(cal["seconds_per_block"] * 24 / 4)
    stored = cal["input_stored_bytes"] / cal["input_decoded_bytes"]
    assert cost["read_bytes_stored_estimate"] == round(cost["read_bytes_decoded"] * stored)
    assert 0 <= cost["write_bytes_estimate"] <= cost["write_bytes_at_most"]
    text = run_cli("plan", *job_args, "--calibrate", "2", "--parallelism", "3")
    assert "calibration  2 blocks in " in text.out
    assert " with 3 processes\n" in text.out


def test_calibration_writes_nothing(job_args, tmp_path):
    before = tree(tmp_path)
    sweep = [{"0.5": "0.2,0.8", "mask": "t{threshold}"}.get(a, a) for a in job_args]
    for args in (job_args, [*job_args, "--json"], sweep):
        result = run_cli("plan", *args, "--calibrate", "6")
        assert result.code == 0, result
    assert tree(tmp_path) == before
    assert not (tmp_path / "out.zarr").exists()


def test_calibration_of_an_existing_output_leaves_it_as_it_was(job_args, tmp_path):
    assert run_cli("run", *job_args, "-n", "1", "--no-progress").code == 0
    before = tree(tmp_path)
    result = run_cli("plan", *job_args, "--calibrate", "24", "--json")
    assert result.code == 0, result
    cal = json.loads(result.out)["cost"]["calibration"]
    assert cal["blocks"] == 24
    assert tree(tmp_path) == before
    # Every block sampled: the bytes measured are the bytes stored, in and out.
    chunks_in = [p for p in (tmp_path / "in.zarr" / "raw" / "c").rglob("*") if p.is_file()]
    in_roi = [p for p in chunks_in if 1 <= int(p.parts[-3]) <= 4 and int(p.name) in (1, 2)]
    assert cal["input_stored_bytes"] == sum(p.stat().st_size for p in in_roi)
    written = [p for p in (tmp_path / "out.zarr" / "mask" / "c").rglob("*") if p.is_file()]
    assert cal["output_bytes"] == sum(p.stat().st_size for p in written)


def test_a_damaged_chunk_in_the_sample_is_counted_not_fatal(job_args, tmp_path):
    (tmp_path / "in.zarr" / "raw" / "c" / "1" / "0" / "1").write_bytes(b"not zstd")
    result = run_cli("plan", *job_args, "--calibrate", "24", "--json")
    assert result.code == 0, result
    cal = json.loads(result.out)["cost"]["calibration"]
    assert (cal["blocks"], cal["failed"]) == (23, 1)


def test_calibrate_needs_a_positive_count(job_args):
    result = run_cli("plan", *job_args, "--calibrate", "0")
    assert result.code == 2 and "--calibrate" in result.err


@pytest.mark.parametrize(("total", "n"), [(24, 5), (7, 7), (3, 10), (10**7, 4)])
def test_sampled_blocks_spread_over_the_plan(total, n):
    ids = sample_blocks(total, n)
    assert len(ids) == min(total, n) and ids == sorted(set(ids))
    assert ids[0] == 0 and ids[-1] >= total - total // min(total, n) - 1
