"""Threshold sweeps: several thresholds in one pass over the input, one output each.

Each output of a sweep must be exactly the output a single run of its threshold makes: the
same mask, the same plan fingerprint, owner record and done-markers, so that a single run
resumes or verifies a sweep's output and the other way round.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import assert_thresholded, blobs, io_args, marker_blocks, run_cli, write_array
from threshold_worker.intervals import union_runs
from threshold_worker.job import resolve, resolve_sweep, sweep_fingerprint
from threshold_worker.params import MAX_THRESHOLDS, JobParameters
from threshold_worker.worker import BlockWorker, start_worker_fn

VALUES = [0.25, 0.5, 0.75]


def sweep_args(inp, out, dataset="mask_{threshold}", values=VALUES) -> list[str]:
    return io_args(inp, "raw", out, dataset, ",".join(map(str, values)))


def params(inp, out, **kw) -> JobParameters:
    base = {
        "input_container": str(inp),
        "input_dataset": "raw",
        "output_container": str(out),
        "output_dataset": "mask_{threshold}",
        "thresholds": VALUES,
    }
    return JobParameters(**{**base, **kw})


def an_input(tmp_path: Path, shape: tuple[int, int, int], seed: int = 0) -> tuple[Path, np.ndarray]:
    """`in.zarr/raw`: random floats in 8^3 chunks, the input most tests here sweep."""
    inp = tmp_path / "in.zarr"
    data = blobs(shape, seed=seed)
    write_array(inp, "raw", data, (8, 8, 8))
    return inp, data


LAYOUTS = {
    # input chunks, output options, block shape: the direct path's chunk-to-chunk route,
    # its block-mask route (blocks that cut chunks), whole shards, and zarr's pipeline.
    "chunkwise": ((8, 8, 8), [], None, "direct"),
    "block-mask": ((8, 8, 8), ["--output-chunks", "12,12,12"], None, "direct"),
    "shards": ((8, 8, 8), ["--output-chunks", "4,4,4", "--output-shards", "8,8,8"], None, "direct"),
    "zarr-path": ((8, 8, 8), ["--output-chunks", "12,12,12"], None, "zarr"),
    "v2": ((8, 8, 8), ["--zarr-format", "2"], None, "direct"),
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_each_output_of_a_sweep_is_its_threshold_of_the_input(tmp_path, monkeypatch, layout):
    chunks, extra, _, path = LAYOUTS[layout]
    monkeypatch.setenv("THRESHOLD_CHUNK_PATH", path)
    data = blobs((30, 26, 20), seed=11)
    data[0, 0, :4] = [0.25, 0.5, 0.75, np.nan]  # the thresholds themselves: not above
    write_array(tmp_path / "in.zarr", "raw", data, chunks)
    result = run_cli("run", *sweep_args(tmp_path / "in.zarr", tmp_path / "out.zarr"), *extra)
    assert result.code == 0, result
    for t in VALUES:
        assert_thresholded(tmp_path / "out.zarr", f"mask_{t!r}", data, t)
        assert f"above {t:g}" in result.out
    assert "3 thresholds in one pass" in result.out


def test_a_sweeps_outputs_are_the_outputs_single_runs_make(tmp_path):
    """Chunk for chunk, marker for marker, and a single run of one threshold finds its
    output complete (nothing to redo) and verifies it."""
    inp, _ = an_input(tmp_path, (24, 24, 24), seed=12)
    assert run_cli("run", *sweep_args(inp, tmp_path / "a.zarr")).code == 0
    for t in VALUES:
        assert run_cli("run", *io_args(inp, "raw", tmp_path / "b.zarr", f"mask_{t!r}", t)).code == 0
    for t in VALUES:
        a, b = tmp_path / "a.zarr" / f"mask_{t!r}", tmp_path / "b.zarr" / f"mask_{t!r}"
        chunks_a = {p.relative_to(a): p.read_bytes() for p in (a / "c").rglob("*") if p.is_file()}
        chunks_b = {p.relative_to(b): p.read_bytes() for p in (b / "c").rglob("*") if p.is_file()}
        assert chunks_a == chunks_b
        assert marker_blocks(a) == marker_blocks(b) == set(range(8))
        single = io_args(inp, "raw", tmp_path / "a.zarr", f"mask_{t!r}", t)
        again = run_cli("run", *single)
        assert again.code == 0 and "0 processed, 8 already done" in again.out, again
        assert run_cli("verify", *single).code == 0
    swept = resolve_sweep(params(inp, tmp_path / "a.zarr"))
    singles = [
        resolve(
            params(
                inp, tmp_path / "a.zarr", thresholds=None, threshold=t, output_dataset=f"mask_{t!r}"
            )
        )
        for t in VALUES
    ]
    assert [j.plan.fingerprint for j in swept] == [j.plan.fingerprint for j in singles]


def test_a_sweep_reads_each_block_once_for_the_outputs_that_lack_it(tmp_path):
    """Outputs that progressed unevenly (one had three blocks done, one is complete from an
    earlier sweep): each block is processed once, and written only where it is missing."""
    inp, data = an_input(tmp_path, (16, 16, 16), seed=13)
    out = tmp_path / "out.zarr"
    blocks = ["--block-shape", "8,8,8"]
    assert run_cli("run", *sweep_args(inp, out, values=[0.5]), *blocks).code == 0  # complete
    jobs = resolve_sweep(params(inp, out, block_shape=[8, 8, 8]))
    with jobs[0].claim(whole_job=False):
        BlockWorker(jobs[0]).process(range(3))  # mask_0.25: blocks 0-2 done
    jobs[2].prepare()
    before = {p: p.stat().st_mtime_ns for p in (out / "mask_0.5").rglob("*") if p.is_file()}
    stats = BlockWorker(jobs).process(range(8))
    assert stats.processed == 8  # a block missing anywhere is read once
    assert stats.written == (5 * 512, 0, 8 * 512)
    after = {p: p.stat().st_mtime_ns for p in (out / "mask_0.5").rglob("*") if p.is_file()}
    assert after == before  # the complete output is not touched
    for t in VALUES:
        assert_thresholded(out, f"mask_{t!r}", data, t)
        assert marker_blocks(out / f"mask_{t!r}") == set(range(8))


def test_verifying_a_sweep_reads_each_block_of_the_input_once_for_all_outputs(tmp_path):
    from threshold_worker.verify import verify_all

    inp, _ = an_input(tmp_path, (16, 16, 16), seed=13)
    out = tmp_path / "out.zarr"
    assert run_cli("run", *sweep_args(inp, out), "--block-shape", "8,8,8").code == 0
    jobs = resolve_sweep(params(inp, out, block_shape=[8, 8, 8]), writing=False)
    reads: list[tuple[slice, ...]] = []

    class Counted:
        """The first job's input, its reads counted; the others' inputs refuse reads."""

        def __init__(self, array: zarr.Array) -> None:
            self.array, self.shape = array, array.shape

        def __getitem__(self, selection: tuple[slice, ...]) -> np.ndarray:
            reads.append(selection)
            return self.array[selection]

    jobs[0].input = Counted(jobs[0].input)
    for job in jobs[1:]:
        job.input = None
    verdicts = verify_all(jobs)
    assert [v.checked for v in verdicts] == [8, 8, 8] and all(v.ok for v in verdicts)
    assert sorted(map(str, reads)) == sorted(str(jobs[0].block_selection(b)) for b in range(8))


def test_a_sweep_that_one_output_refuses_writes_nothing(tmp_path):
    inp, data = an_input(tmp_path, (16, 16, 16), seed=14)
    out = tmp_path / "out.zarr"
    other = run_cli("run", *io_args(inp, "raw", out, "mask_0.5", 0.5), "--roi-shape", "8,8,8")
    assert other.code == 0  # another job's output where the sweep's 0.5 would go
    result = run_cli("run", *sweep_args(inp, out))
    assert result.code == 2
    assert "mask_0.5 holds the complete result of another job" in result.err
    assert "--overwrite" in result.err
    assert sorted(p.name for p in out.iterdir()) == ["mask_0.5", "zarr.json"]
    assert zarr.open_array(str(out), path="mask_0.5")[...].sum() == (data[:8, :8, :8] > 0.5).sum()
    assert run_cli("run", *sweep_args(inp, out), "--overwrite").code == 0
    for t in VALUES:
        assert_thresholded(out, f"mask_{t!r}", data, t)


def test_outputs_on_different_block_grids_are_refused(tmp_path):
    inp, _ = an_input(tmp_path, (32, 32, 32), seed=15)
    out = tmp_path / "out.zarr"
    made = run_cli("run", *io_args(inp, "raw", out, "mask_0.5", 0.5), "--output-chunks", "16,16,16")
    assert made.code == 0
    result = run_cli("run", *sweep_args(inp, out))
    assert result.code == 2
    assert result.err.startswith("error: output_dataset:") and "one block grid" in result.err
    assert sorted(p.name for p in out.iterdir()) == ["mask_0.5", "zarr.json"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-od", "mask", "-th", "0.2,0.4"], "output_dataset: 'mask' must name each threshold"),
        (["-od", "m_{threshold}", "-th", "0.2,0.2"], "thresholds: [0.2, 0.2] name 0.2 twice"),
        (["-od", "m_{threshold}", "-th", "0.0,-0.0"], "name 0.0 twice (0.0 and -0.0 are one"),
        (
            ["-od", "m_{threshold}", "-th", "0.1,0.2", "--thresholds", "0.3"],
            "-th and --thresholds: give the values with one of them",
        ),
        (["-od", "m_{threshold}", "-th", "0.2,nan"], "thresholds[1]: Input should be a finite"),
        (["-od", "m_{threshold}", "-th", "0.2,inf"], "thresholds[1]: Input should be a finite"),
        (["-od", "m_{threshold}", "-th", "0.2,x"], "'0.2,x' is not a number"),
        (["-od", "m_{threshold}", "-th", "0.1", "--thresholds", "0.2,0.3"], "give one of them"),
        (
            ["-od", "m_{threshold}", "-th", ",".join(str(i) for i in range(MAX_THRESHOLDS + 1))],
            f"thresholds: List should have at most {MAX_THRESHOLDS} items",
        ),
    ],
)
def test_a_bad_sweep_is_one_line_naming_the_field(tmp_path, args, message):
    inp, _ = an_input(tmp_path, (8, 8, 8))
    result = run_cli("run", "-ic", str(inp), "-id", "raw", "-oc", str(tmp_path / "o"), *args)
    assert result.code == 2, result
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_single_threshold_fills_the_placeholder_too(tmp_path):
    """... and is reported as a sweep of one, so that a script reads one shape whatever the
    length of its list of thresholds."""
    inp, data = an_input(tmp_path, (8, 8, 8), seed=16)
    args = io_args(inp, "raw", tmp_path / "o.zarr", "m_{threshold}", 0.5)
    assert run_cli("run", *args).code == 0
    assert_thresholded(tmp_path / "o.zarr", "m_0.5", data, 0.5)
    for command in ("status", "verify"):
        report = json.loads(run_cli(command, *args, "--json").out)
        assert [o["output"].rsplit("/", 1)[1] for o in report["outputs"]] == ["m_0.5"]
    single = io_args(inp, "raw", tmp_path / "o.zarr", "m_0.5", 0.5)
    assert json.loads(run_cli("status", *single, "--json").out)["output"].endswith("/m_0.5")


def test_a_sweep_in_partitions_matches_its_prepare_step(tmp_path):
    """The cluster's route: prepare prints the sweep's fingerprint, each partition checks
    it, and together they complete every output; a changed sweep is refused."""
    inp, data = an_input(tmp_path, (24, 16, 16), seed=17)
    args = [*sweep_args(inp, tmp_path / "o.zarr"), "--partitions", "2"]
    prepared = run_cli("prepare", *args)
    assert prepared.code == 0, prepared
    report = json.loads(prepared.out)
    assert [o["dataset"] for o in report["outputs"]] == [f"mask_{t!r}" for t in VALUES]
    fp = report["fingerprint"]
    wrong = run_cli(
        "start-worker",
        *sweep_args(inp, tmp_path / "o.zarr", values=[0.25, 0.5]),
        "--partitions",
        "2",
        "--partition",
        "0",
        "--expect-fingerprint",
        fp,
    )
    assert wrong.code == 2 and "the job expects" in wrong.err
    for i in (1, 0):
        done = run_cli("start-worker", *args, "--partition", str(i), "--expect-fingerprint", fp)
        assert done.code == 0, done
    for t in VALUES:
        assert_thresholded(tmp_path / "o.zarr", f"mask_{t!r}", data, t)
    status = json.loads(run_cli("status", *args, "--json").out)
    assert [o["done_blocks"] for o in status["outputs"]] == [2, 2, 2]
    jobs = resolve_sweep(params(inp, tmp_path / "o.zarr", partitions=2), writing=False)
    assert [o["fingerprint"] for o in status["outputs"]] == [j.plan.fingerprint for j in jobs]
    assert all(o["ours"] for o in status["outputs"])


def test_the_seed_api_sweeps_with_thresholds(tmp_path):
    inp, data = an_input(tmp_path, (16, 16, 16), seed=18)
    stats = start_worker_fn(inp, "raw", tmp_path / "o.zarr", "m_{threshold}", thresholds=[0.1, 0.9])
    assert stats.processed == 1 and len(stats.foreground) == 2  # one 16^3 block
    for t in (0.1, 0.9):
        assert_thresholded(tmp_path / "o.zarr", f"m_{t!r}", data, t)
    with pytest.raises(ValueError, match="give one of them"):
        start_worker_fn(inp, "raw", tmp_path / "o.zarr", "m_{threshold}", 0.3, thresholds=[0.4])


def test_spawn_worker_sweeps_on_the_local_context(tmp_path, monkeypatch):
    """DaCapo's spawn_worker keeps its positional threshold; thresholds=[...] sweeps."""
    from threshold_worker import LocalArrayIdentifier, spawn_worker

    options = tmp_path / "threshold.yaml"
    options.write_text("compute_context: {type: Local, num_workers: 1}\n")
    monkeypatch.setenv("THRESHOLD_OPTIONS_FILE", str(options))
    inp, data = an_input(tmp_path, (16, 16, 16), seed=19)
    src = LocalArrayIdentifier(inp, "raw")
    dst = LocalArrayIdentifier(tmp_path / "o.zarr", "m_{threshold}")
    spawn_worker(src, dst, thresholds=[0.2, 0.6])()
    for t in (0.2, 0.6):
        assert_thresholded(tmp_path / "o.zarr", f"m_{t!r}", data, t)
    with pytest.raises(ValueError, match="give one of them"):
        spawn_worker(src, dst, 0.3, thresholds=[0.4])


def test_sweep_fingerprint_is_a_single_jobs_own(tmp_path):
    inp, _ = an_input(tmp_path, (8, 8, 8))
    one = resolve_sweep(params(inp, tmp_path / "o", thresholds=[0.5]))
    assert sweep_fingerprint(one) == one[0].plan.fingerprint
    many = resolve_sweep(params(inp, tmp_path / "o"))
    assert sweep_fingerprint(many) not in {j.plan.fingerprint for j in many}


def test_union_runs_matches_sets():
    rng = random.Random(5)
    for _ in range(200):
        sources = []
        for _ in range(rng.randint(0, 4)):
            ids = sorted(rng.sample(range(40), rng.randint(0, 30)))
            groups = [list(g) for _, g in itertools.groupby(enumerate(ids), lambda p: p[1] - p[0])]
            sources.append([(g[0][1], g[-1][1]) for g in groups])
        merged = list(union_runs(sources))
        for a, b, which in merged:
            for block in range(a, b + 1):
                holders = tuple(
                    i for i, s in enumerate(sources) if any(x <= block <= y for x, y in s)
                )
                assert holders == which
        covered = [block for a, b, _ in merged for block in range(a, b + 1)]
        assert covered == sorted(covered) and len(covered) == len(set(covered))
        assert set(covered) == {i for s in sources for a, b in s for i in range(a, b + 1)}
