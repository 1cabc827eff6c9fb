"""Done-markers name runs of finished blocks; a worker that fails or is terminated records
what it finished before it goes, so the retry resumes after it."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from conftest import (
    BIN,
    assert_thresholded,
    blobs,
    io_args,
    job_parameters,
    marker_blocks,
    run_cli,
    write_array,
)
from threshold_worker.commands import main
from threshold_worker.job import resolve
from threshold_worker.markers import BUCKET, MARKER_DIR, DoneMarkers, parse_name, runs
from threshold_worker.worker import BlockWorker


@pytest.mark.parametrize("seed", range(5))
def test_runs_cover_exactly_the_ids_and_never_cross_a_bucket(seed):
    rng = random.Random(seed)
    ids = {rng.randrange(3 * BUCKET) for _ in range(rng.randrange(1, 2000))}
    found = list(runs(rng.sample(sorted(ids), len(ids))))  # any order in
    names = [str(a) if a == b else f"{a}-{b}" for a, b in found]
    assert sorted(i for n in names for i in parse_name(n)) == sorted(ids)
    assert all(a // BUCKET == b // BUCKET for a, b in found)
    assert len(found) == len({i for i in ids if i - 1 not in ids or i % BUCKET == 0})


def test_markers_round_trip_and_ignore_other_names(tmp_path):
    markers = DoneMarkers(LocalStore(str(tmp_path)), "mask", "f" * 16)
    markers.mark([5, 0, 1, 2, 999, 1000, 1001, 1003])
    bucket0 = tmp_path / "mask" / MARKER_DIR / ("f" * 16) / "0"
    assert sorted(p.name for p in bucket0.iterdir()) == ["0-2", "5", "999"]
    (bucket0 / ".7.123.tmp").write_bytes(b"")  # what a killed write may leave
    (bucket0 / "8-x").write_bytes(b"")
    assert list(markers.missing(range(0, 1005))) == [3, 4, *range(6, 999), 1002, 1004]
    assert markers.count_done(range(0, 1005)) == 8


def test_a_damaged_block_is_recorded_and_the_others_are_done(tmp_path):
    """A damaged input chunk fails its block alone (see `ledger`): the blocks before and
    after it get their markers, and the rerun after the fix does only that block."""
    data = blobs((32, 8, 8), seed=41)
    container = tmp_path / "a.zarr"
    write_array(container, "raw", data, (8, 8, 8))
    spec = job_parameters(container, block_shape=(8, 8, 8))
    job = resolve(spec)
    job.prepare()
    chunk = container / "raw" / "c" / "2" / "0" / "0"  # the input of block 2 of 4
    good = chunk.read_bytes()
    chunk.write_bytes(b"not zstd")
    stats = BlockWorker(job).process(range(4))
    assert (stats.processed, stats.failed, stats.skipped) == (3, 1, 0)
    assert "raw/c/2/0/0 cannot be decoded" in stats.failures[0].records[0].error
    assert marker_blocks(container / "mask") == {0, 1, 3}

    chunk.write_bytes(good)
    stats = BlockWorker(resolve(spec)).process(range(4))
    assert (stats.processed, stats.skipped) == (1, 3)
    assert_thresholded(container, "mask", data, 0.5)


def _start_worker_job(
    tmp_path: Path, shape: tuple[int, ...], seed: int, side: int, threshold: float, *extra: str
) -> tuple[list[str], Path, np.ndarray]:
    """start-worker arguments of a job over `shape` in chunks and blocks of `side` voxels per
    axis, its output folder, its input."""
    data = blobs(shape, seed=seed)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (side,) * 3)
    out = tmp_path / "out.zarr"
    block = ",".join([str(side)] * 3)
    args = [*io_args(container, "raw", out, "mask", threshold), "--block-shape", block, *extra]
    return args, out / "mask", data


@pytest.fixture
def long_job(tmp_path: Path) -> tuple[list[str], Path, np.ndarray]:
    """A 1728-block job, long enough for one process to be stopped in the middle of it."""
    return _start_worker_job(tmp_path, (192, 192, 192), 42, 16, 0.6)


@pytest.fixture
def verified_job(tmp_path: Path) -> tuple[list[str], Path, np.ndarray]:
    """A 64-block job with --verify."""
    return _start_worker_job(tmp_path, (16, 32, 64), 43, 8, 0.5, "--verify")


def test_sigterm_records_finished_blocks_and_exits_143(long_job):
    """What Kubernetes does to a pod it deletes or preempts: SIGTERM, then SIGKILL later."""
    args, out_dir, data = long_job
    total = (192 // 16) ** 3
    assert run_cli("prepare", *args).code == 0
    proc = subprocess.Popen(
        [str(BIN / "threshold-worker"), "start-worker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def chunks_written() -> int:
        return sum(1 for p in (out_dir / "c").rglob("*") if p.is_file())

    deadline = time.monotonic() + 60
    while chunks_written() < 100 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # within the first second: most likely no marker is written yet
    assert proc.poll() is None, "the worker finished before it could be terminated"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated; rerun to resume" in err
    done = marker_blocks(out_dir)
    assert 0 < len(done) < total
    assert done == set(range(len(done))), "one process works through its blocks in order"

    rerun = run_cli("run", *args, "-n", "1")
    assert rerun.code == 0, rerun
    assert f"{total - len(done)} processed, {len(done)} already done" in rerun.out
    assert_thresholded(out_dir.parent, "mask", data, 0.6)


def _console_script(hook: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`threshold-worker ARGS` as its console script runs it (`sys.exit(console())`), with
    `hook` (Python source) run first: a SIGTERM sent at an exact point of the run."""
    entry = "from threshold_worker.commands import console\nsys.exit(console())"
    code = f"import os, signal, sys\n{hook}\n{entry}"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_sigterm_during_verify_exits_143_and_the_rerun_verifies_every_block(verified_job, caplog):
    """SIGTERM as the verifying pass begins (every block written and marked): exit 143 after
    unwinding, no marker taken back, and the rerun processes nothing and verifies all."""
    args, out_dir, data = verified_job
    hook = (
        "import threshold_worker.verify as v\n"
        "real = v.check_outputs\n"
        "def check_outputs(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*a, **k)\n"
        "v.check_outputs = check_outputs"
    )
    proc = _console_script(hook, "--log-level", "INFO", "start-worker", *args)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "verifying blocks 0-63 (all)" in proc.stderr and "verified" not in proc.stderr
    assert proc.stderr.endswith("terminated; rerun to resume\n")
    assert marker_blocks(out_dir) == set(range(64))

    with caplog.at_level("INFO", logger="threshold_worker.worker"):
        rerun = run_cli("start-worker", *args)
    assert rerun.code == 0, rerun
    assert "0 blocks processed, 64 already done" in rerun.out
    assert any(r.getMessage().endswith("mask: 0 wrong") for r in caplog.records)
    assert_thresholded(out_dir.parent, "mask", data, 0.5)


@pytest.mark.parametrize("outcome", ["verified", "terminated"])
def test_sigterm_while_the_process_exits_does_not_kill_it_by_the_signal(verified_job, outcome):
    """A SIGTERM after the command has unwound (here: from the last exit handler, the
    process's last Python code) finds the outcome decided. It once killed the process by the
    signal (returncode -15), though every block was written, marked and verified."""
    args, out_dir, data = verified_job
    late = "import atexit\natexit.register(os.kill, os.getpid(), signal.SIGTERM)"
    if outcome == "terminated":  # the exit after an earlier SIGTERM's unwinding
        late += (
            "\nimport threshold_worker.worker as w"
            "\nw._verify = lambda *a: os.kill(os.getpid(), signal.SIGTERM)"
        )
    proc = _console_script(late, "start-worker", *args)
    if outcome == "verified":
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("64 blocks processed, 0 already done")
    else:
        assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
        assert proc.stderr == "terminated; rerun to resume\n"
    assert marker_blocks(out_dir) == set(range(64))
    assert_thresholded(out_dir.parent, "mask", data, 0.5)


def test_an_in_process_call_restores_the_sigterm_handler_it_found(verified_job):
    """Only the console script, which ends with the command, ignores a late SIGTERM."""
    args, _, _ = verified_job
    before = signal.getsignal(signal.SIGTERM)
    assert run_cli("start-worker", *args).code == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_in_process_call_without_argv_restores_the_sigterm_handler_too(
    verified_job, monkeypatch, capsys
):
    """A program that calls `main()` on its own sys.argv goes on after it: only the console
    script says that the process exits after the command (`exiting=True`)."""
    args, out_dir, _ = verified_job
    monkeypatch.setattr(sys, "argv", ["threshold-worker", "start-worker", *args])
    before = signal.getsignal(signal.SIGTERM)
    main()
    assert capsys.readouterr().out.startswith("64 blocks processed, 0 already done")
    assert signal.getsignal(signal.SIGTERM) is before
    assert marker_blocks(out_dir) == set(range(64))


def _alive_with(text: str) -> list[int]:
    """Processes whose command line mentions `text` (worker processes of a run)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = (Path("/proc") / entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(entry))
    return pids


@pytest.mark.parametrize(
    ("sig", "group", "told"),
    [
        (signal.SIGTERM, False, "terminated; rerun to resume"),  # the kubelet's, to the pod
        (signal.SIGINT, True, "interrupted; rerun to resume"),  # Ctrl-C: the terminal's group
    ],
)
def test_sigterm_stops_a_local_run_and_its_processes_promptly(tmp_path, sig, group, told):
    """`run` with 2 processes: SIGTERM makes each worker record what it finished and end at
    once, instead of working through the range of (up to 1000) blocks it was handed; so
    does Ctrl-C, which reaches every process of the terminal's group.

    The input is 1024^3 voxels that are all the fill value (no chunk stored), so the run
    would write 262,144 chunks: long enough that stopping it early is unmistakable."""
    container = tmp_path / "in.zarr"
    zarr.create_array(
        str(container), name="raw", shape=(1024,) * 3, chunks=(16,) * 3, dtype="f4", fill_value=1
    )
    out = tmp_path / "sigterm-run.zarr"
    args = io_args(container, "raw", out, "mask", 0.5)
    proc = subprocess.Popen(
        [str(BIN / "threshold-worker"), "run", *args, "-n", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (out / "mask" / "c").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be terminated"
    if group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=10)  # a bound for a hang, not a speed test
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines()[-1] == told, err
    assert _alive_with(str(out)) == [], "worker processes outlived the run"
    done = marker_blocks(out / "mask")
    assert len(done) < 1000, "workers went on with their ranges after SIGTERM"
    for block in done:  # blocks of 2x2x2 chunks on a 32^3 grid, all foreground
        z, y, x = block // 1024, block // 32 % 32, block % 32
        for dz, dy, dx in itertools.product((0, 1), repeat=3):
            key = out / "mask" / "c" / str(2 * z + dz) / str(2 * y + dy) / str(2 * x + dx)
            assert key.is_file(), f"block {block} is marked but {key} is missing"
