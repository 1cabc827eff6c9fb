"""Retries mean what the README says: what may pass is retried with back-off, what cannot
(no space, no permission, a read-only file system, no credentials) ends at once with one
line that names the path and what to do.

Real conditions, not mocks: a size-limited tmpfs and a read-only bind mount in a private
mount namespace (`unshare -m`, as root, which CI is), an unprivileged user (`setpriv`), and
a real S3 server (moto) stopped and started again in the middle of a run.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest
import zarr
from upath import UPath

from conftest import BIN, assert_thresholded, blobs, expected, io_args, write_array
from threshold_worker.errors import StorageUnavailable
from threshold_worker.local import Progress
from threshold_worker.storage import open_store

WORKER = str(BIN / "threshold-worker")


def in_namespace(script: str, *args: str, env: dict[str, str] | None = None):
    """Run `script` (sh, with "$@" = args) in a private mount namespace."""
    return subprocess.run(
        ["unshare", "-m", "sh", "-ec", script, "sh", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def one_line(stderr: str) -> str:
    lines = [x for x in stderr.strip().splitlines() if x]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def dense(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = blobs((64, 64, 64), seed=4)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (16, 16, 16))
    return container, data


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_full_disk_fails_at_once_naming_the_path(dense, tmp_path, workers):
    container, _ = dense
    full = tmp_path / "full"
    full.mkdir()
    result = in_namespace(
        'mount -t tmpfs -o size=48k tmpfs "$1"; shift; '
        '"$@" && echo unexpected-success || echo "exit=$?"; '
        'find "$TMPFS/out.zarr/mask/.threshold-done" -type f | wc -l',
        str(full),
        WORKER,
        "run",
        *io_args(container, "raw", full / "out.zarr", "mask", 0.3),
        "-n",
        workers,
        "--block-shape",
        "16,16,16",
        env={"TMPFS": str(full)},
    )
    out = result.stdout.split()
    assert out[0] == "exit=2", result
    line = one_line(result.stderr)
    assert line.startswith("error: output_container: no space left on the device holding "), line
    assert str(full / "out.zarr") in line and "rerun the same command" in line
    assert "retrying" not in result.stderr
    assert int(out[1]) > 0  # blocks finished before the disk filled kept their markers


def test_an_existing_output_on_a_read_only_file_system(dense, tmp_path):
    container, _ = dense
    out = tmp_path / "out.zarr"
    args = io_args(container, "raw", out, "mask", 0.3)
    assert subprocess.run([WORKER, "run", *args], capture_output=True).returncode == 0
    result = in_namespace(
        'mount --bind "$1" "$1"; mount -o remount,ro,bind "$1"; shift; exec "$@"',
        str(out),
        WORKER,
        "run",
        *io_args(container, "raw", out, "mask", 0.4),
        "--overwrite",
    )
    assert result.returncode == 2, result
    assert one_line(result.stderr) == (
        f"error: output_container: {out}/mask is on a read-only file system; "
        "the output needs one it can write"
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder an unprivileged user can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="threshold-perm-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def readable_input(shared: Path) -> Path:
    """A small input every user may read."""
    container = shared / "in.zarr"
    write_array(container, "raw", blobs((16, 16, 16), seed=1), (8, 8, 8))
    for p in [container, *container.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return container


def open_folder(path: Path) -> Path:
    """A folder every user may write."""
    path.mkdir()
    path.chmod(0o777)
    return path


def as_nobody(*args: str):
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", WORKER, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": "/tmp"},
    )


def test_an_input_this_user_cannot_read(shared_dir):
    container = readable_input(shared_dir)
    (container / "raw").chmod(0o700)
    out = open_folder(shared_dir / "out")
    result = as_nobody("run", *io_args(container, "raw", out / "o.zarr", "m", 0.5))
    assert result.returncode == 2, result
    line = one_line(result.stderr)
    assert line.startswith("error: input_"), line
    assert "permission denied" in line.lower() and str(container) in line
    assert not (out / "o.zarr").exists()


def test_a_chunk_of_the_input_this_user_cannot_read_is_named(shared_dir):
    """Refused in the middle of a run: the line names the chunk's path and the input."""
    container = readable_input(shared_dir)
    chunk = container / "raw" / "c" / "1" / "1" / "1"
    chunk.chmod(0o600)
    out = open_folder(shared_dir / "out")
    result = as_nobody("run", *io_args(container, "raw", out / "o.zarr", "m", 0.5), "-n", "1")
    assert result.returncode == 2, result
    assert one_line(result.stderr) == (
        f"error: input_container: permission denied on {chunk}: Permission denied; make it "
        "readable for this user (uid 65534), or fix the credentials' permissions, then rerun"
    )


def test_an_options_file_this_user_cannot_read_is_skipped(shared_dir):
    """~/.config of another user (HOME left pointing at it): optional, so not fatal."""
    container = readable_input(shared_dir)
    home = shared_dir / "home"
    (home / ".config" / "threshold-operator").mkdir(parents=True)
    options = home / ".config" / "threshold-operator" / "threshold.yaml"
    options.write_text("compute_context: {type: Local}\n")
    options.chmod(0o600)
    out = open_folder(shared_dir / "out")
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", WORKER, "run",
         *io_args(container, "raw", out / "o.zarr", "m", 0.5)],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
        cwd=str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"options file {options} cannot be read (Permission denied); skipped" in result.stderr


def wait_for_workers(pid: int, n: int, timeout: float = 60) -> list[int]:
    """The worker processes of run `pid` once all `n` are there: its forked children (its
    own command line), not any short-lived program a library may start meanwhile."""
    proc = Path(f"/proc/{pid}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            cmdline = (proc / "cmdline").read_bytes()  # empty until the exec is done
            for child in (proc / "task" / str(pid) / "children").read_text().split():
                if cmdline and Path(f"/proc/{child}/cmdline").read_bytes() == cmdline:
                    found.append(int(child))
        if len(found) == n:
            return found
        time.sleep(0.05)
    raise AssertionError(f"the {n} worker processes of {pid} did not appear")


@pytest.mark.parametrize("after", [0.0, 0.3, 1.0])
def test_a_killed_worker_process_ends_the_run_with_one_line(tmp_path, after):
    """A worker process killed (the out-of-memory killer, say), at any moment of its work:
    exit 1, resumable. The parent never waits on a lock a killed process may hold: once
    the progress counter's lock could stay held, and the run hung."""
    container = tmp_path / "in.zarr"
    zarr.create_array(
        str(container), name="raw", shape=(512,) * 3, chunks=(16,) * 3, dtype="f4", fill_value=1
    )
    proc = subprocess.Popen(
        [WORKER, "run", *io_args(container, "raw", tmp_path / "o.zarr", "m", 0.5), "-n", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    workers = wait_for_workers(proc.pid, 2)
    time.sleep(after)
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert one_line(err).startswith("error: a worker process was killed (out of memory?"), err


def test_the_progress_count_shares_no_lock_with_the_parent():
    """The worker processes count their blocks in slots of their own; the parent's sum
    takes no lock, so a process killed at any moment cannot leave the parent waiting. The
    one lock, taken once by each process as it starts, may stay held by a dead one."""
    progress = Progress(mp.get_context("fork"), 2)
    first, second = progress.claim(), progress.claim()
    assert (first, second, progress.claim()) == (0, 1, -1)  # no third process, no slot
    progress.add(first, 10)
    progress.add(second, 5)
    progress.add(second, 5)
    progress.add(-1, 7)  # counted nowhere
    assert progress.handed_out.get_lock().acquire(timeout=1)  # as a process killed starting
    assert progress.totals() == (3, 20)


def test_an_existing_output_this_user_cannot_write(shared_dir):
    container = readable_input(shared_dir)
    args = io_args(container, "raw", shared_dir / "out.zarr", "m", 0.5)
    first = subprocess.run([WORKER, "run", *args], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr  # written by root: nobody may not touch it
    result = as_nobody("run", *args[:-2], "-th", "0.7", "--overwrite")
    assert result.returncode == 2, result
    line = one_line(result.stderr)
    assert line.startswith(f"error: output_container: {shared_dir}/out.zarr/m is not writable")
    assert "uid 65534" in line


# -- object stores ----------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Outage:
    """A TCP proxy in front of the S3 server that can go down: `down()` closes its port and
    every connection through it (what a restarting endpoint does to its clients; stopping
    moto's threaded server would leave kept-alive connections served), `up()` listens on
    the same port again."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = _port()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.up()

    def up(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.listener.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def down(self) -> None:
        self.running = False
        self.thread.join()
        self.listener.close()
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.conns.clear()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            server = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 16):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def test_an_s3_outage_in_the_middle_of_a_run_is_ridden_out(s3_server, request):
    """The endpoint goes away for 6 s while blocks are being written (longer than botocore's
    own retries last, with AWS_MAX_ATTEMPTS=1): its port closes and every open connection
    drops. Then it comes back
    on the same port: the worker says it is retrying and finishes with a correct mask."""
    upstream = int(s3_server["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])
    proxy = Outage(upstream)
    # botocore's own retries (AWS_MAX_ATTEMPTS) kept short, so that it is the worker's that
    # ride the outage out: left at their default they sometimes outlast it unseen.
    env = {
        **s3_server,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        "AWS_MAX_ATTEMPTS": "1",
    }
    url = f"s3://lab-data/{request.node.name}/in.zarr"
    data = blobs((128, 128, 128), seed=9)  # 512 blocks: seconds of writes, even on a busy CI
    write_array(None, "raw", data, (16, 16, 16), store=open_store(UPath(url)))
    proc = subprocess.Popen(
        [WORKER, "run", *io_args(url, "raw", url, "mask", 0.5), "-n", "1",
         "--block-shape", "16,16,16"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    )  # fmt: skip
    s3 = boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"])  # not through the proxy
    prefix = f"{request.node.name}/in.zarr/mask/c/"  # the first chunk written
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if s3.list_objects_v2(Bucket="lab-data", Prefix=prefix).get("KeyCount", 0):
            break
        time.sleep(0.05)
    proxy.down()
    written = s3.list_objects_v2(Bucket="lab-data", Prefix=prefix).get("KeyCount", 0)
    assert proc.poll() is None and written < 100, (
        f"the run wrote {written} chunks before the outage"
    )
    time.sleep(6)
    proxy.up()
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        proxy.down()
    assert proc.returncode == 0, err
    assert "retrying in" in err and "Traceback" not in err and "ERROR" not in err, err
    out = zarr.open_array(open_store(UPath(url), read_only=True), path="mask", mode="r")
    np.testing.assert_array_equal(out[...], expected(data, 0.5))


def test_no_credentials_is_one_line_and_exit_2(s3_server, tmp_path, request):
    url = f"s3://lab-data/{request.node.name}/in.zarr"
    write_array(None, "raw", blobs((8, 8, 8)), (8, 8, 8), store=open_store(UPath(url)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ACCESS")}
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true")
    for args, field in (
        (io_args(url, "raw", tmp_path / "o.zarr", "m", 0.5), "input_container"),
        (io_args(tmp_path / "nothing.zarr", "raw", url, "m", 0.5), "input_container"),
    ):
        result = subprocess.run([WORKER, "run", *args], capture_output=True, text=True, env=env)
        assert result.returncode == 2, result
        line = one_line(result.stderr)
        assert line.startswith(f"error: {field}: "), line
    local = tmp_path / "in.zarr"
    write_array(local, "raw", blobs((8, 8, 8)), (8, 8, 8))
    result = subprocess.run(
        [WORKER, "run", *io_args(local, "raw", url, "m2", 0.5)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2, result
    assert one_line(result.stderr).startswith("error: output_container: no usable credentials")
    assert not (local / "m2").exists()


def test_an_endpoint_that_refuses_connections_is_one_line_and_exit_1():
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_port()}",
        "AWS_MAX_ATTEMPTS": "1",  # botocore's own retries: not what this test is about
        "THRESHOLD_RETRY_DELAYS": "0.1,0.1",
    }
    result = subprocess.run(
        [WORKER, "run", *io_args("s3://lab/in.zarr", "raw", "s3://lab/in.zarr", "m", 0.5)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert [x for x in lines if "retrying in" in x] and len(lines) == 3, result.stderr
    assert lines[-1].startswith(
        "error: input_container: opening the input on s3://lab/in.zarr/raw failed 3 times"
    )
    assert "check the endpoint" in lines[-1] and "Exception ignored" not in result.stderr


def test_an_existing_outputs_damaged_metadata_is_bad_input(dense, tmp_path):
    container, data = dense
    out = tmp_path / "out.zarr"
    args = io_args(container, "raw", out, "mask", 0.3)
    assert subprocess.run([WORKER, "run", *args], capture_output=True).returncode == 0
    (out / "mask" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "arr')
    result = subprocess.run([WORKER, "run", *args], capture_output=True, text=True)
    assert result.returncode == 2, result
    line = one_line(result.stderr)
    assert line.startswith(f"error: output_dataset: {out}/mask exists but its zarr metadata")
    assert "--overwrite" in line
    again = subprocess.run([WORKER, "run", *args, "--overwrite"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert_thresholded(out, "mask", data, 0.3)


def test_a_retried_failure_counts_the_time_of_its_attempts(monkeypatch):
    """Each attempt at an unreachable endpoint waits for its connect timeout: the message
    said 'over about 2 s' (the sleeps between attempts) of a prepare pod that took 28 s."""
    from types import SimpleNamespace

    from threshold_worker import retry as retries

    now = [0.0]

    def attempt() -> None:
        now[0] += 10.0  # a connect timeout
        raise ConnectionError("connect timeout")

    clock = SimpleNamespace(monotonic=lambda: now[0], sleep=lambda s: None)
    monkeypatch.setattr(retries, "time", clock)
    monkeypatch.delenv("THRESHOLD_RETRY_DELAYS", raising=False)
    with pytest.raises(StorageUnavailable) as failed:
        retries.retry(attempt, "opening the output", "s3://b/o.zarr", waits=[0.5, 1.0])
    assert "failed 3 times over about 30 s (ConnectionError: connect timeout)" in str(failed.value)
