"""No spelling of the input's location can be the output: input and output are compared as
file-system objects (real paths, device and inode) or as normalised object-store URLs, at
the container and at the array."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr
from upath import UPath

from conftest import BIN, blobs, io_args, run_cli, write_array
from threshold_worker.paths import overlap


@pytest.fixture
def uint8_input(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A uint8 input: the case where an output written over it would look plausible."""
    data = (blobs((16, 16, 16), seed=3) * 255).astype(np.uint8)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (8, 8, 8))
    return container, data


def _refused(result, *words: str) -> None:
    assert result.code == 2, result
    line = result.err.strip()
    assert "\n" not in line and line.startswith("error: output_dataset: "), line
    for word in words:
        assert word in line, line


def _unchanged(container: Path, data: np.ndarray) -> None:
    np.testing.assert_array_equal(zarr.open_array(str(container), path="raw")[...], data)


def test_a_symlinked_container_is_the_input(uint8_input, tmp_path):
    container, data = uint8_input
    link = tmp_path / "link.zarr"
    link.symlink_to(container)
    _refused(run_cli("run", *io_args(container, "raw", link, "raw", 0)), "is the input array")
    _unchanged(container, data)


@pytest.mark.parametrize(
    "spell",
    [
        lambda c: (f"file://{c}", "raw"),
        lambda c: (f"{c}/", "raw/"),
        lambda c: (f"{c.parent}/./{c.name}", "raw"),
        lambda c: (f"{c.parent}/x/../{c.name}", "raw"),
        lambda c: (str(c.parent), f"{c.name}/raw"),
        lambda c: (f"{c}/raw", ""),
    ],
    ids=[
        "file-url",
        "trailing-slashes",
        "dot",
        "dot-dot-in-container",
        "split-differently",
        "container-is-array",
    ],
)
def test_other_spellings_of_the_input(uint8_input, spell):
    container, data = uint8_input
    (container.parent / "x").mkdir(exist_ok=True)
    oc, od = spell(container)
    result = run_cli("run", *io_args(container, "raw", oc, od or "m", 0))
    if od:
        _refused(result, "is the input array")
    else:
        _refused(result, "lies inside the input array")
    _unchanged(container, data)


def test_outputs_inside_or_around_the_input_are_refused(uint8_input, tmp_path):
    container, data = uint8_input
    _refused(
        run_cli("run", *io_args(container, "raw", container, "raw/c/0/x", 0)),
        "lies inside the input array",
    )
    write_array(container, "a/b/raw", data, (8, 8, 8))
    _refused(
        run_cli("run", *io_args(container, "a/b/raw", container, "a", 0)),
        "contains the input array",
    )
    _unchanged(container, data)


def test_a_bind_mount_of_the_input_is_seen(uint8_input, tmp_path):
    """The same folder at two paths that realpath cannot relate: device and inode can."""
    container, data = uint8_input
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = io_args(container, "raw", mnt, "raw", 0)
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount --bind "$1" "$2" && w="$3" && shift 3 && exec "$w" run "$@"',
            "sh",
            str(container),
            str(mnt),
            str(BIN / "threshold-worker"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc
    assert "is the input array" in proc.stderr and "compared as files" in proc.stderr
    _unchanged(container, data)


def test_object_store_spellings():
    def s3(url: str) -> UPath:
        return UPath(url, endpoint_url="http://127.0.0.1:1")

    base = s3("s3://lab/em/in.zarr")
    assert overlap(base, "raw", s3("s3://lab//em/in.zarr/"), "raw") == "same"
    assert overlap(base, "raw", s3("s3a://lab/em/./in.zarr"), "raw") == "same"
    assert overlap(base, "raw", s3("s3://lab/em"), "in.zarr/raw/sub") == "inside"
    assert overlap(base, "raw/x", s3("s3://lab/em/in.zarr"), "raw") == "contains"
    assert overlap(base, "raw", s3("s3://lab/em/in.zarr"), "raw2") is None
    other_endpoint = UPath("s3://lab/em/in.zarr", endpoint_url="http://10.0.0.1:9000")
    assert overlap(base, "raw", other_endpoint, "raw") is None  # another server's bucket
    assert overlap(base, "raw", UPath("/lab/em/in.zarr"), "raw") is None


@pytest.mark.parametrize(
    "name", [".", "..", "a/../raw", "./raw", "a//b", "raw/.", ".threshold-done", "__x"]
)
@pytest.mark.parametrize("field", ["input_dataset", "output_dataset"])
def test_dataset_names_with_dot_segments_are_refused(uint8_input, name, field):
    container, data = uint8_input
    id_, od = ("raw", "mask")
    if field == "input_dataset":
        id_ = name
    else:
        od = name
    result = run_cli("run", *io_args(container, id_, container, od, 0))
    assert result.code == 2, result
    assert result.err.startswith(f"error: {field}: "), result.err
    assert len(result.err.strip().splitlines()) == 1
    _unchanged(container, data)
    assert sorted(p.name for p in container.iterdir()) == ["raw", "zarr.json"]


def test_an_input_reached_through_a_link_inside_the_output_is_refused(uint8_input, tmp_path):
    """The input spelled through a link planted inside the output array: replacing the
    output would delete the link, and the input would read as empty."""
    container, data = uint8_input
    out = tmp_path / "out.zarr"
    assert run_cli("run", *io_args(container, "raw", out, "mask", 100)).code == 0
    link = out / "mask" / "c" / "link.zarr"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(container)
    result = run_cli("run", *io_args(link, "raw", out, "mask", 0), "--overwrite")
    _refused(result, "contains the input array")
    assert link.is_symlink()
    _unchanged(container, data)


def test_file_urls_are_read_as_rfc_8089_says(uint8_input, tmp_path):
    """file://localhost/path and percent-escapes name the same local path, never a folder
    called 'localhost' or 'in%2Ezarr' below the working directory."""
    container, _ = uint8_input
    for url in (f"file://localhost{tmp_path}/a.zarr", f"file://{tmp_path}/b%2Ezarr"):
        assert run_cli("run", *io_args(container, "raw", url, "m", 100)).code == 0
    assert (tmp_path / "a.zarr" / "m" / "zarr.json").is_file()
    assert (tmp_path / "b.zarr" / "m" / "zarr.json").is_file()
    assert not Path("localhost").exists() and not (tmp_path / "b%2Ezarr").exists()


def test_dot_dot_after_a_link_is_the_links_parent_as_the_file_system_says(tmp_path):
    """`top/link/../in.zarr` with `top/link -> ../real/deep` is real/in.zarr to the OS, ls
    and zarr-python; read as text (the link and its `..` dropped) it was top/in.zarr: the
    mask of another array with exit 0, and an --overwrite that replaced a third one."""
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "top").mkdir()
    real, other = blobs((16, 16, 16), seed=1), blobs((16, 16, 16), seed=2)
    write_array(tmp_path / "real" / "in.zarr", "raw", real, (8, 8, 8))
    write_array(tmp_path / "top" / "in.zarr", "raw", other, (8, 8, 8))
    (tmp_path / "top" / "link").symlink_to("../real/deep")
    spelled = str(tmp_path / "top" / "link" / ".." / "in.zarr")
    done = run_cli("run", *io_args(spelled, "raw", tmp_path / "out.zarr", "m", 0.5))
    assert done.code == 0, done
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "out.zarr"), path="m")[...], (real > 0.5).astype(np.uint8)
    )
    args = io_args(tmp_path / "real" / "in.zarr", "raw", spelled, "raw", 0.5)
    _refused(run_cli("run", *args, "--overwrite"), "is the input array")
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "top" / "in.zarr"), path="raw")[...], other
    )
    _unchanged(tmp_path / "real" / "in.zarr", real)
