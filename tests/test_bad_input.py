"""Bad input: one line naming the problem, exit code 2, nothing written, nothing touched."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import blobs, files_of, io_args, run_cli, run_script, write_array


@dataclass
class Case:
    name: str
    args: Callable[[Path], list[str]]
    words: tuple[str, ...]
    setup: Callable[[Path], None] = lambda tmp: None
    command: str = "run"
    env: Callable[[Path], dict[str, str]] = field(default=lambda tmp: {})


def std(
    tmp: Path, th: str = "0.5", od: str = "mask", oc: Path | None = None, id_: str = "raw"
) -> list[str]:
    return io_args(tmp / "in.zarr", id_, oc or tmp / "in.zarr", od, th)


def _complex(tmp: Path) -> None:
    zarr.create_array(
        str(tmp / "in.zarr"), name="cplx", shape=(8, 8, 8), chunks=(4, 4, 4), dtype="complex64"
    )


def _other_shape(tmp: Path) -> None:
    write_array(tmp / "in.zarr", "mask", np.zeros((10, 10, 10), np.uint8), (5, 5, 5))


def _other_dtype(tmp: Path) -> None:
    write_array(tmp / "in.zarr", "mask", np.zeros((32, 32, 48), np.float32), (8, 16, 16))


def _file(tmp: Path) -> None:
    (tmp / "notes.txt").write_text("a file, not a container")


def _options(text: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / "threshold.yaml").write_text(text)

    return setup


def _bad_voxel_attr(tmp: Path) -> None:
    arr = zarr.open_array(str(tmp / "in.zarr"), path="raw", mode="r+")
    arr.attrs["voxel_size"] = [4, 4]


def _existing_output(tmp: Path) -> None:
    """A valid uint8 output with the input's geometry, chunks (8, 16, 16), zarr v3."""
    write_array(
        tmp / "in.zarr", "mask", np.zeros((32, 32, 48), np.uint8), (8, 16, 16), voxel_size=(4, 4, 4)
    )


def _ome_image(tmp: Path) -> None:
    """An OME-Zarr image 'img' in the container, levels s0-s2 (what --pyramid 2 writes)."""
    root = zarr.open_group(str(tmp / "in.zarr"), mode="a")
    image = root.require_group("img")
    for k in range(3):
        image.create_array(f"s{k}", shape=(32 >> k,) * 3, chunks=(8, 8, 8), dtype="u1")
    datasets = [
        {"path": f"s{k}", "coordinateTransformations": [{"type": "scale", "scale": [2.0**k] * 3}]}
        for k in range(3)
    ]
    axes = [{"name": a, "type": "space"} for a in "zyx"]
    image.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}


def _options_env(tmp: Path) -> dict[str, str]:
    return {"THRESHOLD_OPTIONS_FILE": str(tmp / "threshold.yaml")}


CASES = [
    Case(
        "zarr v2 output in a zarr v3 container",
        lambda t: [*std(t), "--zarr-format", "2"],
        ("output_container", "in.zarr is a zarr v3 group", "not --zarr-format 2"),
    ),
    Case(
        "plain output into a level of an OME-Zarr image",
        lambda t: [*std(t, od="img/s0"), "--overwrite"],
        (
            "output_dataset",
            "is level s0 of the OME-Zarr image 'img', with levels s1-s2",
            "--ome-zarr -od img",
        ),
        setup=_ome_image,
    ),
    Case(
        "OME-Zarr output inside another OME-Zarr image",
        lambda t: [*std(t, od="img/inner"), "--ome-zarr"],
        ("output_dataset", "lies inside the OME-Zarr image 'img' (levels s0-s2)"),
        setup=_ome_image,
    ),
    Case(
        "missing container",
        lambda t: io_args(t / "nope.zarr", "raw", t / "o.zarr", "m", 0.5),
        ("input_container", "does not exist"),
    ),
    Case("missing dataset", lambda t: std(t, id_="nope"), ("input_dataset", "no array 'nope'")),
    Case(
        "dataset is a group",
        lambda t: std(t, id_="grp"),
        ("input_dataset", "is a group"),
        setup=lambda t: zarr.open_group(str(t / "in.zarr"), path="grp", mode="a") and None,
    ),
    Case(
        "non-numeric dtype",
        lambda t: std(t, id_="cplx"),
        ("input_dataset", "complex64", "real number"),
        setup=_complex,
    ),
    Case(
        "block not a multiple of chunk",
        lambda t: [*std(t), "--block-shape", "12,16,16"],
        (
            "block_shape",
            "not a multiple of the output chunk shape (8, 16, 16)",
            "use --block-shape 16,16,16",
        ),
    ),
    Case(
        "roi outside the array",
        lambda t: [*std(t), "--roi-offset", "0,0,0", "--roi-shape", "512,128,256"],
        (
            "roi",
            "outside",
            "; use --roi-offset 0,0,0 --roi-shape 128,128,192 (the voxels it covers)",
        ),
    ),
    Case(
        "zero roi shape",
        lambda t: [*std(t), "--roi-shape", "0,64,64"],
        ("roi_shape[0]", "greater than or equal to 1"),
    ),
    Case(
        "negative roi shape",
        lambda t: [*std(t), "--roi-shape", "-64,64,64"],
        ("roi_shape[0]", "greater than or equal to 1"),
    ),
    Case(
        "zero block shape",
        lambda t: [*std(t), "--block-shape", "0,16,16"],
        ("block_shape[0]", "greater than or equal to 1"),
    ),
    Case(
        "roi off the voxel grid",
        lambda t: [*std(t), "--roi-offset", "3,0,0", "--roi-shape", "64,64,64"],
        (
            "roi",
            "voxel grid",
            "; use --roi-offset 0,0,0 --roi-shape 68,64,64 (the voxels it covers)",
        ),
    ),
    Case(
        "roi with wrong arity",
        lambda t: [*std(t), "--roi-shape", "64,64"],
        ("roi_shape", "3 spatial axes"),
    ),
    Case(
        "roi offset alone with wrong arity",
        lambda t: [*std(t), "--roi-offset", "0,0"],
        ("roi_offset: (0, 0) has 2 values; the input has 3 spatial axes",),
    ),
    Case(
        "roi offset alone beyond the array",
        lambda t: [*std(t), "--roi-offset", "512,0,0"],
        ("roi_offset: (512, 0, 0) lies outside", "whose roi is [0:128, 0:128, 0:192]"),
    ),
    Case(
        "roi off the chunk grid with fit valid",
        lambda t: [
            *std(t),
            "--roi-offset",
            "4,0,0",
            "--roi-shape",
            "124,128,192",
            "--fit",
            "valid",
        ],
        (
            "roi.offset: voxel (1, 0, 0) is not on the output chunk shape grid (8, 16, 16), which "
            "fit=valid needs; use fit=shrink or an aligned offset, e.g. --roi-offset 32,0,0 "
            "--roi-shape 96,128,192",
        ),
    ),
    Case(
        "malformed integer list",
        lambda t: [*std(t), "--block-shape", "8,x,16"],
        ("--block-shape", "comma-separated integers"),
    ),
    Case(
        "output exists with another shape",
        std,
        ("output_dataset", "shape (10, 10, 10)", "--overwrite"),
        setup=_other_shape,
    ),
    Case(
        "output exists with another dtype",
        std,
        ("output_dataset", "dtype float32", "uint8"),
        setup=_other_dtype,
    ),
    Case(
        "output chunks disagree with the existing output",
        lambda t: [*std(t), "--output-chunks", "16,16,16"],
        ("output_chunks", "(16, 16, 16) differs", "has (8, 16, 16)", "--overwrite"),
        setup=_existing_output,
    ),
    Case(
        "zarr format disagrees with the existing output",
        lambda t: [*std(t), "--zarr-format", "2"],
        ("zarr_format", "2 differs", "has 3"),
        setup=_existing_output,
    ),
    Case(
        "output shards where the existing output has none",
        lambda t: [*std(t), "--output-shards", "16,32,48"],
        ("output_shards", "has none"),
        setup=_existing_output,
    ),
    Case(
        "dataset with a dot-dot segment",
        lambda t: std(t, od="masks/../raw"),
        ("output_dataset", "'.' or '..' segment"),
    ),
    Case(
        "output inside another array",
        lambda t: std(t, od="mask/sub"),
        ("output_dataset", "would lie inside the array", "/in.zarr/mask"),
        setup=_existing_output,
    ),
    Case(
        "empty output container",
        lambda t: io_args(t / "in.zarr", "raw", "", "m", 0.5),
        ("output_container", "at least 1 character"),
    ),
    Case(
        "file URL naming another host",
        lambda t: io_args(t / "in.zarr", "raw", "file://elsewhere/o.zarr", "m", 0.5),
        ("output_container", "names the host 'elsewhere'"),
    ),
    Case(
        "in-memory container",
        lambda t: io_args(t / "in.zarr", "raw", "memory://o.zarr", "m", 0.5),
        ("output_container", "memory:// lives inside one process"),
    ),
    *(
        Case(
            f"reserved dataset name {name}",
            lambda t, name=name: std(t, od=name),
            ("output_dataset", "reserved"),
        )
        for name in ("zarr.json", "a/.zgroup", ".zarray", "m/.zattrs")
    ),
    Case(
        "backslash in a dataset name", lambda t: std(t, od="a\\b"), ("output_dataset", "backslash")
    ),
    Case(
        "dataset name longer than a file name may be",
        lambda t: std(t, od="m" * 256),
        ("output_dataset", "longer than 255 bytes"),
    ),
    Case(
        "output equals input", lambda t: std(t, od="raw"), ("output_dataset", "is the input array")
    ),
    Case(
        "output inside input",
        lambda t: std(t, od="raw/mask"),
        ("output_dataset", "lies inside the input array"),
    ),
    Case(
        "output container is a file",
        lambda t: std(t, oc=t / "notes.txt"),
        ("output_container", "is a file"),
        setup=_file,
    ),
    Case(
        "output below a file",
        lambda t: std(t, oc=t / "notes.txt" / "o.zarr"),
        ("output_container", "is a file"),
        setup=_file,
    ),
    Case(
        "output dataset names a file",
        lambda t: std(t, oc=t / "w.zarr", od="notes.txt"),
        ("output_dataset", "w.zarr/notes.txt is a file, so", "cannot be an array"),
        setup=lambda t: (t / "w.zarr").mkdir() or (t / "w.zarr" / "notes.txt").write_text("x"),
    ),
    Case(
        "output container is a link to nowhere",
        lambda t: std(t, oc=t / "gone.zarr"),
        ("output_container", "gone.zarr is a link that leads nowhere"),
        setup=lambda t: (t / "gone.zarr").symlink_to(t / "missing"),
    ),
    Case(
        "output container is a loop of links",
        lambda t: std(t, oc=t / "a.zarr"),
        ("output_container", "a.zarr is a link that leads nowhere"),
        setup=lambda t: (t / "a.zarr").symlink_to(t / "b") or (t / "b").symlink_to(t / "a.zarr"),
    ),
    Case(  # was told as "unreadable metadata (OSError: [Errno 40])"
        "output dataset is a loop of links",
        lambda t: std(t, oc=t / "w.zarr", od="l1"),
        ("output_dataset", "w.zarr/l1 is a link that leads nowhere"),
        setup=lambda t: (
            (t / "w.zarr").mkdir()
            or (t / "w.zarr" / "l1").symlink_to("l2")
            or (t / "w.zarr" / "l2").symlink_to("l1")
        ),
    ),
    Case(  # ENAMETOOLONG would come mid-claim, after the owner record
        "output container name too long",
        lambda t: std(t, oc=t / ("a" * 256 + ".zarr")),
        ("output_container", "is longer than 255 bytes, the file-name limit"),
    ),
    Case(
        "output path too long",
        lambda t: std(t, oc=t.joinpath(*["d" * 200] * 20) / "o.zarr"),
        ("output_container", "the output's path is", "bytes long"),
    ),
    Case("threshold not a number", lambda t: std(t, th="abc"), ("-th", "'abc' is not a number")),
    # object-store keys are names: the store would write 'x/../o.zarr' literally
    Case(
        "object-store url with '..'",
        lambda t: io_args(t / "in.zarr", "raw", "s3://bucket/x/../o.zarr", "m", 0.5),
        ("output_container", "s3://bucket/x/../o.zarr has '..' segment"),
    ),
    Case(
        "object-store url with '//'",
        lambda t: io_args("s3://bucket//in.zarr", "raw", t / "o.zarr", "m", 0.5),
        ("input_container", "s3://bucket//in.zarr has an empty segment"),
    ),
    Case("threshold not finite", lambda t: std(t, th="nan"), ("threshold", "finite")),
    # Python's float() and int() read these as 10, 1 and 10: a typo is no number
    Case("threshold with '_'", lambda t: std(t, th="1_0"), ("-th", "'1_0' is not a number")),
    Case(
        "threshold beyond float64",
        lambda t: std(t, th="1e400"),
        ("-th", "'1e400' is beyond float64's range"),
    ),
    Case("threshold in other digits", lambda t: std(t, th="\u0967"), ("-th", "is not a number")),
    Case(
        "partitions with '_'",
        lambda t: [*std(t), "--partitions", "1_0"],
        ("--partitions", "'1_0' is not an integer"),
    ),
    Case(
        "block shape with '_'",
        lambda t: [*std(t), "--block-shape", "1_6,16,16"],
        ("--block-shape", "is not comma-separated integers"),
    ),
    Case("fit overhang", lambda t: [*std(t), "--fit", "overhang"], ("--fit", "overhang")),
    Case(
        "valid leaves no block",
        lambda t: [*std(t), "--fit", "valid", "--block-shape", "64,64,64"],
        ("block_shape", "no block"),
    ),
    Case(
        "shards not a multiple of chunks",
        lambda t: [*std(t), "--output-shards", "12,16,16"],
        ("output_shards", "multiple", "use --output-shards 16,16,16"),
    ),
    Case(
        "broken voxel_size attribute",
        std,
        ("voxel_size", "one per spatial axis"),
        setup=_bad_voxel_attr,
    ),
    Case(
        "malformed options file",
        std,
        ("options file", "not valid YAML"),
        setup=_options("compute_context: [unclosed\n"),
        env=_options_env,
    ),
    Case(
        "unknown compute context",
        std,
        ("compute_context.type", "'Slurm' is unknown", "Local, Kubernetes"),
        setup=_options("compute_context:\n  type: Slurm\n"),
        env=_options_env,
    ),
    Case(
        "bad compute context config",
        std,
        ("compute_context.config", "num_workers"),
        setup=_options("compute_context:\n  type: Local\n  config: {num_workers: 0}\n"),
        env=_options_env,
    ),
    Case(
        "partition without partitions",
        lambda t: [*std(t), "--partition", "1"],
        ("--partitions", "required"),
        command="start-worker",
    ),
    Case(
        "partition out of range",
        lambda t: [*std(t), "--partition", "3", "--partitions", "2"],
        ("--partition", "outside"),
        command="start-worker",
    ),
    Case(
        "stale fingerprint",
        lambda t: [*std(t), "--expect-fingerprint", "0123456789abcdef"],
        ("fingerprint", "changed since it was prepared"),
        command="start-worker",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(tmp_path, case: Case):
    write_array(tmp_path / "in.zarr", "raw", blobs((32, 32, 48)), (8, 16, 16), voxel_size=(4, 4, 4))
    case.setup(tmp_path)
    before = files_of(tmp_path, folders=True)
    result = run_cli(case.command, *case.args(tmp_path), env=case.env(tmp_path))
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    for word in case.words:
        assert word in lines[0], (word, lines[0])
    assert files_of(tmp_path, folders=True) == before, "bad input changed storage"


def test_there_are_enough_cases():
    assert len(CASES) >= 15


def test_console_script_exit_code_and_message(tmp_path):
    """The installed entry point, not just the function, exits with 2."""
    result = run_script("plan", *io_args(tmp_path / "x.zarr", "raw", tmp_path / "o.zarr", "m", 1))
    assert result.code == 2
    assert result.err.strip() == f"error: input_container: {tmp_path / 'x.zarr'} does not exist"
    assert not (tmp_path / "o.zarr").exists()
