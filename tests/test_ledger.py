"""The failure ledger: a block that fails on its own (a damaged input chunk) is recorded with
its world-unit ROI, exit code and error line while the others go on; the run ends with exit
3; `status` names failed and missing regions; a rerun after the fix does only those blocks;
the ledger stays bounded whatever the number of failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from upath import UPath
from zarr.buffer import default_buffer_prototype

from conftest import (
    assert_thresholded,
    blobs,
    io_args,
    job_parameters,
    marker_blocks,
    run_cli,
    write_array,
)
from threshold_worker.errors import DamagedInput, StorageUnavailable
from threshold_worker.job import resolve
from threshold_worker.ledger import (
    LEDGER_DIR,
    MAX_RECORDS,
    FailureLedger,
    Failures,
    termination_summary,
)
from threshold_worker.storage import open_store
from threshold_worker.worker import BlockWorker
from threshold_worker.zarr_internals import run

VOXEL, OFFSET = (8, 4, 4), (80, 40, 0)
# 32 x 48 x 48 voxels in chunks and blocks of 16: a 2 x 3 x 3 grid of 18 blocks.
SHAPE, CHUNK = (32, 48, 48), (16, 16, 16)


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, np.ndarray, dict[Path, bytes]]:
    """An input whose chunks (1, 1, 2) and (1, 2, 0) (blocks 14 and 15) cannot be decoded;
    the good bytes are returned to fix it later."""
    data = blobs(SHAPE, seed=7)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, CHUNK, voxel_size=VOXEL, offset=OFFSET)
    good = {}
    for coords in ((1, 1, 2), (1, 2, 0)):
        chunk = container.joinpath("raw", "c", *map(str, coords))
        good[chunk] = chunk.read_bytes()
        chunk.write_bytes(b"not zstd")
    return container, data, good


def args_for(container: Path, out: Path, threshold: str = "0.5") -> list[str]:
    return [*io_args(container, "raw", out, "mask", threshold), "--block-shape", "16,16,16"]


def roi_of_block(block: int) -> dict[str, list[int]]:
    """The world ROI of one block, worked out here from the grid (2, 3, 3) by hand."""
    z, rest = divmod(block, 9)
    y, x = divmod(rest, 3)
    begin = [z * 16, y * 16, x * 16]
    return {
        "offset": [o + b * v for o, b, v in zip(OFFSET, begin, VOXEL, strict=True)],
        "shape": [16 * v for v in VOXEL],
    }


def ledger_objects(array_dir: Path) -> list[Path]:
    return sorted(p for p in (array_dir / LEDGER_DIR).rglob("*.json") if p.is_file())


def test_a_damaged_chunk_is_recorded_with_roi_error_and_exit_code(damaged, tmp_path):
    container, _, _ = damaged
    out = tmp_path / "out.zarr"
    result = run_cli("run", *args_for(container, out), "-n", "1", "--no-progress")
    assert result.code == 3, result
    error = result.err.strip().splitlines()[-1]
    assert error.startswith("error: 2 blocks failed and are recorded in the failure ledger")
    assert "blocks 14-15" in error and "raw/c/1/1/2 cannot be decoded" in error
    assert "16 processed, 2 failed, 0 already done, 18 total" in result.out

    (obj,) = ledger_objects(out / "mask")
    doc = json.loads(obj.read_bytes())
    assert doc["failed_blocks"] == 2
    (record,) = doc["records"]  # two consecutive blocks, one kind of error: one run
    assert (record["first"], record["last"], record["blocks"]) == (14, 15, "14-15")
    assert record["exit_code"] == 2 and record["kind"] == "DamagedInput"
    assert record["error"].startswith("input_dataset: raw/c/1/1/2 cannot be decoded")
    assert not record["stopped"]
    # Blocks 14 and 15 are x = 2 of row y = 1 and x = 0 of row y = 2: two boxes.
    assert record["rois"] == [roi_of_block(14), roi_of_block(15)]
    assert marker_blocks(out / "mask") == set(range(18)) - {14, 15}
    owner = json.loads((out / "mask" / ".threshold-job.json").read_bytes())
    assert owner["state"] == "writing"  # not complete: two blocks are not done


def test_status_lists_failed_and_missing_regions(damaged, tmp_path):
    """A partition that met the damaged chunks, and one that never ran: status names the
    failed blocks (with ROI and error) and every missing one."""
    container, _, _ = damaged
    out = tmp_path / "out.zarr"
    args = [*args_for(container, out), "--partitions", "2"]
    assert run_cli("prepare", *args).code == 0
    part = run_cli("start-worker", *args, "--partition", "1")  # blocks 9-17
    assert part.code == 3, part

    status = run_cli("status", *args, "--json")
    assert status.code == 0, status
    report = json.loads(status.out)
    assert (report["done_blocks"], report["missing_blocks"], report["failed_blocks"]) == (7, 11, 2)
    (failed,) = report["failed"]
    assert failed["blocks"] == "14-15" and failed["exit_code"] == 2
    assert failed["rois"] == [roi_of_block(14), roi_of_block(15)]
    assert "raw/c/1/1/2 cannot be decoded" in failed["error"]
    assert [m["blocks"] for m in report["missing"]] == ["0-8", "14-15"]
    assert report["remaining"] == {"blocks": 11, "voxels": 11 * 16**3}

    text = run_cli("status", *args)
    assert "blocks      7 done, 11 missing (2 of them failed)" in text.out
    assert "failed      blocks 14-15: offset (208, 104, 128) shape (128, 64, 64);" in text.out
    assert "remaining   11 blocks, 45,056 voxels" in text.out
    assert run_cli("status", *args, "--missing").out.strip() == "0-8,14-15"
    assert run_cli("status", *args, "--failed").out.strip() == "14-15"


def test_the_rerun_after_the_fix_processes_only_the_failed_blocks(damaged, tmp_path):
    container, data, good = damaged
    out = tmp_path / "out.zarr"
    args = args_for(container, out)
    assert run_cli("run", *args, "-n", "2", "--no-progress").code == 3
    before = marker_blocks(out / "mask")
    assert len(before) == 16

    for chunk, data_bytes in good.items():
        chunk.write_bytes(data_bytes)
    failed = run_cli("status", *args, "--failed").out.strip()
    assert failed == "14-15"
    rerun = run_cli("run", *args, "-n", "2", "--no-progress", "--blocks", failed)
    assert rerun.code == 0, rerun
    assert "2 processed, 16 already done, 18 total (2 asked for with --blocks)" in rerun.out
    assert marker_blocks(out / "mask") == set(range(18))
    assert_thresholded(out, "mask", data, 0.5)

    report = json.loads(run_cli("status", *args, "--json").out)
    assert report["failed_blocks"] == 0 and report["failed"] == []  # done: no longer failed
    assert ledger_objects(out / "mask")  # the record stays; the marker outranks it
    owner = json.loads((out / "mask" / ".threshold-job.json").read_bytes())
    assert owner["state"] == "complete"
    assert "0 processed, 18 already done" in run_cli("run", *args, "--no-progress").out


def test_blocks_must_be_runs_of_the_plan(damaged, tmp_path):
    container, _, _ = damaged
    args = args_for(container, tmp_path / "out.zarr")
    bad = run_cli("run", *args, "--blocks", "3,x-4")
    assert bad.code == 2 and bad.err.startswith("error: --blocks: 'x-4' in '3,x-4' is not")
    outside = run_cli("run", *args, "--blocks", "17-18")
    assert outside.code == 2
    assert outside.err.strip() == ("error: --blocks: block 18 is outside the plan's blocks 0..17")
    assert not (tmp_path / "out.zarr").exists()


def test_empty_blocks_is_nothing_to_do(damaged, tmp_path):
    """`run --blocks "$(status --failed)"` of a job where nothing failed: no block."""
    container, _, good = damaged
    for chunk, data in good.items():
        chunk.write_bytes(data)
    args = args_for(container, tmp_path / "out.zarr")
    assert run_cli("run", *args, "-n", "1", "--no-progress").code == 0
    assert run_cli("status", *args, "--failed").out.strip() == ""
    again = run_cli("run", *args, "-n", "1", "--no-progress", "--blocks", "")
    assert again.code == 0, again
    assert "0 processed" in again.out


def test_a_sweep_keeps_a_ledger_per_output(damaged, tmp_path):
    container, _, _ = damaged
    out = tmp_path / "out.zarr"
    args = [*io_args(container, "raw", out, "t{threshold}", "0.3,0.6"), "--block-shape", "16,16,16"]
    assert run_cli("run", *args, "-n", "1", "--no-progress").code == 3
    for name in ("t0.3", "t0.6"):
        (obj,) = ledger_objects(out / name)
        assert [r["blocks"] for r in json.loads(obj.read_bytes())["records"]] == ["14-15"]
    report = json.loads(run_cli("status", *args, "--json").out)
    assert [o["output"].rsplit("/", 1)[1] for o in report["outputs"]] == ["t0.3", "t0.6"]
    assert [[f["blocks"] for f in o["failed"]] for o in report["outputs"]] == [["14-15"]] * 2
    assert run_cli("status", *args, "--failed").out.strip() == "14-15"


def test_a_storage_outage_stops_the_run_and_records_the_block_it_was_on(tmp_path, monkeypatch):
    """Not block-local: the next block would fail the same way. The run stops as before
    (exit 1 from the CLI) and the block it was on is recorded as `stopped`."""
    data = blobs(SHAPE, seed=8)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, CHUNK, voxel_size=VOXEL, offset=OFFSET)
    job = resolve(job_parameters(container, block_shape=(16, 16, 16)))
    job.prepare()
    real = BlockWorker._threshold

    def failing(self, selection, which):
        if selection[0].start == 16 and selection[1].start == 16:  # blocks 12-14
            raise StorageUnavailable("output_container", "failed 6 times over about 15 s")
        return real(self, selection, which)

    monkeypatch.setattr(BlockWorker, "_threshold", failing)
    with pytest.raises(StorageUnavailable):
        BlockWorker(job).process(range(18))
    assert marker_blocks(container / "mask") == set(range(12))
    (obj,) = ledger_objects(container / "mask")
    (record,) = json.loads(obj.read_bytes())["records"]
    assert (record["blocks"], record["stopped"], record["exit_code"]) == ("12", True, 1)
    assert record["kind"] == "StorageUnavailable"


class OtherDamage(DamagedInput):
    """Another kind of block-local failure, so that neighbours do not merge."""


def test_1e5_failures_write_one_bounded_object_per_run(tmp_path, monkeypatch):
    """10^5 blocks fail, alternating two kinds of error so that no two neighbours merge:
    one ledger object per output and run, of bounded size, and the count is exact."""
    container = tmp_path / "in.zarr"
    zarr.create_array(
        str(container), name="raw", shape=(100, 100, 100), chunks=(1, 1, 10), dtype="float32"
    )  # fmt: skip  -- no chunk written: all fill value
    job = resolve(job_parameters(container, block_shape=(1, 1, 10)))
    total = job.plan.total_blocks
    assert total == 10**5
    job.prepare()

    def damaged(self, selection, which):
        block = (selection[0].start * 100 + selection[1].start) * 10 + selection[2].start // 10
        kind = DamagedInput if block % 2 else OtherDamage
        raise kind(f"raw/c/{block}", ValueError("bad bytes " + "x" * 1000))

    monkeypatch.setattr(BlockWorker, "_threshold", damaged)
    result = run_cli("run", *io_args(container, "raw", container, "mask", 0.5),
                     "--block-shape", "1,1,10", "-n", "2", "--no-progress")  # fmt: skip
    assert result.code == 3, result
    assert len(result.err.strip().splitlines()[-1]) < 2000  # the summary: one bounded line
    objects = ledger_objects(container / "mask")
    assert len(objects) == 1
    assert objects[0].stat().st_size < 64 * 1024
    doc = json.loads(objects[0].read_bytes())
    assert doc["failed_blocks"] == total
    assert len(doc["records"]) == MAX_RECORDS
    assert doc["more"]["records"] == total - MAX_RECORDS
    assert all(len(r["error"]) <= 300 for r in doc["records"])

    args = [*io_args(container, "raw", container, "mask", 0.5), "--block-shape", "1,1,10"]
    report = json.loads(run_cli("status", *args, "--json").out)
    assert report["missing_blocks"] == total
    assert report["failed_blocks"] + report["unlisted_failed_blocks"] == total


def test_merged_failures_stay_bounded_and_summarise_for_a_termination_message():
    failures = Failures()
    for block in range(10**5):  # runs of three, then a gap: 25000 runs
        if block % 4 != 3:
            failures.add(block, DamagedInput(f"raw/c/{block}", ValueError("bad")))
    assert failures.blocks == 75000
    assert len(failures.records) == MAX_RECORDS
    assert failures.records[0].first == 0 and failures.records[0].last == 2
    assert failures.more_records == 25000 - MAX_RECORDS
    assert failures.span == (0, 99998)
    both = failures.merge(failures)
    assert both.blocks == 150000 and len(both.records) == MAX_RECORDS

    summary = termination_summary(failures, first=3)
    assert summary["failed_blocks"] == 75000 and summary["failed_runs"] == 25000
    assert [r["blocks"] for r in summary["records"]] == ["0-2", "4-6", "8-10"]
    assert len(json.dumps(summary)) < 4096


def test_the_ledger_lives_on_s3_too(s3_server, request):
    url = f"s3://lab-data/{request.node.name}/in.zarr"
    data = blobs(SHAPE, seed=9)
    store = open_store(UPath(url))
    write_array(None, "raw", data, CHUNK, voxel_size=VOXEL, offset=OFFSET, store=store)
    damaged_bytes = default_buffer_prototype().buffer.from_bytes(b"not zstd")
    run(store.set("raw/c/1/1/2", damaged_bytes))
    args = [*io_args(url, "raw", url, "mask", 0.5), "--block-shape", "16,16,16"]
    result = run_cli("run", *args, "-n", "1", "--no-progress")
    assert result.code == 3, result
    report = json.loads(run_cli("status", *args, "--json").out)
    assert [f["blocks"] for f in report["failed"]] == ["14"]
    assert report["failed"][0]["rois"] == [roi_of_block(14)]
    ledger = FailureLedger(open_store(UPath(url), read_only=True), "mask", report["fingerprint"])
    (entry,) = ledger.read()
    assert [(r.first, r.last, r.kind) for r in entry.records] == [(14, 14, "DamagedInput")]


def test_a_failed_pod_reports_its_failed_regions_in_its_termination_log(damaged, tmp_path):
    """start-worker --termination-log (what the work Job's pods pass): the error line and
    the failed blocks as JSON under Kubernetes' 4096 bytes; nothing is written on success."""
    container, _, good = damaged
    log = tmp_path / "termination-log"
    args = [*args_for(container, tmp_path / "o.zarr"), "--partitions", "2", "--partition", "1"]
    result = run_cli("start-worker", *args, "--termination-log", str(log))
    assert result.code == 3, result
    report = json.loads(log.read_text())
    assert len(log.read_bytes()) <= 4096
    assert report["error"].startswith("2 blocks failed and are recorded in the failure ledger")
    assert report["kind"] == "BlocksFailed"
    assert report["failures"]["failed_blocks"] == 2
    firsts = [(r["first"], r["last"]) for r in report["failures"]["records"]]
    assert firsts == [(14, 15)] or firsts == [(14, 14), (15, 15)], report
    for chunk, data in good.items():
        chunk.write_bytes(data)
    log.unlink()
    assert run_cli("start-worker", *args, "--termination-log", str(log)).code == 0
    assert not log.exists()


def test_a_partition_whose_output_another_job_took_reports_so(tmp_path):
    """A work pod that finds another job's result in its output says which kind of error
    it is, so that the operator does not advise a retry that would find it too."""
    data = blobs((16, 16, 16), seed=3)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (8, 8, 8))
    io = io_args(container, "raw", container, "mask", 0.5)
    assert run_cli("run", *io).code == 0  # another job's complete result
    log = tmp_path / "termination-log"
    mine = [*io_args(container, "raw", container, "mask", 0.7), "--partitions", "2",
            "--partition", "0"]  # fmt: skip
    result = run_cli("start-worker", *mine, "--termination-log", str(log))
    assert result.code == 2, result
    report = json.loads(log.read_text())
    assert report["kind"] == "OutputTaken"
    assert "holds the complete result of another job" in report["error"]


def test_a_long_failure_report_is_cut_to_fit(tmp_path):
    """Many failed regions with long error lines still give a termination message of at
    most 4096 bytes that is valid JSON and keeps the count."""
    from threshold_worker.commands import failure_report
    from threshold_worker.errors import BlocksFailed

    failures = Failures()
    for block in range(0, 400, 2):  # 200 runs that do not merge
        failures.add(block, DamagedInput(f"a chunk {'é' * 400} of block {block}", ValueError()))
    error = BlocksFailed("", "200 blocks failed " + "x" * 5000)
    error.stats = type("S", (), {"failures": [failures]})()
    text = failure_report(error)
    assert len(text.encode()) <= 4096
    doc = json.loads(text)
    assert doc["error"].startswith("200 blocks failed")
    assert doc.get("failures", {}).get("failed_blocks", 200) == 200
