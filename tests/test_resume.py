"""Resume: done-markers make a killed run pick up where it stopped, and only there."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import zarr

from conftest import (
    BIN,
    assert_thresholded,
    blobs,
    expected,
    io_args,
    marker_blocks,
    run_cli,
    write_array,
)


def counts(out: str) -> tuple[int, int, int]:
    m = re.search(r"blocks\s+(\d+) processed, (\d+) already done, (\d+) total", out)
    assert m, out
    return int(m[1]), int(m[2]), int(m[3])


def chunk_files(array_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(array_dir)): p.read_bytes()
        for p in sorted((array_dir / "c").rglob("*"))
        if p.is_file() and not p.name.startswith(".")  # temp files of a killed write are no keys
    }


def test_sigkill_then_rerun_processes_only_missing_blocks(tmp_path):
    data = blobs((192, 192, 192), seed=11)
    data[:, :96] *= 0.5  # some all-zero blocks: they write no chunks but still get markers
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (16, 16, 16), voxel_size=(4, 4, 4))
    args = [
        *io_args(container, "raw", tmp_path / "out.zarr", "mask", 0.6),
        "--block-shape",
        "16,16,16",
    ]
    total = (192 // 16) ** 3

    proc = subprocess.Popen(
        [str(BIN / "threshold-worker"), "run", *args, "-n", "2", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out_dir = tmp_path / "out.zarr" / "mask"
    deadline = time.monotonic() + 60
    while len(marker_blocks(out_dir)) < 100 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; make it bigger"
    os.kill(proc.pid, signal.SIGKILL)  # the parent only: its workers must die with it
    proc.wait()
    time.sleep(0.5)
    at_kill = len(marker_blocks(out_dir))
    time.sleep(1.0)
    assert len(marker_blocks(out_dir)) == at_kill, (
        "worker processes kept running after their parent died"
    )
    assert 100 <= at_kill < total

    rerun = run_cli("run", *args, "-n", "2")
    assert rerun.code == 0, rerun
    processed, already, total_reported = counts(rerun.out)
    assert total_reported == total
    assert already == at_kill
    assert processed == total - at_kill

    reference = run_cli(
        "run",
        *io_args(container, "raw", tmp_path / "ref.zarr", "mask", 0.6),
        "--block-shape",
        "16,16,16",
        "-n",
        "1",
    )
    assert reference.code == 0, reference
    resumed = chunk_files(out_dir)
    assert resumed == chunk_files(tmp_path / "ref.zarr" / "mask"), "resumed output differs"
    assert len(resumed) < total  # the zero half wrote nothing
    assert_thresholded(tmp_path / "out.zarr", "mask", data, 0.6)


def test_complete_rerun_does_nothing(volume):
    container, _ = volume
    args = io_args(container, "raw", container, "mask", 0.5)
    assert run_cli("run", *args, "-n", "1").code == 0
    again = run_cli("run", *args, "-n", "1")
    processed, already, total = counts(again.out)
    assert (processed, already) == (0, total)


def test_changed_threshold_is_refused_then_replaces_with_overwrite(volume):
    """Another job's result is never taken over in silence; --overwrite replaces it and
    trusts none of its markers."""
    container, data = volume
    assert run_cli("run", *io_args(container, "raw", container, "mask", 0.5), "-n", "1").code == 0
    refused = run_cli("run", *io_args(container, "raw", container, "mask", 0.7), "-n", "1")
    assert refused.code == 2, refused
    assert "holds the complete result of another job: threshold 0.5" in refused.err
    assert "--overwrite" in refused.err
    assert_thresholded(container, "mask", data, 0.5)  # untouched
    changed = run_cli(
        "run", *io_args(container, "raw", container, "mask", 0.7), "-n", "1", "--overwrite"
    )
    processed, already, total = counts(changed.out)
    assert (processed, already) == (total, 0)
    out = zarr.open_array(str(container), path="mask")[...]
    np.testing.assert_array_equal(out, expected(data, 0.7))


def test_changed_roi_does_not_trust_old_markers(volume):
    container, data = volume
    args = io_args(container, "raw", container, "mask", 0.5)
    part = run_cli("run", *args, "-n", "1", "--roi-offset", "80,40,0", "--roi-shape", "128,64,64")
    assert part.code == 0, part
    assert run_cli("run", *args, "-n", "1").code == 2  # another job's (partial) result
    full = run_cli("run", *args, "-n", "1", "--overwrite")
    processed, already, total = counts(full.out)
    assert (processed, already) == (total, 0)
    assert_thresholded(container, "mask", data, 0.5)


def test_overwrite_recomputes_a_finished_output_of_the_same_job(volume):
    """--overwrite on a complete output replaces it, even one of the same job; an
    interrupted run of the same job resumes instead (test_ownership.py)."""
    container, data = volume
    args = io_args(container, "raw", container, "mask", 0.5)
    assert run_cli("run", *args, "-n", "1").code == 0
    again = run_cli("run", *args, "-n", "1", "--overwrite")
    processed, already, total = counts(again.out)
    assert (processed, already) == (total, 0)
    assert_thresholded(container, "mask", data, 0.5)


def test_worker_processes_see_every_marker_of_a_complete_job(tmp_path):
    """Forked workers share their parent's folder descriptors; listing through a shared
    descriptor made each see only part of the markers (448 of 4096 blocks redone)."""
    container = tmp_path / "in.zarr"
    write_array(container, "raw", blobs((128, 128, 128), seed=6), (8, 8, 8))
    args = [
        *io_args(container, "raw", tmp_path / "o.zarr", "m", 0.5),
        *("-n", "2", "--block-shape", "8,8,8"),
    ]
    assert counts(run_cli("run", *args).out) == (4096, 0, 4096)
    for _ in range(3):
        assert counts(run_cli("run", *args).out) == (0, 4096, 4096)
