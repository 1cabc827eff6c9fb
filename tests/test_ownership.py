"""An output knows which job writes it: another job's result is never taken over, or
trusted, in silence; --overwrite replaces it, and resumes like any run when killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import (
    BIN,
    assert_thresholded,
    blobs,
    expected,
    files_of,
    io_args,
    job_parameters,
    marker_blocks,
    run_cli,
    write_array,
)
from threshold_worker.job import resolve
from threshold_worker.ownership import OWNER_FILE, OutputArea


def owner(array_dir: Path) -> dict:
    return json.loads((array_dir / OWNER_FILE).read_text())


def counts(out: str) -> tuple[int, int]:
    """(processed, already done) of a run's summary."""
    words = next(x for x in out.splitlines() if x.startswith("blocks")).split()
    return int(words[1]), int(words[3])


def test_the_issues_sequence_never_leaves_a_stale_mask(volume):
    """0.5, then 0.9, then 0.5 into one output: each result is the threshold it says."""
    container, data = volume
    for t in (0.5, 0.9, 0.5):
        args = io_args(container, "raw", container, "mask", t)
        result = run_cli("run", *args, "-n", "1")
        if result.code == 2:
            assert "holds the complete result of another job" in result.err
            result = run_cli("run", *args, "-n", "1", "--overwrite")
        assert result.code == 0, result
        assert counts(result.out)[1] == 0  # no marker of the other job was trusted
        assert_thresholded(container, "mask", data, t)
        record = owner(container / "mask")
        assert record["threshold"] == t and record["state"] == "complete"
        attrs = zarr.open_array(str(container), path="mask").attrs["threshold_job"]
        assert attrs["threshold"] == t and attrs["fingerprint"] == record["fingerprint"]


def test_a_refusal_names_the_other_job_and_touches_nothing(volume):
    container, _ = volume
    assert run_cli("run", *io_args(container, "raw", container, "mask", 0.5), "-n", "1").code == 0
    before = {p: p.stat().st_mtime_ns for p in (container / "mask").rglob("*") if p.is_file()}
    for command in ("plan", "prepare", "run"):
        result = run_cli(command, *io_args(container, "raw", container, "mask", 0.7))
        assert result.code == 2, result
        line = result.err.strip()
        assert line.startswith(f"error: output_dataset: {container}/mask holds the complete ")
        assert "threshold 0.5" in line and "finished 20" in line and "--overwrite" in line
    after = {p: p.stat().st_mtime_ns for p in (container / "mask").rglob("*") if p.is_file()}
    assert after == before


def test_an_empty_array_no_job_owns_is_adopted(tmp_path):
    """DaCapo creates the output array, then runs the worker on it: adopted, with stray
    markers of an older job in it dropped, never trusted."""
    data = blobs((32, 32, 32), seed=5)
    container = tmp_path / "a.zarr"
    write_array(container, "raw", data, (16, 16, 16))
    zarr.create_array(str(container), name="mask", shape=data.shape, chunks=(16,) * 3, dtype="u1")
    stray = container / "mask" / ".threshold-done" / "0123456789abcdef" / "0"
    stray.mkdir(parents=True)
    (stray / "0-7").touch()
    result = run_cli("run", *io_args(container, "raw", container, "mask", 0.5))
    assert result.code == 0, result
    assert counts(result.out) == (1, 0)
    assert_thresholded(container, "mask", data, 0.5)
    assert not stray.exists()
    assert owner(container / "mask")["state"] == "complete"
    assert zarr.open_array(str(container), path="mask").attrs["threshold_job"]["threshold"] == 0.5


@pytest.mark.parametrize(("zarr_format", "fill"), [(3, 1), (2, 255), (2, None)])
def test_an_empty_array_with_another_fill_value_is_not_adopted(tmp_path, zarr_format, fill):
    """Chunks a job never writes (outside the roi) read as the fill value: an adopted array
    with fill value 1 showed 1 there, and verify, which checks the roi, agreed. v2's null
    leaves them undefined (zarr-python 2 returns whatever memory held)."""
    data = blobs((32, 32, 32), seed=5)
    container = tmp_path / "a.zarr"
    write_array(container, "raw", data, (16, 16, 16), zarr_format=zarr_format)
    zarr.create_array(str(container), name="mask", shape=data.shape, chunks=(16,) * 3,
                      dtype="u1", fill_value=fill or 0, zarr_format=zarr_format)  # fmt: skip
    if fill is None:  # zarr-python 3 writes no null: set it as other writers leave it
        document = container / "mask" / ".zarray"
        document.write_text(json.dumps({**json.loads(document.read_text()), "fill_value": None}))
    args = [*io_args(container, "raw", container, "mask", 0.5), "--roi-shape", "16,32,32"]
    before = files_of(container)
    refused = run_cli("run", *args)
    told = "null" if fill is None else fill
    assert refused.code == 2 and f"exists with fill value {told} (expected 0" in refused.err, (
        refused
    )
    assert files_of(container) == before
    assert run_cli("run", *args, "--overwrite").code == 0
    got = zarr.open_array(str(container), path="mask")[...]
    np.testing.assert_array_equal(got[:16], expected(data[:16], 0.5))
    assert (got[16:] == 0).all()


def test_data_no_job_owns_is_refused_until_overwrite(tmp_path):
    """An array with data in it, that no record claims: a hand-made mask, or one whose
    record was lost in a copy. Nothing is mixed into it without --overwrite."""
    data = blobs((32, 32, 32), seed=5)
    container = tmp_path / "a.zarr"
    write_array(container, "raw", data, (16, 16, 16))
    out = zarr.create_array(
        str(container), name="mask", shape=data.shape, chunks=(16, 16, 16), dtype="u1"
    )
    out[...] = 7
    args = [*io_args(container, "raw", container, "mask", 0.5), "--roi-shape", "16,32,32"]
    refused = run_cli("run", *args)
    assert refused.code == 2 and "holds data that no threshold-worker job wrote" in refused.err
    assert (zarr.open_array(str(container), path="mask")[...] == 7).all()
    replaced = run_cli("run", *args, "--overwrite")
    assert replaced.code == 0, replaced
    got = zarr.open_array(str(container), path="mask")[...]
    np.testing.assert_array_equal(got[:16], expected(data[:16], 0.5))
    assert (got[16:] == 0).all()  # replaced as a whole: nothing of the old data is left
    # The same output copied without its hidden files: the attributes still name the job.
    (container / "mask" / OWNER_FILE).unlink()
    lost = run_cli("run", *io_args(container, "raw", container, "mask", 0.7))
    assert lost.code == 2 and "whose owner record is lost: threshold 0.5" in lost.err, lost


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_folder_that_is_no_array_is_never_replaced(tmp_path, zarr_format):
    """An implicit group (no group document: older writers, tensorstore) holding an array,
    named as the output: --overwrite replaces an array, and deleted the arrays inside."""
    data = blobs((16, 16, 16), seed=5)
    container = tmp_path / "a.zarr"
    write_array(container, "raw", data, (8, 8, 8), zarr_format=zarr_format)
    write_array(container, "g/labels", data, (8, 8, 8), zarr_format=zarr_format)
    for name in (".zgroup", ".zattrs", "zarr.json"):
        (container / "g" / name).unlink(missing_ok=True)
    before = files_of(container)
    for extra in ([], ["--overwrite"]):
        refused = run_cli("run", *io_args(container, "raw", container, "g", 0.5), *extra)
        assert refused.code == 2, refused
        assert refused.err.strip() == (
            f"error: output_dataset: {container}/g is a folder that is no zarr array (no "
            "zarr.json or .zarray) and holds files no threshold-worker job wrote, maybe other "
            "arrays; not even --overwrite replaces it: delete it yourself if it may go, or "
            "choose another output_dataset"
        )
        assert files_of(container) == before


def test_shards_refuse_to_replace_and_run_after_prepare(volume):
    container, data = volume
    assert run_cli("run", *io_args(container, "raw", container, "mask", 0.5), "-n", "1").code == 0
    args = io_args(container, "raw", container, "mask", 0.3)
    shard = run_cli("start-worker", *args, "--partition", "0", "--partitions", "2")
    assert shard.code == 2 and "threshold 0.5" in shard.err, shard
    prep = run_cli("prepare", *args, "--partitions", "2", "--overwrite")
    assert prep.code == 0, prep
    assert owner(container / "mask")["state"] == "writing"
    for i in range(2):
        assert run_cli("start-worker", *args, "--partition", str(i), "--partitions", "2").code == 0
    assert_thresholded(container, "mask", data, 0.3)


@pytest.mark.parametrize(
    "gone", ["output", "replaced by an empty array", "replaced by another geometry's"]
)
def test_a_prepared_jobs_partition_never_makes_its_output_anew(volume, gone):
    """The output of a prepared job deleted between its partitions (by hand, or seen from a
    node the volume does not reach): a partition that made it anew would hold only the
    partitions run from then on, each exiting 0, and the job would end as complete."""
    container, data = volume
    args = [*io_args(container, "raw", container, "mask", 0.5), "--partitions", "2"]
    prep = run_cli("prepare", *args)
    assert prep.code == 0, prep
    expect = ["--expect-fingerprint", json.loads(prep.out)["fingerprint"]]
    assert run_cli("start-worker", *args, "--partition", "0", *expect).code == 0
    shutil.rmtree(container / "mask")
    zeros = np.zeros(data.shape, np.uint8)
    if gone == "replaced by an empty array":  # as DaCapo makes one: no longer this job's
        write_array(container, "mask", zeros, (8, 16, 16), voxel_size=(8, 4, 4), offset=(80, 40, 0))
    elif gone == "replaced by another geometry's":  # refused as a mismatch, told as replaced
        write_array(container, "mask", zeros, (8, 16, 16))
    before = files_of(container)
    refused = run_cli("start-worker", *args, "--partition", "1", *expect)
    assert refused.code == 2, refused
    assert refused.err.strip() == (
        f"error: output_dataset: {container}/mask no longer holds what this job's prepare "
        "step made (it was deleted or replaced since); a partition never makes the output "
        "anew, which would lose the blocks written before: prepare the job again "
        "(`threshold-worker prepare`, then its partitions) (with --overwrite if something was "
        "put in its place)"
    )
    assert files_of(container) == before  # nothing written, not even a lease
    # As told: prepared again (another geometry's array: prepare says to pass --overwrite).
    again = run_cli("prepare", *args)
    if gone == "replaced by another geometry's":
        assert again.code == 2 and "pass --overwrite to replace it" in again.err, again
        again = run_cli("prepare", *args, "--overwrite")
    expect = ["--expect-fingerprint", json.loads(again.out)["fingerprint"]]
    for i in (0, 1):
        assert run_cli("start-worker", *args, "--partition", str(i), *expect).code == 0
    assert_thresholded(container, "mask", data, 0.5)


def test_a_prepared_jobs_partition_that_finds_another_jobs_result_says_it_came_after(volume):
    """Another job replaced the output between this one's pods (the operator cannot see
    every such job: another namespace on one volume): replacing it back, which the usual
    'pass --overwrite' would advise, would destroy a result newer than this job's plan."""
    container, _ = volume
    args = [*io_args(container, "raw", container, "mask", 0.5), "--partitions", "2"]
    prep = run_cli("prepare", *args)
    expect = ["--expect-fingerprint", json.loads(prep.out)["fingerprint"]]
    assert run_cli("start-worker", *args, "--partition", "0", *expect).code == 0
    other = [*io_args(container, "raw", container, "mask", 0.3), "--overwrite"]
    assert run_cli("run", *other).code == 0
    refused = run_cli("start-worker", *args, "--partition", "1", *expect)
    assert refused.code == 2, refused
    line = refused.err.strip()
    assert line.startswith(f"error: output_dataset: {container}/mask holds the complete result "
                           "of another job: threshold 0.3")  # fmt: skip
    assert line.endswith(
        "which came after this job was prepared; a partition cannot go on: prepare the job "
        "again (`threshold-worker prepare`, then its partitions) with --overwrite if that may "
        "be replaced, or choose another output"
    )
    assert "re-created since" not in line  # not guessed: it came after, whatever it is


def _lose(array_dir: Path, how: str) -> None:
    """What `rm -rf` racing the writes leaves (the writes make folders again, so rm stops
    half-way: no metadata, no record, some chunks), or `mv` of the whole output."""
    if how == "rm -rf half-way":
        (array_dir / "zarr.json").unlink()
        (array_dir / OWNER_FILE).unlink()
    else:
        shutil.move(array_dir, array_dir.with_name("moved"))
        (array_dir / "c").mkdir(parents=True)  # a chunk written after the move


@pytest.mark.parametrize("then", ["returns", "fails"])
@pytest.mark.parametrize("how", ["rm -rf half-way", "moved"])
@pytest.mark.parametrize("command", ["run", "start-worker"])
def test_an_output_lost_while_it_is_written_ends_the_job_with_exit_2(
    volume, monkeypatch, how, command, then
):
    """The writes that follow the loss make the output's folders again, so the last
    partition (or a local run) ended with exit 0 and the ThresholdJob Succeeded over what
    was left. Each now reads its output afresh, through its path, before it ends; a write
    that failed for the loss (FileNotFoundError, exit 1, no advice) is told as the loss."""

    def lost() -> None:
        _lose(container / "mask", how)
        if then == "fails":
            raise FileNotFoundError(2, "No such file or directory", str(container / "mask/c/0"))

    from threshold_worker import local, worker

    container, data = volume
    args = io_args(container, "raw", container, "mask", 0.5)
    if command == "run":
        original = local._run

        def lose_after(*a, **kw):
            summary = original(*a, **kw)
            lost()
            return summary

        monkeypatch.setattr(local, "_run", lose_after)
        again = "run the job again"
    else:
        prep = run_cli("prepare", *args, "--partitions", "2")
        args = [*args, "--partitions", "2", "--partition", "1",
                "--expect-fingerprint", json.loads(prep.out)["fingerprint"]]  # fmt: skip
        process = worker.BlockWorker.process

        def lose_after(self, *a, **kw):
            stats = process(self, *a, **kw)
            lost()
            return stats

        monkeypatch.setattr(worker.BlockWorker, "process", lose_after)
        again = "prepare the job again (`threshold-worker prepare`, then its partitions)"
    result = run_cli(command, *args)
    assert result.code == 2, result
    assert result.err.strip() == (
        f"error: output_dataset: {container}/mask no longer holds this job's output: it was "
        "deleted or moved while this job wrote it, so blocks written before are missing; "
        f"{again} with --overwrite, which replaces what is left there"
    )
    monkeypatch.undo()
    prep = run_cli("prepare", *io_args(container, "raw", container, "mask", 0.5), "--overwrite")
    assert prep.code == 0, prep  # as told: what is left is replaced
    assert run_cli("run", *io_args(container, "raw", container, "mask", 0.5)).code == 0
    assert_thresholded(container, "mask", data, 0.5)


def test_a_workers_own_error_is_not_retold_as_a_lost_output(volume, monkeypatch):
    """A lease that lapsed (a process frozen past its TTL on S3) while another job took the
    output: the failure says so; read afresh, the output is the other job's, which the
    final check would have told as "deleted or moved"."""
    from threshold_worker import local
    from threshold_worker.errors import OutputConflict

    container, _ = volume
    lapsed = "the lease on the output lapsed (this process was frozen)"

    def taken_over(*a, **kw):
        _lose(container / "mask", "rm -rf half-way")
        raise OutputConflict("output_dataset", lapsed)

    monkeypatch.setattr(local, "_run", taken_over)
    result = run_cli("run", *io_args(container, "raw", container, "mask", 0.5))
    assert result.code == 2, result
    assert result.err.strip() == f"error: output_dataset: {lapsed}"


def test_an_unreadable_owner_record_is_not_trusted(volume):
    container, data = volume
    args = io_args(container, "raw", container, "mask", 0.5)
    assert run_cli("run", *args, "-n", "1").code == 0
    (container / "mask" / OWNER_FILE).write_text("{not json")
    result = run_cli("run", *args, "-n", "1")
    assert result.code == 2 and "unreadable owner record" in result.err, result
    again = run_cli("run", *args, "-n", "1", "--overwrite")
    assert again.code == 0 and counts(again.out)[1] == 0, again
    assert_thresholded(container, "mask", data, 0.5)


def test_a_crash_inside_the_delete_of_overwrite_resumes_the_replacement(volume, monkeypatch):
    """The process dies (here: an exception, at a precise point) after half of the old
    chunks are gone. The record still says the new job is clearing: the old job may not
    resume over it, and the new one finishes the delete first, even without --overwrite."""
    container, data = volume
    old_args = io_args(container, "raw", container, "mask", 0.2)
    assert run_cli("run", *old_args, "-n", "1").code == 0
    real_clear = OutputArea.clear_data

    class Killed(BaseException):
        pass

    def half_then_die(self: OutputArea) -> None:
        chunks = sorted(p for p in (container / "mask" / "c").rglob("*") if p.is_file())
        for p in chunks[: len(chunks) // 2]:
            p.unlink()
        raise Killed

    monkeypatch.setattr(OutputArea, "clear_data", half_then_die)
    new_args = [*io_args(container, "raw", container, "mask", 0.6), "-n", "1"]
    roi = ["--roi-offset", "80,40,0", "--roi-shape", "160,96,224"]
    with pytest.raises(Killed):
        run_cli("run", *new_args, *roi, "--overwrite")
    monkeypatch.setattr(OutputArea, "clear_data", real_clear)
    record = owner(container / "mask")
    assert record["threshold"] == 0.6 and record["state"] == "clearing"
    assert not marker_blocks(container / "mask")  # markers go before any data

    stale = run_cli("run", *old_args, "-n", "1")
    assert stale.code == 2 and "threshold 0.6" in stale.err, stale
    resumed = run_cli("run", *new_args, *roi)  # no --overwrite: the record says clearing
    assert resumed.code == 0, resumed
    got = zarr.open_array(str(container), path="mask")[...]
    want = np.zeros_like(got)  # outside the roi: nothing of the old job survives
    want[:20, :24] = expected(data[:20, :24], 0.6)
    np.testing.assert_array_equal(got, want)


@pytest.fixture
def many_chunks(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An output of 13,824 chunk files: its delete takes long enough to be killed in."""
    data = blobs((96, 96, 96), seed=8)
    container = tmp_path / "big.zarr"
    write_array(container, "raw", data, (48, 48, 48))
    return container, data


def _script(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "threshold-worker"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_during_overwrites_delete_then_rerun(many_chunks):
    container, data = many_chunks
    layout = ["--output-chunks", "4,4,4", "-n", "2"]
    old = io_args(container, "raw", container, "m", 0.05)
    first = subprocess.run(
        [str(BIN / "threshold-worker"), "run", *old, *layout],
        capture_output=True,
        text=True,
    )
    assert first.returncode == 0, first.stderr
    new = [*io_args(container, "raw", container, "m", 0.7), *layout]
    proc = _script("run", *new, "--overwrite")
    record_path = container / "m" / OWNER_FILE
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(record_path.read_text())["threshold"] == 0.7:
                break
        except (ValueError, FileNotFoundError):
            pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert owner(container / "m")["state"] == "clearing", "killed too late to test the delete"
    left = sum(1 for p in (container / "m" / "c").rglob("*") if p.is_file())
    assert left > 0
    again = subprocess.run(
        [str(BIN / "threshold-worker"), "run", *new], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert_thresholded(container, "m", data, 0.7)
    assert owner(container / "m")["state"] == "complete"


def test_an_overwrite_killed_while_writing_resumes(many_chunks):
    """--overwrite with the same arguments after a kill resumes: it does not delete the
    blocks the killed run already finished."""
    container, data = many_chunks
    args = [*io_args(container, "raw", container, "m", 0.5), "--output-chunks", "4,4,4"]
    proc = _script("run", *args, "-n", "2", "--overwrite")
    deadline = time.monotonic() + 60
    while len(marker_blocks(container / "m")) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(marker_blocks(container / "m"))
    assert done >= 50
    again = run_cli("run", *args, "-n", "2", "--overwrite")
    assert again.code == 0, again
    processed, already = counts(again.out)
    assert already == done and processed + already == 1728
    assert_thresholded(container, "m", data, 0.5)


def test_overwrite_replaces_an_output_of_the_same_job_that_no_longer_fits(volume):
    """Damaged metadata in this job's own output: refused without --overwrite; with it, the
    output is rebuilt, never resumed into the wrong shape."""
    container, data = volume
    args = io_args(container, "raw", container, "mask", 0.5)
    assert run_cli("run", *args, "-n", "1").code == 0
    meta_path = container / "mask" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"][0] = 8
    meta_path.write_text(json.dumps(meta))
    refused = run_cli("run", *args, "-n", "1")
    assert refused.code == 2 and "exists with shape (8, 48, 56)" in refused.err, refused
    again = run_cli("run", *args, "-n", "1", "--overwrite")
    assert again.code == 0 and counts(again.out)[1] == 0, again
    assert_thresholded(container, "mask", data, 0.5)


def test_an_overwrite_that_looked_while_its_twin_replaced_the_output_joins_it(volume):
    """Two identical `run --overwrite` at once: the second resolved while the first had
    cleared the array (no metadata: "does not fit"), then claims when the first writes. It
    must decide on the array as it is then, and join its own job's writing: clearing it
    deleted the first run's chunks and markers under it (exit 1, or a marked block whose
    chunk was gone)."""
    container, data = volume
    args = [*io_args(container, "raw", container, "mask", 0.5), "--block-shape", "8,16,16"]
    assert run_cli("prepare", *args, "--overwrite").code == 0
    first = run_cli("start-worker", *args, "--partitions", "2", "--partition", "0")
    assert first.code == 0, first  # the first run, half-way through its blocks
    done = marker_blocks(container / "mask")
    chunks = sorted(p for p in (container / "mask" / "c").rglob("*") if p.is_file())
    assert done and chunks
    metadata = container / "mask" / "zarr.json"
    kept = metadata.read_bytes()
    metadata.unlink()  # as the first run's claim left it for a moment: cleared, not yet made
    spec = job_parameters(container, block_shape=(8, 16, 16), overwrite=True)
    twin = resolve(spec)
    assert not twin.output.fits
    metadata.write_bytes(kept)  # the first run made the array again, and writes
    with twin.claim():
        assert owner(container / "mask")["state"] == "writing"
        assert marker_blocks(container / "mask") == done
        assert sorted(p for p in (container / "mask" / "c").rglob("*") if p.is_file()) == chunks
    rest = run_cli("run", *args, "-n", "1")
    assert rest.code == 0 and counts(rest.out)[1] == len(done), rest
    assert_thresholded(container, "mask", data, 0.5)


@pytest.mark.parametrize(
    "dtype,chunks,voxel_size,fits",
    [
        (np.uint8, (8, 16, 16), (8, 4, 4), True),
        (np.int8, (8, 16, 16), (8, 4, 4), False),
        (np.uint8, (8, 8, 8), (8, 4, 4), False),
        (np.uint8, (8, 16, 16), (4, 4, 4), False),
        (None, None, None, False),  # no output
    ],
)
def test_resolve_and_the_claim_judge_alike_whether_the_output_fits(
    volume, dtype, chunks, voxel_size, fits
):
    """What `resolve` saw and what the claim sees under the lease (`fits_now`) are one
    judgement: the job's dtype, shape, geometry and chunk layout, or not."""
    container, data = volume
    if dtype is not None:
        mask = np.zeros(data.shape, dtype)
        write_array(container, "mask", mask, chunks, voxel_size=voxel_size, offset=(80, 40, 0))
    job = resolve(job_parameters(container, overwrite=True))
    assert (job.output.fits, job.fits_now()) == (fits, fits)


def test_a_re_created_input_at_the_same_path_is_a_new_job(tmp_path):
    """DaCapo predicts again into the same path: the old mask's markers must not be
    trusted, and the refusal says why the same-looking job is another."""
    container = tmp_path / "in.zarr"
    out = tmp_path / "out.zarr"
    args = io_args(container, "raw", out, "mask", 0.5)
    write_array(container, "raw", blobs((32, 32, 32), seed=1), (16, 16, 16))
    assert run_cli("run", *args).code == 0
    shutil.rmtree(container)
    again = blobs((32, 32, 32), seed=2)
    write_array(container, "raw", again, (16, 16, 16))
    refused = run_cli("run", *args)
    assert refused.code == 2 and "the input was re-created since" in refused.err, refused
    replaced = run_cli("run", *args, "--overwrite")
    assert replaced.code == 0 and counts(replaced.out) == (1, 0), replaced
    assert_thresholded(out, "mask", again, 0.5)
