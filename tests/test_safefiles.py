"""Writes stay inside the output: no symlink below the output array is ever followed, and
temporary files cannot be predicted or redirected."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import assert_thresholded, io_args, run_cli
from threshold_worker.errors import StorageError
from threshold_worker.safefiles import TMP_DIR, SafeDir


def _run(container: Path, *extra: str, th: float = 0.5, od: str = "mask"):
    return run_cli("run", *io_args(container, "raw", container, od, th), "-n", "1", *extra)


def test_a_chunk_folder_linked_elsewhere_is_refused_and_nothing_outside_is_written(
    volume, tmp_path
):
    container, _ = volume
    assert _run(container).code == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "0").write_bytes(b"precious")
    chunk_dir = container / "mask" / "c" / "0" / "0"
    for p in chunk_dir.iterdir():
        p.unlink()
    chunk_dir.rmdir()
    chunk_dir.symlink_to(outside)
    shutil.rmtree(container / "mask" / ".threshold-done")  # markers lost: every block redone
    result = _run(container)
    assert result.code == 2, result
    assert result.err.strip().splitlines()[-1] == (
        f"error: output_dataset: {chunk_dir} is a symbolic link (or not a folder) inside the "
        "output array, and the worker never writes through links: remove it, then rerun"
    )
    assert sorted(p.name for p in outside.iterdir()) == ["0"]
    assert (outside / "0").read_bytes() == b"precious"


def test_overwrite_removes_the_link_itself_not_what_it_points_to(volume, tmp_path):
    container, data = volume
    assert _run(container).code == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"precious")
    (container / "mask" / "c" / "9").symlink_to(outside)
    result = _run(container, "--overwrite", th=0.3)
    assert result.code == 0, result
    assert (outside / "keep").read_bytes() == b"precious"
    assert not (container / "mask" / "c" / "9").exists()
    assert_thresholded(container, "mask", data, 0.3)


def test_a_chunk_file_linked_elsewhere_is_refused_not_followed(tmp_path):
    files = SafeDir(str(tmp_path / "out"))
    files.write("c/0/0", b"first")
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    (tmp_path / "out" / "c" / "0" / "0").unlink()
    (tmp_path / "out" / "c" / "0" / "0").symlink_to(target)
    for attempt in (
        lambda: files.write("c/0/0", b"second"),
        lambda: files.read("c/0/0"),
        lambda: files.touch("c/0/0"),
    ):
        with pytest.raises(StorageError, match="is a symbolic link"):
            attempt()
    assert target.read_bytes() == b"precious"


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-file", "named-temporary"])
def test_markers_and_chunks_are_written_below_the_root_only(tmp_path, unnamed):
    files = SafeDir(str(tmp_path / "out"))
    files._unnamed = unnamed and hasattr(os, "O_TMPFILE")
    files.write("c/1/2/3", b"new")
    files.write("c/1/2/3", b"newer")  # the replace path
    files.touch(".threshold-done/f/0/0-7")
    assert (tmp_path / "out/c/1/2/3").read_bytes() == b"newer"
    assert (tmp_path / "out/.threshold-done/f/0/0-7").is_file()
    assert os.listdir(tmp_path / "out" / TMP_DIR) == []  # nothing left behind


def test_named_temporaries_are_unpredictable_and_never_follow_a_planted_link(tmp_path, monkeypatch):
    """Without O_TMPFILE (NFS, FUSE), the temporary's name is random and it is created with
    O_EXCL|O_NOFOLLOW: links planted at the names the old code used lead nowhere."""
    real_open = os.open
    flags_seen: list[int] = []

    def no_tmpfile(path, flags, *args, **kwargs):
        if hasattr(os, "O_TMPFILE") and flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        if flags & os.O_CREAT:
            flags_seen.append(flags)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_tmpfile)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    root = tmp_path / "out"
    (root / "c" / "0").mkdir(parents=True)
    (root / TMP_DIR).mkdir()
    for name in (f".0.{os.getpid()}.tmp", "0.tmp"):  # the old, predictable spellings
        (root / "c" / "0" / name).symlink_to(victim)
        (root / TMP_DIR / name).symlink_to(victim)
    files = SafeDir(str(root))
    files.write("c/0/0", b"data")
    files.write("c/0/0", b"again")
    assert victim.read_bytes() == b"precious"
    assert (root / "c/0/0").read_bytes() == b"again"
    assert files._unnamed is False
    assert flags_seen and all(f & os.O_EXCL and f & os.O_NOFOLLOW for f in flags_seen)


def test_stale_temporaries_are_removed_when_a_run_starts(volume):
    container, data = volume
    assert _run(container).code == 0
    tmp = container / "mask" / TMP_DIR
    tmp.mkdir(exist_ok=True)
    stale, fresh = tmp / "aaaa.123", tmp / "bbbb.456"
    stale.write_bytes(b"left by a killed run")
    fresh.write_bytes(b"being written by a live process")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert _run(container).code == 0
    assert not stale.exists() and fresh.exists()
    assert_thresholded(container, "mask", data, 0.5)


def test_a_link_in_the_lease_folder_is_refused_at_once(volume, tmp_path):
    container, _ = volume
    assert _run(container).code == 0
    mutex = container / "mask" / ".threshold-lease" / "mutex"
    mutex.unlink()
    mutex.symlink_to(tmp_path / "elsewhere")
    result = _run(container)
    assert result.code == 2, result
    assert f"{mutex} is a symbolic link" in result.err and "retrying" not in result.err
    assert not (tmp_path / "elsewhere").exists()
