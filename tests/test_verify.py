"""`threshold-worker status` and `verify`: where a job stands, and whether its output is
complete and right, read from the output alone, regions named as world-unit ROIs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import blobs, expected, io_args, marker_blocks, run_cli, write_array
from test_pyramid import check_levels
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
        and "wrong       block 29: offset (208, 104, 64) shape (64, 64, 64)" in text.out
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
    assert "block 59 (offset (336, 168, 192) shape (64, 64, 32))" in line
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


# -- pyramid levels ---------------------------------------------------------------------

PYRAMID = ["--ome-zarr", "--pyramid", "2", "--block-shape", "16,16,32"]  # 3 x 3 x 2 blocks


@pytest.fixture
def swept(tmp_path: Path) -> tuple[list[str], Path, np.ndarray]:
    """A finished sweep of two OME-Zarr outputs with levels s1 and s2 (18 blocks)."""
    data = blobs((40, 48, 56), seed=1)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (8, 16, 16), voxel_size=(8, 4, 4), offset=(80, 40, 0))
    args = [
        "-ic", str(container), "-id", "raw", "-oc", str(tmp_path / "sw.zarr"),
        "-od", "masks/t_{threshold}", "--thresholds", "0.3,0.5", *PYRAMID,
    ]  # fmt: skip
    assert run_cli("run", *args, "-n", "1").code == 0
    return args, tmp_path / "sw.zarr" / "masks", data


def damage_levels(images: Path) -> None:
    """t_0.5: s1 voxels [8:16, 8:16, 16:32] flipped, which block (1, 1, 1) = 9 writes
    (s0 [16:32, 16:32, 32:64]); t_0.3: s2's chunk (0, 0, 0), block 0's, deleted."""
    s1 = zarr.open_array(str(images / "t_0.5"), path="s1", mode="r+")
    s1[8:16, 8:16, 16:32] = 1 - s1[8:16, 8:16, 16:32]
    (images / "t_0.3" / "s2" / "c" / "0" / "0" / "0").unlink()


def test_verify_compares_every_pyramid_level_and_names_the_one_that_differs(swept):
    args, images, _ = swept
    assert run_cli("verify", *args).code == 0
    damage_levels(images)
    result = run_cli("verify", *args, "--json")
    assert result.code == 1, result
    low, high = json.loads(result.out)["outputs"]
    assert [(w["blocks"], w["arrays"]) for w in low["wrong"]] == [("0", ["masks/t_0.3/s2"])]
    assert [(w["blocks"], w["arrays"]) for w in high["wrong"]] == [("9", ["masks/t_0.5/s1"])]
    assert not low["ok"] and not high["ok"] and low["complete"] and high["complete"]
    text = run_cli("verify", *args).out
    assert "checked     18 blocks against input > 0.5 and levels s1, s2: 1 differ" in text
    assert "wrong       block 9 (s1): offset (208, 104, 128) shape (128, 64, 96)" in text
    assert "wrong       block 0 (s2): offset (80, 40, 0) shape (128, 64, 128)" in text


def test_a_lost_level_and_an_undecodable_level_chunk_are_wrong_where_written(swept):
    args, images, _ = swept
    shutil.rmtree(images / "t_0.3" / "s2")  # the whole level: every block's region differs
    (images / "t_0.5" / "s1" / "c" / "0" / "0" / "0").write_bytes(b"not zstd")  # block 0's
    low, high = json.loads(run_cli("verify", *args, "--json").out)["outputs"]
    assert [(w["blocks"], w["arrays"]) for w in low["wrong"]] == [("0-17", ["masks/t_0.3/s2"])]
    assert [(w["blocks"], w["arrays"]) for w in high["wrong"]] == [("0", ["masks/t_0.5/s1"])]


def test_start_worker_verify_takes_back_a_block_whose_level_differs_and_the_retry_mends_it(
    swept,
):
    args, images, data = swept
    damage_levels(images)
    failed = run_cli("start-worker", *args, "--verify")
    assert failed.code == 1, failed
    line = failed.err.strip().splitlines()[-1]
    assert f"{images / 't_0.3' / 's0'}: 1 of 18 blocks checked differ" in line
    assert "block 0 in s2 (offset (80, 40, 0)" in line and "1 more outputs" in line
    assert marker_blocks(images / "t_0.3" / "s0") == set(range(18)) - {0}
    assert marker_blocks(images / "t_0.5" / "s0") == set(range(18)) - {9}
    again = run_cli("start-worker", *args, "--verify")
    assert again.code == 0, again
    assert again.out.startswith("2 blocks processed, 16 already done")
    assert run_cli("verify", *args).code == 0
    for t in (0.3, 0.5):
        check_levels(images, f"t_{t}", expected(data, t), 2, (2, 2, 2), "any")


# -- damaged input ----------------------------------------------------------------------


def damage_block_18_input(container: Path) -> None:
    """Make the input chunk of block 18 (1*12 + 1*4 + 2, in 5x3x4 blocks) undecodable."""
    (container / "raw" / "c" / "1" / "1" / "2").write_bytes(b"not zstd")


def test_a_block_whose_input_is_damaged_is_named_unchecked_and_the_rest_is_checked(done):
    args, out, _ = done
    damage_block_18_input(Path(args[1]))
    (out / "c" / "0" / "0" / "0").unlink()  # block 0: still found wrong
    result = run_cli("verify", *args, "--json")
    assert result.code == 1, result
    verdict = json.loads(result.out)
    assert not verdict["ok"] and verdict["complete"]
    assert verdict["checked_blocks"] == 59 and verdict["unchecked_blocks"] == 1
    assert [w["blocks"] for w in verdict["wrong"]] == ["0"]
    assert verdict["unchecked"] == [
        {
            "blocks": "18",
            "rois": [{"offset": [144, 104, 128], "shape": [64, 64, 64]}],
            "reason": "input damaged",
            "chunk": "raw/c/1/1/2",
        }
    ]
    text = run_cli("verify", *args)
    assert text.code == 1
    assert "checked     59 blocks against input > 0.5: 1 differ; 1 unchecked: input damaged" in (
        text.out
    )
    assert (
        "unchecked   block 18: input damaged, raw/c/1/1/2 cannot be decoded: "
        "offset (144, 104, 128) shape (64, 64, 64)" in text.out
    )
    assert "verdict     NOT complete and right" in text.out


def test_only_damaged_input_is_still_not_complete_and_right(done):
    args, _, _ = done
    damage_block_18_input(Path(args[1]))
    result = run_cli("verify", *args)
    assert result.code == 1, result
    assert "1 unchecked" in result.out and "verdict     NOT complete and right" in result.out


def test_start_worker_verify_records_a_done_block_whose_input_is_now_damaged(done):
    """A block marked done whose input cannot be decoded any more cannot be verified: it
    loses its marker and joins the failure ledger, as a run records such a block, and the
    pod ends with exit 3 naming the chunk; the other blocks are verified."""
    args, out, _ = done
    damage_block_18_input(Path(args[1]))
    part = [*args, "--partitions", "2", "--partition", "0"]  # blocks 0-29
    result = run_cli("start-worker", *part, "--verify")
    assert result.code == 3, result
    line = result.err.strip().splitlines()[-1]
    assert "1 block failed and is recorded in the failure ledger" in line
    assert "block 18: " in line and "raw/c/1/1/2 cannot be decoded" in line
    assert marker_blocks(out) == set(range(60)) - {18}
    assert run_cli("status", *args, "--failed").out.strip() == "18"


def test_start_worker_verify_checks_the_rest_when_the_run_met_damaged_input(volume, tmp_path):
    """Blocks that failed in the run are in the ledger already and are not verified; the
    others are, and a wrong one among them makes the pod exit 1 (the retry rewrites it,
    then meets the damaged input again)."""
    container, _ = volume
    args = [*io_args(container, "raw", tmp_path / "out.zarr", "mask", 0.5), *ARGS_EXTRA]
    damage_block_18_input(container)
    first = run_cli("start-worker", *args, "--verify")
    assert first.code == 3, first
    assert "block 18: " in first.err and "raw/c/1/1/2 cannot be decoded" in first.err
    (tmp_path / "out.zarr" / "mask" / "c" / "0" / "0" / "0").unlink()  # block 0: wrong
    second = run_cli("start-worker", *args, "--verify")
    assert second.code == 1, second
    assert "block 0 (offset (80, 40, 0)" in second.err
    assert marker_blocks(tmp_path / "out.zarr" / "mask") == set(range(60)) - {0, 18}


# -- samples and wording ----------------------------------------------------------------


def test_start_worker_verify_sample_is_drawn_afresh_each_run_and_logged(done, caplog, monkeypatch):
    """Two runs with different random bytes check different blocks, each the sample its
    logged seed draws; the log names the blocks, so a failure can be checked again."""
    import threshold_worker.worker as worker_module
    from threshold_worker.intervals import format_runs, runs
    from threshold_worker.verify import sample_of

    args, _, _ = done
    part = [*args, "--partitions", "2", "--partition", "0"]  # blocks 0-29
    seeds = iter([(7).to_bytes(4, "big"), (8).to_bytes(4, "big")])
    monkeypatch.setattr(worker_module.os, "urandom", lambda n: next(seeds))
    logged = []
    for _ in range(2):
        caplog.clear()
        with caplog.at_level("INFO", logger="threshold_worker.worker"):
            assert run_cli("start-worker", *part, "--verify", "--verify-sample", "4").code == 0
        logged += [r.getMessage() for r in caplog.records if r.getMessage().startswith("verifying")]
    picks = [sample_of(range(30), 4, seed) for seed in (7, 8)]
    assert picks[0] != picks[1]
    assert logged == [
        f"verifying blocks {format_runs(runs(pick))} (4 of 30, seed {seed})"
        for pick, seed in zip(picks, (7, 8), strict=True)
    ]


def test_verify_sample_with_a_seed_is_reproducible(done):
    args, _, _ = done
    one = json.loads(run_cli("verify", *args, "--sample", "5", "--seed", "3", "--json").out)
    two = json.loads(run_cli("verify", *args, "--sample", "5", "--seed", "3", "--json").out)
    assert one == two and one["checked_blocks"] == 5


def test_a_wrong_block_is_said_to_be_written_by_this_run_only_when_it_was(
    volume, tmp_path, monkeypatch
):
    """A worker that writes a wrong mask is caught right after writing; a block marked done
    before the run is not said to be written by it."""
    import threshold_worker.kernel as kernel
    import threshold_worker.verify  # noqa: F401 -- binds the right threshold before the patch

    container, _ = volume
    args = [*io_args(container, "raw", tmp_path / "out.zarr", "mask", 0.5), *ARGS_EXTRA]
    right = kernel.threshold
    monkeypatch.setattr(kernel, "threshold", lambda data, value, out=None: right(data, value + 0.1))
    wrong = run_cli("start-worker", *args, "--verify", env={"THRESHOLD_CHUNK_PATH": "zarr"})
    assert wrong.code == 1, wrong
    assert "60 of 60 blocks checked differ from input > 0.5 right after this run wrote them" in (
        wrong.err
    )
    monkeypatch.setattr(kernel, "threshold", right)
    assert run_cli("start-worker", *args, "--verify").code == 0
    array = zarr.open_array(str(tmp_path / "out.zarr"), path="mask", mode="r+")
    array[0:8, 0:16, 0:16] = 1 - array[0:8, 0:16, 0:16]  # block 0, marked before this run
    stale = run_cli("start-worker", *args, "--verify")
    assert stale.code == 1, stale
    assert "though this run wrote none of them (they were marked done before it)" in stale.err


def test_an_output_with_no_array_is_not_complete(volume, tmp_path):
    """Never run, or cleared by an --overwrite cut short: the verdict says not complete
    (exit 1) from the output's status, rather than zarr's ArrayNotFoundError."""
    container, _ = volume
    result = run_cli("verify", *io_args(container, "raw", tmp_path / "o.zarr", "m", 0.5))
    assert result.code == 1, result
    assert "owner       none: there is no output here yet" in result.out
    assert "verdict     NOT complete and right" in result.out
    assert "Error" not in result.err
