"""OME-Zarr in and out: inputs written by ome-zarr-py (0.4 on zarr v2, 0.5 on zarr v3),
outputs checked by ome-zarr-models, the validator of the OME-Zarr specification."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_image as ome_write_image
from ome_zarr.writer import write_multiscale

from conftest import (
    assert_thresholded,
    blobs,
    expected,
    files_of,
    io_args,
    run_cli,
    write_array,
)
from threshold_worker import ome
from threshold_worker.arrays import ZarrArray, ZarrArrayConfig
from threshold_worker.errors import InputError
from threshold_worker.job import resolve
from threshold_worker.metadata import geometry
from threshold_worker.params import JobParameters

# Translations need ome-zarr-py's older `coordinate_transformations` argument (its newer
# `scale` sets only scales); it warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ome_zarr.*")

FORMATS = {2: FormatV04(), 3: FormatV05()}
AXES = [
    {"name": "c", "type": "channel"},
    {"name": "z", "type": "space", "unit": "nanometer"},
    {"name": "y", "type": "space", "unit": "nanometer"},
    {"name": "x", "type": "space", "unit": "nanometer"},
]


def write_image(
    path: Path,
    data: np.ndarray,
    zarr_format: int,
    transforms: list[list[dict[str, Any]]] | None = None,
    axes: list[dict[str, str]] | None = None,
) -> None:
    """An OME-Zarr image of two levels (s0, s1 = s0 downsampled by 2), as ome-zarr-py
    writes it: per-level scale and translation."""
    axes = axes or AXES
    spatial = [slice(None) if a["type"] == "channel" else slice(None, None, 2) for a in axes]
    transforms = transforms or [
        [{"type": "scale", "scale": [1, 8, 4, 4]}, {"type": "translation", "translation": [0, 80, 40, 0]}],
        [{"type": "scale", "scale": [1, 16, 8, 8]}, {"type": "translation", "translation": [0, 84, 42, 2]}],
    ]  # fmt: skip
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    write_multiscale(
        [data, data[tuple(spatial)]],
        root,
        fmt=FORMATS[zarr_format],
        axes=axes,
        coordinate_transformations=transforms,
        storage_options={"chunks": tuple(min(8, s) for s in data.shape)},
        name="raw",
    )


def edit_multiscales(path: Path, zarr_format: int, edit: Any) -> None:
    """Change the image's multiscales metadata in place (`edit` gets the first image)."""
    group = zarr.open_group(str(path), mode="r+")
    attrs = group.attrs.asdict()
    images = attrs["ome"]["multiscales"] if zarr_format == 3 else attrs["multiscales"]
    edit(images[0])
    group.attrs.put(attrs)


def validated(path: Path, group_path: str, zarr_format: int) -> Any:
    """The output group as ome-zarr-models reads it: it raises on what the spec refuses."""
    group = zarr.open_group(str(path), path=group_path, mode="r")
    if zarr_format == 3:
        from ome_zarr_models.v05.image import Image

        return Image.from_zarr(group).attributes.ome
    from ome_zarr_models.v04.image import Image
    from pydantic_zarr.v2 import ArraySpec, GroupSpec

    # ome-zarr-models 1.6/1.7 leave v04.Image's forward references unresolved under
    # pydantic 2.13+ (the 1.7 wheel pins pydantic<2.13 for it): resolve them here.
    Image.model_rebuild(_types_namespace={"ArraySpec": ArraySpec, "GroupSpec": GroupSpec})
    return Image.from_zarr(group).attributes


@pytest.fixture(params=[2, 3], ids=["ome-0.4-zarr-v2", "ome-0.5-zarr-v3"])
def image(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, np.ndarray, int]:
    data = blobs((2, 16, 24, 32), seed=4)
    path = tmp_path / "img.zarr"
    write_image(path, data, request.param)
    return path, data, request.param


# -- input ------------------------------------------------------------------------------


def test_input_level_geometry_comes_from_multiscales(image):
    path, _, _ = image
    s0 = ZarrArray(ZarrArrayConfig("s0", path, "s0", mode="r"))
    assert s0.axes == ["c", "z", "y", "x"]
    assert s0.num_channels == 2
    assert tuple(s0.voxel_size) == (8, 4, 4)
    assert tuple(s0.roi.offset) == (80, 40, 0)
    assert s0._metadata.units == ("nm", "nm", "nm")
    s1 = ZarrArray(ZarrArrayConfig("s1", path, "s1", mode="r"))
    assert tuple(s1.voxel_size) == (16, 8, 8)
    assert tuple(s1.roi.offset) == (84, 42, 2)


@pytest.mark.parametrize("fmt", [2, 3])
def test_input_written_by_ome_zarr_py_defaults(tmp_path, fmt):
    """ome-zarr-py's own pyramid: scales from `scale`, half-voxel translations per level."""
    root = zarr.open_group(str(tmp_path / "d.zarr"), mode="w", zarr_format=fmt)
    ome_write_image(blobs((16, 16, 16), seed=3), root, fmt=FORMATS[fmt], axes=["z", "y", "x"],
                    scale={"z": 8.0, "y": 4.0, "x": 4.0},
                    axes_units={a: "nanometer" for a in "zyx"},
                    scale_factors=[{"z": 2, "y": 2, "x": 2}],
                    storage_options={"chunks": (8, 8, 8)})  # fmt: skip
    s1 = ZarrArray(ZarrArrayConfig("s1", tmp_path / "d.zarr", "s1", mode="r"))
    assert tuple(s1.voxel_size) == (16, 8, 8)
    assert tuple(s1.roi.offset) == (4, 2, 2)
    assert s1.axes == ["z", "y", "x"]


@pytest.mark.parametrize("fmt", [2, 3])
def test_unitless_half_voxel_translations_of_ome_zarr_py_levels(tmp_path, fmt):
    """ome-zarr-py's default image has no units and puts s1 at translation 0.5 (its first
    voxel's centre): counted in tenths of the unnamed unit, then written back as they were."""
    root = zarr.open_group(str(tmp_path / "d.zarr"), mode="w", zarr_format=fmt)
    data = blobs((16, 16, 16), seed=3)
    ome_write_image(data, root, fmt=FORMATS[fmt], axes=["z", "y", "x"],
                    scale_factors=[{"z": 2, "y": 2, "x": 2}],
                    storage_options={"chunks": (8, 8, 8)})  # fmt: skip
    s1 = ZarrArray(ZarrArrayConfig("s1", tmp_path / "d.zarr", "s1", mode="r"))
    assert tuple(s1.voxel_size) == (20, 20, 20) and tuple(s1.roi.offset) == (5, 5, 5)
    assert s1._metadata.units == ("1e-1",) * 3
    s0 = ZarrArray(ZarrArrayConfig("s0", tmp_path / "d.zarr", "s0", mode="r"))
    assert tuple(s0.voxel_size) == (1, 1, 1) and s0._metadata.units == ("",) * 3
    out = tmp_path / "out.zarr"
    result = run_cli("run", *io_args(tmp_path / "d.zarr", "s1", out, "mask", 0.5), "--ome-zarr",
                     "--pyramid", "1", "-n", "1")  # fmt: skip
    assert result.code == 0, result
    image = validated(out, "mask", fmt).multiscales[0]
    transforms = [[list(t.scale if t.type == "scale" else t.translation)
                   for t in d.coordinateTransformations] for d in image.datasets]  # fmt: skip
    assert transforms == [[[2.0] * 3, [0.5] * 3], [[4.0] * 3, [1.5] * 3]]
    assert all(a.unit is None for a in image.axes)
    level = zarr.open_array(str(tmp_path / "d.zarr"), path="s1", mode="r")[...]
    assert_thresholded(out, "mask/s0", level, 0.5)


def test_a_time_axis_is_blocked_and_kept_but_not_downsampled(tmp_path):
    """tczyx from ome-zarr-py: time is an axis of its own (not space, not a channel): the
    mask keeps it, and a pyramid does not thin it unless --pyramid-factors says so."""
    root = zarr.open_group(str(tmp_path / "t.zarr"), mode="w", zarr_format=2)
    data = blobs((3, 2, 8, 16, 16), seed=5)
    units = {"t": "second", "z": "nanometer", "y": "nanometer", "x": "nanometer"}
    ome_write_image(data, root, fmt=FORMATS[2], axes="tczyx", axes_units=units,
                    scale_factors=[], storage_options={"chunks": (1, 1, 8, 8, 8)})  # fmt: skip
    out = tmp_path / "out.zarr"
    result = run_cli("run", *io_args(tmp_path / "t.zarr", "s0", out, "mask", 0.5), "--ome-zarr",
                     "--pyramid", "1", "--zarr-format", "2", "-n", "1")  # fmt: skip
    assert result.code == 0, result
    image = validated(out, "mask", 2).multiscales[0]
    assert [(a.name, a.type, a.unit) for a in image.axes][:2] == [
        ("t", "time", "second"),
        ("c", "channel", None),
    ]
    assert list(image.datasets[1].coordinateTransformations[0].scale) == [1, 1, 2, 2, 2]
    assert_thresholded(out, "mask/s0", data, 0.5)
    s1 = zarr.open_array(str(out), path="mask/s1", mode="r")
    assert s1.shape == (3, 2, 4, 8, 8)
    want = expected(data, 0.5).reshape(3, 2, 4, 2, 8, 2, 8, 2).max(axis=(3, 5, 7))
    np.testing.assert_array_equal(s1[...], want)


def test_multiscale_wide_transforms_compose_after_the_levels(image):
    path, _, fmt = image

    def wide(img: dict[str, Any]) -> None:
        img["coordinateTransformations"] = [
            {"type": "scale", "scale": [1, 2, 2, 2]},
            {"type": "translation", "translation": [0, 1000, 0, -8]},
        ]

    edit_multiscales(path, fmt, wide)
    s1 = ZarrArray(ZarrArrayConfig("s1", path, "s1", mode="r"))
    # world = 2 * (16 i + 84) + 1000 on z: voxel 32, offset 1168
    assert tuple(s1.voxel_size) == (32, 16, 16)
    assert tuple(s1.roi.offset) == (1168, 84, -4)


def test_fractional_values_are_reexpressed_in_a_smaller_unit(tmp_path):
    data = blobs((8, 8, 8), seed=1)
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    transforms = [
        [{"type": "scale", "scale": [0.008, 0.004, 0.004]}, {"type": "translation", "translation": [0.0015, 0, 0]}],
        [{"type": "scale", "scale": [0.016, 0.008, 0.008]}],
    ]  # fmt: skip
    write_image(tmp_path / "um.zarr", data, 3, transforms, axes)
    s0 = ZarrArray(ZarrArrayConfig("s0", tmp_path / "um.zarr", "s0", mode="r"))
    # 1.5 nm is not whole in nm: the whole level goes to pm on z, stays nm on y and x
    assert tuple(s0.voxel_size) == (8000, 4, 4)
    assert tuple(s0.roi.offset) == (1500, 0, 0)
    assert s0._metadata.units == ("pm", "nm", "nm")


def test_ome_wins_over_disagreeing_funlib_attributes(image, caplog):
    path, _, _ = image
    arr = zarr.open_array(str(path), path="s0", mode="r+")
    arr.attrs.update(
        {"voxel_size": [1, 1, 1], "offset": [0, 0, 0], "axis_names": ["c^", "z", "y", "x"]}
    )
    with caplog.at_level(logging.WARNING, logger="threshold_worker.metadata"):
        s0 = ZarrArray(ZarrArrayConfig("s0", path, "s0", mode="r"))
        assert tuple(s0.voxel_size) == (8, 4, 4)
    assert "OME-Zarr image says (8, 4, 4), (80, 40, 0), which wins" in caplog.text


def test_precedence_without_ome_is_funlib_then_dacapo():
    both = {"voxel_size": [8, 4, 4], "resolution": [1, 1, 1], "offset": [8, 0, 0]}
    assert tuple(geometry(both, 3, "a").voxel_size) == (8, 4, 4)
    assert tuple(geometry({"resolution": [2, 2, 2]}, 3, "a").voxel_size) == (2, 2, 2)
    ome_attrs = {"axis_names": ["z", "y", "x"], "types": ["space"] * 3, "voxel_size": [3, 3, 3],
                 "offset": [0, 0, 0], "units": ["nm"] * 3}  # fmt: skip
    assert tuple(geometry(both, 3, "a", ome_attrs).voxel_size) == (3, 3, 3)


def test_thresholding_an_ome_level_keeps_its_geometry(image, tmp_path):
    path, data, _ = image
    out = tmp_path / "out.zarr"
    result = run_cli("run", *io_args(path, "s0", out, "mask", 0.5), "-n", "1")
    assert result.code == 0, result
    mask = zarr.open_array(str(out), path="mask", mode="r")
    np.testing.assert_array_equal(mask[...], expected(data, 0.5))
    assert mask.attrs["voxel_size"] == [8, 4, 4]
    assert mask.attrs["offset"] == [80, 40, 0]
    assert mask.attrs["axis_names"] == ["c", "z", "y", "x"]
    assert mask.attrs["types"] == ["channel", "space", "space", "space"]
    assert mask.attrs["units"] == ["nm", "nm", "nm"]


@pytest.mark.parametrize(
    ("edit", "attribute"),
    [
        (lambda img: img["datasets"].pop(0), "'multiscales'"),
        (lambda img: img["datasets"][0]["coordinateTransformations"][0].update(scale=[1, 8, 0, 4]),
         "multiscales[0].datasets[0].coordinateTransformations[0].scale"),
        (lambda img: img["datasets"][0]["coordinateTransformations"][1].update(translation=[0, 1]),
         "multiscales[0].datasets[0].coordinateTransformations[1].translation"),
        (lambda img: img["axes"].pop(), "multiscales[0].axes"),
        (lambda img: img["datasets"][0]["coordinateTransformations"].reverse(),
         "multiscales[0].datasets[0].coordinateTransformations[0]"),
    ],
    ids=["level-not-listed", "zero-scale", "short-translation", "missing-axis", "order"],
)  # fmt: skip
def test_bad_ome_metadata_is_one_line_exit_2(image, tmp_path, edit, attribute):
    path, _, fmt = image
    edit_multiscales(path, fmt, edit)
    result = run_cli("plan", *io_args(path, "s0", tmp_path / "o.zarr", "mask", 0.5))
    assert result.code == 2, result
    assert result.err.count("\n") == 1
    assert attribute in result.err
    assert "OME-Zarr group '/'" in result.err
    with pytest.raises(InputError):
        ome.level_attributes(zarr.storage.LocalStore(str(path)), "s0", 4)


def test_plain_arrays_in_plain_groups_are_not_images(tmp_path):
    data = blobs((8, 8, 8), seed=2)
    write_array(tmp_path / "c.zarr", "a/b/raw", data, (8, 8, 8), voxel_size=(2, 2, 2))
    store = zarr.storage.LocalStore(str(tmp_path / "c.zarr"))
    assert ome.level_attributes(store, "a/b/raw", 3) is None


# -- output -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [2, 3])
def test_ome_output_is_a_valid_image_with_the_input_geometry(tmp_path, fmt):
    data = blobs((2, 16, 24, 32), seed=5)
    write_array(tmp_path / "in.zarr", "raw", data, (2, 8, 8, 8), voxel_size=(8, 4, 4),
                offset=(80, 40, 0), zarr_format=fmt)  # fmt: skip
    out = tmp_path / "out.zarr"
    result = run_cli("run", *io_args(tmp_path / "in.zarr", "raw", out, "mask", 0.5),
                     "--ome-zarr", "-n", "1")  # fmt: skip
    assert result.code == 0, result
    assert "(OME-Zarr image, mask at s0)" in result.out
    attrs = validated(out, "mask", fmt)
    version = attrs.version if fmt == 3 else attrs.multiscales[0].version
    assert version == {2: "0.4", 3: "0.5"}[fmt]
    image = attrs.multiscales[0]
    assert [d.path for d in image.datasets] == ["s0"]
    scale, translation = image.datasets[0].coordinateTransformations
    assert list(scale.scale) == [1, 8, 4, 4]
    assert list(translation.translation) == [0, 80, 40, 0]
    assert [(a.name, a.type, a.unit) for a in image.axes] == [
        ("c0^", "channel", None),
        ("z", "space", "nanometer"),
        ("y", "space", "nanometer"),
        ("x", "space", "nanometer"),
    ]
    mask = zarr.open_array(str(out), path="mask/s0", mode="r")
    assert mask.metadata.zarr_format == fmt
    np.testing.assert_array_equal(mask[...], expected(data, 0.5))
    # funlib attributes stay on the array, for DaCapo and funlib.persistence
    from funlib.persistence import open_ds

    ds = open_ds(str(out / "mask" / "s0"))
    assert tuple(ds.voxel_size) == (8, 4, 4)
    assert tuple(ds.offset) == (80, 40, 0)
    # and this tool reads the image back with the same geometry
    back = ZarrArray(ZarrArrayConfig("m", out, "mask/s0", mode="r"))
    assert tuple(back.voxel_size) == (8, 4, 4) and tuple(back.roi.offset) == (80, 40, 0)


def test_ome_in_ome_out_round_trip(image, tmp_path):
    path, data, fmt = image
    out = tmp_path / "out.zarr"
    result = run_cli("run", *io_args(path, "s1", out, "pred/mask", 0.5), "--ome-zarr", "-n", "1")
    assert result.code == 0, result
    image_attrs = validated(out, "pred/mask", fmt).multiscales[0]
    scale, translation = image_attrs.datasets[0].coordinateTransformations
    assert list(scale.scale) == [1, 16, 8, 8]
    assert list(translation.translation) == [0, 84, 42, 2]
    assert [a.name for a in image_attrs.axes] == ["c", "z", "y", "x"]
    assert_thresholded(out, "pred/mask/s0", data[:, ::2, ::2, ::2], 0.5)


def test_ome_output_sweep_writes_one_image_per_threshold(tmp_path):
    data = blobs((16, 16, 16), seed=6)
    write_array(tmp_path / "in.zarr", "raw", data, (8, 8, 8), voxel_size=(4, 4, 4))
    out = tmp_path / "out.zarr"
    args = ["-ic", str(tmp_path / "in.zarr"), "-id", "raw", "-oc", str(out),
            "-od", "sweep/t_{threshold}", "--thresholds", "0.3,0.6", "--ome-zarr",
            "-n", "1"]  # fmt: skip
    result = run_cli("run", *args)
    assert result.code == 0, result
    for t in (0.3, 0.6):
        validated(out, f"sweep/t_{t}", 3)
        assert_thresholded(out, f"sweep/t_{t}/s0", data, t)
    again = run_cli("run", *args)  # the same run again: all done
    assert again.code == 0, again
    assert "0 processed" in again.out


def test_ome_output_ownership_and_overwrite(tmp_path):
    data = blobs((16, 16, 16), seed=7)
    write_array(tmp_path / "in.zarr", "raw", data, (8, 8, 8), voxel_size=(4, 4, 4))
    args = io_args(tmp_path / "in.zarr", "raw", tmp_path / "out.zarr", "mask", 0.5)
    assert run_cli("run", *args, "--ome-zarr", "-n", "1").code == 0
    level = tmp_path / "out.zarr" / "mask" / "s0"
    assert (level / ".threshold-job.json").exists()
    assert json.loads((level / ".threshold-job.json").read_text())["state"] == "complete"
    # another threshold into the same image: refused, then replaced with --overwrite
    other = io_args(tmp_path / "in.zarr", "raw", tmp_path / "out.zarr", "mask", 0.7)
    refused = run_cli("run", *other, "--ome-zarr", "-n", "1")
    assert refused.code == 2 and "another job" in refused.err and "mask/s0" in refused.err
    replaced = run_cli("run", *other, "--ome-zarr", "--overwrite", "-n", "1")
    assert replaced.code == 0, replaced
    np.testing.assert_array_equal(zarr.open_array(str(level), mode="r")[...], expected(data, 0.7))
    validated(tmp_path / "out.zarr", "mask", 3)
    # a plain output cannot become an image's group, nor an image hold other nodes
    plain = io_args(tmp_path / "in.zarr", "raw", tmp_path / "out.zarr", "plain", 0.5)
    assert run_cli("run", *plain, "-n", "1").code == 0
    into_array = run_cli("plan", *plain, "--ome-zarr")
    assert into_array.code == 2 and "plain is a plain zarr array, and --ome-zarr" in into_array.err
    zarr.create_array(str(tmp_path / "out.zarr"), name="mask/labels", shape=(2,), dtype="u1")
    crowded = run_cli("plan", *other, "--ome-zarr")
    assert crowded.code == 2 and "holds labels beside s0" in crowded.err


@pytest.mark.parametrize(
    "input_dataset,output_dataset,options,error",
    [
        (  # the image is named as given, not as its s0, which does not contain s1
            "img/s1",
            "img",
            ["--ome-zarr"],
            "{c}/img (the OME-Zarr image --ome-zarr writes, every level of it) contains the "
            "input array {c}/img/s1 (compared as files, after links); choose an output apart "
            "from the input",
        ),
        (  # not told to write the image instead, which holds the input too
            "img/s1",
            "img/s0",
            [],
            "{c}/img/s0 is level s0 of the OME-Zarr image 'img', with levels s1; the input "
            "{c}/img/s1 lies in that image too, which is replaced whole or not at all: choose "
            "an output_dataset outside it",
        ),
        (
            "img/s0",
            "img",
            [],
            "{c}/img contains the input array {c}/img/s0 (compared as files, after links); "
            "choose an output apart from the input",
        ),
    ],
)
def test_an_output_image_that_holds_the_input_is_named_as_given(
    tmp_path, input_dataset, output_dataset, options, error
):
    """The input is a level of image 'img': an output that is the image, or one of its
    levels, is refused naming what the user gave, in one line, exit 2, nothing written."""
    data = blobs((16, 16, 16), seed=10)
    container = tmp_path / "a.zarr"
    write_array(container, "raw", data, (8, 8, 8), voxel_size=(4, 4, 4))
    made = run_cli("run", *io_args(container, "raw", container, "img", 0.5), "--ome-zarr",
                   "--pyramid", "1", "-n", "1")  # fmt: skip
    assert made.code == 0, made
    before = files_of(container)
    args = io_args(container, input_dataset, container, output_dataset, 0.5)
    refused = run_cli("run", *args, *options, "--overwrite")
    assert refused.code == 2
    assert refused.err == f"error: output_dataset: {error.format(c=container)}\n"
    assert files_of(container) == before


@pytest.mark.parametrize("whose", ["this tool's", "foreign"])
@pytest.mark.parametrize("switch", ["plain to image", "image to plain"])
def test_overwrite_does_not_switch_an_output_between_plain_and_image(tmp_path, switch, whose):
    """Plain outputs keep their lease in the array, images in s0: the two kinds of one
    name share no lease, so --overwrite replaces an output of its own kind only. The
    refusal says what is there and what to do, in one line, and nothing is written."""
    data = blobs((16, 16, 16), seed=11)
    container = tmp_path / "a.zarr"
    write_array(container, "raw", data, (8, 8, 8), voxel_size=(4, 4, 4))
    to_image = switch == "plain to image"
    if whose == "foreign":  # written with zarr: no owner record
        if to_image:
            write_array(container, "mask", (data > 0.2).astype("u1"), (8, 8, 8))
        else:
            image = zarr.open_group(str(container), path="mask", mode="a")
            image.create_array("s0", shape=data.shape, chunks=(8, 8, 8), dtype="u1")[...] = 1
            axes = [{"name": a, "type": "space"} for a in "zyx"]
            scale = [{"type": "scale", "scale": [4.0] * 3}]
            datasets = [{"path": "s0", "coordinateTransformations": scale}]
            image.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes,
                                                                     "datasets": datasets}]}  # fmt: skip
    else:
        old = [] if to_image else ["--ome-zarr", "--pyramid", "1"]
        made = run_cli("run", *io_args(container, "raw", container, "mask", 0.5), *old)
        assert made.code == 0, made
    before = files_of(container)
    new = ["--ome-zarr"] if to_image else []
    refused = run_cli("run", *io_args(container, "raw", container, "mask", 0.5), *new,
                      "--overwrite", "-n", "1")  # fmt: skip
    assert refused.code == 2, refused
    kind = "a plain zarr array" if to_image else "an OME-Zarr image group"
    assert refused.err.startswith(f"error: output_dataset: {container}/mask is {kind}, and ")
    assert "--overwrite replaces an output with one of its own kind only: " in refused.err
    assert refused.err.count("\n") == 1
    assert files_of(container) == before


@pytest.mark.parametrize("fmt", [2, 3])
def test_other_nodes_in_an_image_group_are_its_arrays_and_groups_only(tmp_path, fmt):
    """What `other_nodes` lists without opening the image's own levels: arrays and groups
    of either zarr format; a folder without metadata is no node (s0 half-replaced is one)."""
    root = zarr.open_group(str(tmp_path / "o.zarr"), mode="w", zarr_format=fmt)
    image = root.create_group("img")
    image.create_array("s0", shape=(4,), dtype="u1")
    image.create_array("labels", shape=(4,), dtype="u1")
    image.create_group("extra")
    (tmp_path / "o.zarr" / "img" / "notes").mkdir()
    store = zarr.storage.LocalStore(str(tmp_path / "o.zarr"), read_only=True)
    assert ome.other_nodes(store, "img") == ["extra", "labels"]
    assert ome.other_nodes(store, "nothing") == []


def test_ome_output_refuses_inputs_it_cannot_describe(tmp_path):
    data = blobs((8, 8, 8, 2), seed=8)
    write_array(tmp_path / "in.zarr", "raw", data, (8, 8, 8, 2), voxel_size=(4, 4, 4),
                axis_names=["z", "y", "x", "c^"])  # fmt: skip
    result = run_cli("plan", *io_args(tmp_path / "in.zarr", "raw", tmp_path / "o.zarr", "m", 0.5),
                     "--ome-zarr")  # fmt: skip
    assert result.code == 2, result
    assert (
        "ome_zarr: the input (axes z, y, x, c^) has its axes in the order space, space, "
        "space, channel; OME-Zarr wants time first, then channels, then space" in result.err
    )


def test_ome_zarr_is_a_field_of_the_one_model():
    params = JobParameters(input_container="a", input_dataset="b", output_container="c",
                           output_dataset="d", ome_zarr=True)  # fmt: skip
    assert "--ome-zarr" in params.to_args()
    assert JobParameters.model_validate({**params.model_dump(by_alias=True)}).ome_zarr


def test_resolved_job_names_the_level(tmp_path):
    data = blobs((8, 8, 8), seed=9)
    write_array(tmp_path / "in.zarr", "raw", data, (8, 8, 8), voxel_size=(4, 4, 4))
    spec = JobParameters(input_container=str(tmp_path / "in.zarr"), input_dataset="raw",
                         output_container=str(tmp_path / "o.zarr"), output_dataset="m",
                         ome_zarr=True)  # fmt: skip
    job = resolve(spec)
    assert job.array_dataset == "m/s0"
    assert job.where.endswith("o.zarr/m/s0")
