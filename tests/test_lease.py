"""Two different jobs never write one output at once; the processes and pods of one job
share it. Locally with flock (the kernel releases a dead holder's locks); on a real S3
server (moto on 127.0.0.1) with a conditional create and heartbeats."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr
from upath import UPath

from conftest import (
    BIN,
    blobs,
    expected,
    io_args,
    job_parameters,
    run_cli,
    run_script,
    write_array,
)
from threshold_worker.errors import OutputConflict
from threshold_worker.job import resolve
from threshold_worker.lease import Holder, LocalLease, RemoteLease
from threshold_worker.ownership import OWNER_FILE, OutputArea
from threshold_worker.safefiles import SafeDir
from threshold_worker.storage import open_store


def holder(fingerprint: str, threshold: float = 0.5) -> Holder:
    return Holder.me(fingerprint, threshold)


def test_one_job_shares_another_is_refused_with_the_holders_identity(tmp_path):
    files = SafeDir(str(tmp_path / "out"))
    a1 = LocalLease(files, holder("aaaa", 0.5), "OUT")
    a2 = LocalLease(SafeDir(str(tmp_path / "out")), holder("aaaa", 0.5), "OUT")
    b = LocalLease(SafeDir(str(tmp_path / "out")), holder("bbbb", 0.9), "OUT")
    assert a1.acquire(lambda: "claimed") == "claimed"
    assert a2.acquire(lambda: 2) == 2  # the same job: shared
    with pytest.raises(OutputConflict) as refused:
        b.acquire(lambda: None)
    message = str(refused.value)
    assert message.startswith("output_dataset: OUT is being written by another job right now")
    assert "threshold 0.5, plan aaaa, started 20" in message and f"(pid {os.getpid()})" in message
    assert "ends by itself" not in message  # a lock: its holder is alive
    a1.release()
    with pytest.raises(OutputConflict):  # a2 still holds it
        b.acquire(lambda: None)
    a2.release()
    assert b.acquire(lambda: "mine") == "mine"
    b.release()


def test_a_dead_holder_does_not_block_the_next_job(tmp_path):
    """A holder killed with SIGKILL: the kernel drops its lock; its file is cleaned up."""
    out = tmp_path / "out"
    code = (
        "import sys, time; sys.path[:0] = sys.argv[2:]\n"
        "from threshold_worker.lease import Holder, LocalLease\n"
        "from threshold_worker.safefiles import SafeDir\n"
        "LocalLease(SafeDir(sys.argv[1]), Holder.me('dead', 0.1), 'OUT').acquire(lambda: None)\n"
        "print('held', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(out), *sys.path], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    with pytest.raises(OutputConflict, match=r"threshold 0\.1"):
        LocalLease(SafeDir(str(out)), holder("live"), "OUT").acquire(lambda: None)
    proc.kill()
    proc.wait()
    lease = LocalLease(SafeDir(str(out)), holder("live"), "OUT")
    lease.acquire(lambda: None)
    assert sorted(os.listdir(out / ".threshold-lease")) == ["live.lock", "mutex"]
    lease.release()


def test_claims_of_one_output_are_serialised(tmp_path):
    """The claim runs inside the mutex: of two jobs arriving at once, one claims and the
    other sees it as the holder."""
    outcomes = []

    def attempt(fp: str) -> str:
        lease = LocalLease(SafeDir(str(tmp_path / "out")), holder(fp), "OUT")
        try:
            lease.acquire(lambda: time.sleep(0.2))
        except OutputConflict:
            return "refused"
        outcomes.append(fp)
        time.sleep(0.3)
        lease.release()
        return "held"

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(attempt, ["aaaa", "bbbb"]))
    assert sorted(results) == ["held", "refused"] and len(outcomes) == 1


@pytest.fixture
def race_volume(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = blobs((64, 64, 64), seed=12)
    container = tmp_path / "race.zarr"
    write_array(container, "raw", data, (8, 8, 8))
    return container, data


def test_two_jobs_with_different_thresholds_raced_into_one_output(race_volume):
    """Started at the same moment, several times over: whatever the order, the output is
    exactly the mask of the job its record names, never a mix; a refused job exits 2."""
    container, data = race_volume
    for round_ in range(4):
        procs = [
            subprocess.Popen(
                [
                    str(BIN / "threshold-worker"),
                    "run",
                    *io_args(container, "raw", container, "mask", t),
                    "-n",
                    "1",
                    "--overwrite",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for t in (0.3, 0.7)
        ]
        results = [(p.wait(120), p.stderr.read() if p.stderr else "") for p in procs]
        for code, err in results:
            assert code in (0, 2), err
            if code == 2:
                assert "being written by another job right now" in err or "another job" in err
        assert any(code == 0 for code, _ in results), results
        record = json.loads((container / "mask" / OWNER_FILE).read_text())
        got = zarr.open_array(str(container), path="mask")[...]
        np.testing.assert_array_equal(got, expected(data, record["threshold"]), f"round {round_}")
        assert record["state"] == "complete"


def test_a_job_refused_while_another_replaces_an_ome_zarr_image_prints_one_line(race_volume):
    """While a job replaces an image, its s0 is for a moment a folder without metadata (the
    data cleared, the array not yet made). Another job that looks then is refused by the
    lease with one line, exit 2, and no warning of zarr's about that folder before it."""
    container, _ = race_volume
    given = ["--ome-zarr", "--overwrite", "-n", "1"]
    assert run_cli("run", *io_args(container, "raw", container, "mask", 0.5), *given).code == 0
    spec = job_parameters(container, threshold=0.3, ome_zarr=True, overwrite=True)
    job = resolve(spec)
    with job.claim():  # the replacing job, holding the lease
        area = OutputArea(job.output_store(), job.array_dataset)
        area.clear_data()  # what its claim does before it makes the array anew
        assert not (container / "mask" / "s0" / "zarr.json").exists()
        loser = run_script("run", *io_args(container, "raw", container, "mask", 0.7), *given)
    assert loser.code == 2, loser
    assert loser.err.startswith(
        f"error: output_dataset: {container}/mask/s0 is being written by another job right "
        "now (threshold 0.3, plan "
    )
    assert loser.err.count("\n") == 1, loser.err


@pytest.fixture
def s3_lease(s3_server, request):
    base = f"lab-data/{request.node.name}/out.zarr/mask"
    fs = UPath(f"s3://{base}").fs
    return fs, base


def test_object_store_lease_shares_refuses_and_expires(s3_lease, monkeypatch):
    fs, base = s3_lease
    a = RemoteLease(fs, base, holder("aaaa", 0.25), "S3OUT")
    a2 = RemoteLease(fs, base, holder("aaaa", 0.25), "S3OUT")
    b = RemoteLease(fs, base, holder("bbbb", 0.75), "S3OUT")
    a.acquire(lambda: None)
    a2.acquire(lambda: None)
    with pytest.raises(OutputConflict, match=r"threshold 0\.25, plan aaaa"):
        b.acquire(lambda: None)
    assert not fs.exists(f"{base}/.threshold-lease/mutex")  # released after each attempt
    a.release()
    a2.release()
    b.acquire(lambda: None)
    b.release()
    # A holder that died without releasing: its heartbeat object ages out.
    monkeypatch.setenv("THRESHOLD_LEASE_TTL", "2")
    dead = RemoteLease(fs, base, holder("dead", 0.1), "S3OUT")
    dead.acquire(lambda: None)
    dead._stop.set()  # it stops beating, as a killed process would
    with pytest.raises(OutputConflict, match=r"threshold 0\.1"):
        RemoteLease(fs, base, holder("next"), "S3OUT").acquire(lambda: None)
    time.sleep(3.5)  # S3 times are whole seconds
    nxt = RemoteLease(fs, base, holder("next"), "S3OUT")
    nxt.acquire(lambda: None)
    nxt.release()
    # A mutex left by a holder that died inside it expires too.
    fs.pipe_file(f"{base}/.threshold-lease/mutex", b"{}")
    time.sleep(3.5)
    last = RemoteLease(fs, base, holder("last"), "S3OUT")
    last.acquire(lambda: None)
    last.release()


def test_jobs_on_s3_are_refused_while_another_writes(s3_server, request):
    url = f"s3://lab-data/{request.node.name}/in.zarr"
    from threshold_worker.storage import open_store

    data = blobs((32, 32, 32), seed=2)
    write_array(None, "raw", data, (16, 16, 16), store=open_store(UPath(url)))
    fs = UPath(url).fs
    base = f"lab-data/{request.node.name}/in.zarr/mask"
    other = RemoteLease(fs, base, holder("ffff", 0.9), "S3OUT")
    other.acquire(lambda: None)
    try:
        result = subprocess.run(
            [str(BIN / "threshold-worker"), "run", *io_args(url, "raw", url, "mask", 0.5)],
            capture_output=True,
            text=True,
            env={**os.environ, **s3_server},
            timeout=120,
        )
    finally:
        other.release()
    assert result.returncode == 2, result.stderr
    assert "being written by another job right now (threshold 0.9, plan ffff" in result.stderr
    # a holder that died keeps an object-store lease a while: said, with how long at most
    assert re.search(r"or did until it stopped: its lease ends by itself within \d+ s if it "
                     r"no longer runs; wait for it", result.stderr), result.stderr  # fmt: skip


def test_a_writer_paused_past_its_lease_on_s3_writes_nothing_after_it_wakes(
    s3_server, request, tmp_path
):
    """kill -STOP a run on S3 until its lease lapses; another job takes the output and
    finishes; kill -CONT: the first one finds its lease gone and stops. S3 cannot fence off
    the requests that were in flight when it froze (at most 4 blocks a process): if any
    landed, the first run says so and how to repair; it never writes a block more."""
    data = blobs((64, 64, 64), seed=14)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (16, 16, 16))
    url = f"s3://lab-data/{request.node.name}/out.zarr"
    # A TTL of 4 s: short for a quick test, long enough that the second run renews its
    # own lease in time on a CI machine busy with the rest of the suite.
    env = {**os.environ, **s3_server, "THRESHOLD_LEASE_TTL": "4"}
    common = ["--output-chunks", "8,8,8", "--block-shape", "8,8,8", "-n", "1"]
    first = subprocess.Popen(
        [str(BIN / "threshold-worker"), "run", *io_args(container, "raw", url, "m", 0.3), *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    fs = UPath(url).fs
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None:
        fs.invalidate_cache()
        if fs.exists(f"lab-data/{request.node.name}/out.zarr/m/c"):
            break
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before it could be paused"
    first.send_signal(signal.SIGSTOP)
    time.sleep(6)  # past the TTL: the first run's heartbeat object goes stale
    second = subprocess.run(
        [str(BIN / "threshold-worker"), "run", *io_args(container, "raw", url, "m", 0.7), *common,
         "--overwrite"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )  # fmt: skip
    first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=60)
    assert second.returncode == 0, second.stderr
    assert first.returncode in (1, 2), err
    assert "lease on" in err, err
    out = zarr.open_array(open_store(UPath(url), read_only=True), path="m", mode="r")[...]
    wrong = out != expected(data, 0.7)
    blocks = {(z // 8, y // 8, x // 8) for z, y, x in zip(*np.nonzero(wrong), strict=True)}
    assert len(blocks) <= 4, f"{len(blocks)} blocks of the first job leaked into the second's"
    if blocks:
        assert "rerun that job with --overwrite" in err, err
        repair = subprocess.run(
            [str(BIN / "threshold-worker"), "run", *io_args(container, "raw", url, "m", 0.7),
             *common, "--overwrite"],
            capture_output=True,
            text=True,
            env=env,
        )  # fmt: skip
        assert repair.returncode == 0, repair.stderr
        out = zarr.open_array(open_store(UPath(url), read_only=True), path="m", mode="r")[...]
        np.testing.assert_array_equal(out, expected(data, 0.7))
