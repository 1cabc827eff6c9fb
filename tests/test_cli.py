"""The `threshold-worker` commands as a user or the operator's pods call them."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import assert_thresholded, blobs, expected, io_args, run_cli, run_script, write_array
from threshold_worker.commands import TERMINATION_REPORT
from threshold_worker.markers import MARKER_DIR


def test_help_lists_the_commands():
    result = run_cli("--help")
    for command in ("plan", "prepare", "run", "start-worker", "spawn", "sample", "preview"):
        assert command in result.out


def test_plan_json_writes_nothing(volume, tmp_path):
    container, _ = volume
    out = tmp_path / "out.zarr"
    result = run_cli(
        "plan", *io_args(container, "raw", out, "mask", 0.5), "--json", "--partitions", "4"
    )
    assert result.code == 0, result
    report = json.loads(result.out)
    assert report["total_blocks"] == 3 * 2 * 2  # 40x48x56 voxels in 16x32x32 blocks
    assert report["partitions"] == 4
    assert report["block_shape"] == [16, 32, 32]
    assert len(report["fingerprint"]) == 16
    assert report["roi"] == {"offset": [80, 40, 0], "shape": [320, 192, 224]}
    assert not out.exists()


def test_plan_human_readable(volume):
    container, _ = volume
    result = run_cli("plan", *io_args(container, "raw", container, "mask", 0.5))
    assert "blocks       12 = 3 x 2 x 2 of 16 x 32 x 32 voxels" in result.out
    assert "will be created" in result.out


def test_prepare_writes_termination_log_and_output(volume, tmp_path):
    container, _ = volume
    log = tmp_path / "termination-log"
    result = run_cli(
        "prepare",
        *io_args(container, "raw", container, "mask", 0.5),
        "--partitions",
        "5",
        "--termination-log",
        str(log),
    )
    assert result.code == 0, result
    report = json.loads(log.read_text())
    full = json.loads(result.out)  # the termination log holds what the operator reads
    assert report == {key: full[key] for key in TERMINATION_REPORT}
    assert set(full) > set(report) and len(log.read_bytes()) < 4096
    out = zarr.open_array(str(container), path="mask")
    assert out.dtype == np.uint8 and out.shape == (40, 48, 56)
    assert out.attrs["threshold_job"]["fingerprint"] == report["fingerprint"]
    assert not (container / "mask" / MARKER_DIR).exists()


def test_partitions_by_job_completion_index(volume):
    container, data = volume
    args = io_args(container, "raw", container, "mask", 0.5)
    fingerprint = json.loads(run_cli("prepare", *args, "--partitions", "3").out)["fingerprint"]
    for index in range(3):
        result = run_cli(
            "start-worker",
            *args,
            "--partitions",
            "3",
            "--expect-fingerprint",
            fingerprint,
            env={"JOB_COMPLETION_INDEX": str(index)},
        )
        assert result.code == 0, result
        assert "4 blocks processed, 0 already done" in result.out
        partial = zarr.open_array(str(container), path="mask")[...]
        done_z = (index + 1) * 16
        np.testing.assert_array_equal(partial[:done_z], expected(data[:done_z], 0.5))
        assert partial[done_z:].sum() == 0
    again = run_cli("start-worker", *args, "--partition", "1", "--partitions", "3")
    assert "0 blocks processed, 4 already done" in again.out


def test_a_partition_list_maps_the_completion_index_to_a_partition(volume):
    """A retry's Job runs only some partitions: index i runs the i-th of --partition-list."""
    container, data = volume
    args = io_args(container, "raw", container, "mask", 0.5)
    env = {"JOB_COMPLETION_INDEX": "1"}
    result = run_cli("start-worker", *args, "--partitions", "3", "--partition-list", "0,2", env=env)
    assert result.code == 0 and "4 blocks processed" in result.out, result
    out = zarr.open_array(str(container), path="mask")[...]
    np.testing.assert_array_equal(out[32:], expected(data[32:], 0.5))  # partition 2: z 32-39
    assert out[:32].sum() == 0
    beyond = run_cli("start-worker", *args, "--partitions", "3", "--partition-list", "0,2",
                     env={"JOB_COMPLETION_INDEX": "2"})  # fmt: skip
    assert beyond.code == 2 and "--partition: 2 is outside 0..1" in beyond.err + beyond.out


@pytest.mark.parametrize(
    ("given", "told"),
    [
        ("1_0", "--partition-list: '1_0' in '1_0' is not a partition id or a run first-last"),
        ("\uff12", "is not a partition id"),  # a fullwidth 2, which str.isdigit() takes
        ("2-1", "'2-1' in '2-1' is not a partition id"),
        ("0,3", "--partition-list: partition 3 is outside 0..2"),  # the list's, not --partition's
        ("", "--partition-list: is empty"),
    ],
)
def test_a_bad_partition_list_is_told_as_such(volume, given, told):
    container, _ = volume
    args = [*io_args(container, "raw", container, "mask", 0.5), "--partitions", "3"]
    result = run_cli("start-worker", *args, "--partition-list", given,
                     env={"JOB_COMPLETION_INDEX": "1"})  # fmt: skip
    assert result.code == 2 and told in result.err, result
    assert not (container / "mask").exists()


def test_start_worker_without_shard_does_everything(volume):
    container, data = volume
    result = run_cli("start-worker", *io_args(container, "raw", container, "mask", 0.5))
    assert result.code == 0 and "12 blocks processed" in result.out
    assert_thresholded(container, "mask", data, 0.5)


def test_run_summary_and_progress_bar(volume):
    container, _ = volume
    result = run_script(
        "run", *io_args(container, "raw", container, "mask", 0.5), "-n", "1", "--progress"
    )
    assert result.code == 0, result
    assert "12/12" in result.err and "block/s" in result.err  # tqdm: blocks, rate, ETA
    assert "12 processed, 0 already done, 12 total" in result.out
    assert "Mvoxel/s" in result.out and "foreground" in result.out


def test_sample_and_preview(tmp_path):
    from PIL import Image

    container = tmp_path / "s.zarr"
    result = run_cli("sample", str(container), "--shape", "32,48,64", "--chunks", "16,16,16")
    assert result.code == 0, result
    raw = zarr.open_array(str(container), path="raw")
    assert raw.shape == (32, 48, 64) and raw.attrs["voxel_size"] == [8, 4, 4]
    values = raw[...]
    assert values.min() >= 0.0 and values.max() <= 1.0 and values.std() > 0.05
    assert run_cli("run", *io_args(container, "raw", container, "mask", 0.5), "-n", "1").code == 0
    png = tmp_path / "p.png"
    assert (
        run_cli("preview", "-ic", str(container), "-id", "raw", "-od", "mask", "-o", str(png)).code
        == 0
    )
    image = Image.open(png)
    assert image.width >= 768 and image.height > 0


def test_a_new_output_takes_the_format_of_the_group_it_is_made_in(tmp_path):
    """A v2 input into a v3 container: the output is v3 (no .zgroup beside zarr.json);
    into a v2 container it is v2; --zarr-format against the container is refused."""
    data = blobs((8, 8, 8), seed=1)
    write_array(tmp_path / "in.zarr", "raw", data, (8, 8, 8), voxel_size=(4, 4, 4), zarr_format=2)
    for fmt in (3, 2):
        out = tmp_path / f"v{fmt}.zarr"
        zarr.open_group(str(out), mode="w", zarr_format=fmt)
        result = run_cli(
            "run", *io_args(tmp_path / "in.zarr", "raw", out, "a/mask", 0.5), "-n", "1"
        )
        assert result.code == 0, result
        assert zarr.open_array(str(out), path="a/mask").metadata.zarr_format == fmt
        assert sorted(p.name for p in out.iterdir() if p.is_file()) == (
            ["zarr.json"] if fmt == 3 else [".zattrs", ".zgroup"]
        )
    refused = run_cli("run", *io_args(tmp_path / "in.zarr", "raw", tmp_path / "v2.zarr", "b", 0.5),
                      "--zarr-format", "3")  # fmt: skip
    assert refused.code == 2
    assert "v2.zarr is a zarr v2 group" in refused.err and "--zarr-format 3" in refused.err
    assert not (tmp_path / "v2.zarr" / "b").exists()


def test_the_script_exits_without_the_collectors_last_pass(tmp_path):
    """The console script (`console`) freezes the collector once `main` is done, so the
    interpreter's exit skips its last pass over every object (a tenth of a second of a
    one-block pod); `main` itself, which tests and other programs call in-process, does not."""
    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert scripts["project"]["scripts"]["threshold-worker"] == "threshold_worker.commands:console"
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "from threshold_worker.commands import {fn}\n"
        "sys.argv = ['threshold-worker', 'plan', '--help']\n"
        "{fn}()\n"
    )
    for fn, frozen in (("console", True), ("main", False)):
        done = subprocess.run(
            [sys.executable, "-c", probe.format(fn=fn)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert f"frozen {frozen}" in done.stdout, (fn, done.stdout)
