"""Pyramid levels of the mask, written in the thresholding pass (`--pyramid N`): every
level is compared with numpy's downsampling of the whole expected mask."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import blobs, expected, files_of, io_args, marker_blocks, run_cli, write_array
from test_ome_zarr import validated
from threshold_worker import pyramid
from threshold_worker.params import JobParameters
from threshold_worker.pyramid import Pyramid, downsample

PATHS = {"direct": {"THRESHOLD_CHUNK_PATH": "direct"}, "zarr": {"THRESHOLD_CHUNK_PATH": "zarr"}}


def reference(mask: np.ndarray, scale: Sequence[int], mode: str) -> np.ndarray:
    """One level straight from s0, window by window, written independently of the
    package: pad to whole windows, reshape, reduce; `mode` counts only in-array voxels."""
    pad = [(0, -(-n // f) * f - n) for n, f in zip(mask.shape, scale, strict=True)]
    shape = [x for n, f in zip(mask.shape, scale, strict=True) for x in (-(-n // f), f)]
    windows = tuple(range(1, 2 * mask.ndim, 2))
    ones = np.pad(mask.astype(np.int64), pad).reshape(shape).sum(axis=windows)
    if mode == "any":
        return (ones > 0).astype(np.uint8)
    inside = np.pad(np.ones(mask.shape, np.int64), pad).reshape(shape).sum(axis=windows)
    return (2 * ones > inside).astype(np.uint8)


def check_levels(
    out: Path,
    image: str,
    mask: np.ndarray,
    levels: int,
    factors: Sequence[int],
    mode: str,
    spatial: Sequence[int] | None = None,
) -> None:
    """s0 is `mask`, and each level s1..sN is its reference downsampling."""
    np.testing.assert_array_equal(zarr.open_array(str(out), path=f"{image}/s0")[...], mask)
    spatial = list(spatial) if spatial is not None else list(range(mask.ndim))
    for k in range(1, levels + 1):
        scale = [1] * mask.ndim
        for i, f in zip(spatial, factors, strict=True):
            scale[i] = f**k
        got = zarr.open_array(str(out), path=f"{image}/s{k}", mode="r")[...]
        np.testing.assert_array_equal(got, reference(mask, scale, mode), err_msg=f"level s{k}")
    group = zarr.open_group(str(out), path=image, mode="r")
    assert sorted(group) == [f"s{k}" for k in range(levels + 1)]


@pytest.fixture
def uneven(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A volume whose shape divides by no level's factor, with an offset and anisotropic
    voxels; sparse enough that `any` and `mode` differ."""
    data = blobs((37, 45, 51), seed=21)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (8, 8, 8), voxel_size=(8, 4, 4), offset=(80, 40, 0))
    return container, data


# -- downsampling, without storage ------------------------------------------------------


def test_mode_breaks_ties_to_zero_and_counts_only_voxels_in_the_array():
    geometry = Pyramid(1, (2,), "mode", (0,), ((3,),), ((3,),))
    region = np.array([1, 0, 1, 1, 1], np.uint8)  # windows [1,0] [1,1] [1]
    [(level, selection, data)] = list(downsample(region, geometry, [0], [5]))
    assert level == 1 and selection == (slice(0, 3),)
    assert data.tolist() == [0, 1, 1]  # a tie is 0; the cut last window is all ones
    anything = Pyramid(1, (2,), "any", (0,), ((3,),), ((3,),))
    assert next(downsample(region, anything, [0], [5]))[2].tolist() == [1, 1, 1]


@pytest.mark.parametrize("mode", ["any", "mode"])
@pytest.mark.parametrize("factors", [(2, 2, 2), (1, 2, 3)])
def test_downsample_matches_numpy_level_by_level(mode, factors):
    rng = np.random.default_rng(3)
    region = (rng.random((2, 29, 30, 31)) > 0.7).astype(np.uint8)  # a channel axis first
    shapes = tuple(
        (2, *(-(-n // f**k) for n, f in zip(region.shape[1:], factors, strict=True)))
        for k in (1, 2, 3)
    )
    geometry = Pyramid(3, factors, mode, (1, 2, 3), shapes, shapes)
    got = list(downsample(region, geometry, [0, 0, 0, 0], list(region.shape)))
    assert [k for k, _, _ in got] == [1, 2, 3]
    for k, selection, data in got:
        scale = (1, *(f**k for f in factors))
        assert data.shape == shapes[k - 1]
        assert selection == tuple(slice(0, n) for n in shapes[k - 1])
        np.testing.assert_array_equal(data, reference(region, scale, mode))


def test_level_chunks_shrink_to_fit_inside_a_block_and_the_grid_aligns_to_them():
    geometry, block = pyramid.plan_pyramid(
        4, None, "any", (512, 512, 512), (0, 1, 2), (64, 64, 64), (64, 64, 64),
        (512, 512, 512), None, False, ["z", "y", "x"],
    )  # fmt: skip
    assert block == (256, 256, 256)  # twice the usual default: one chunk per level
    assert [c[0] for c in geometry.chunks] == [128, 64, 32, 16]
    assert [s[0] for s in geometry.shapes] == [256, 128, 64, 32]
    assert geometry.align == (256, 256, 256)
    # a given block: level chunks no larger than it allows, nor than twice s0's
    geometry, block = pyramid.plan_pyramid(
        4, None, "any", (512, 512, 512), (0, 1, 2), (64, 64, 64), (64, 64, 64),
        (512, 512, 512), (128, 512, 64), False, ["z", "y", "x"],
    )  # fmt: skip
    assert block == (128, 512, 64)
    assert geometry.chunks == ((64, 128, 32), (32, 128, 16), (16, 64, 8), (8, 32, 4))
    assert geometry.align == (128, 512, 64)
    # a default block too small for the deepest level's factor grows to it
    _, grown = pyramid.plan_pyramid(
        5, (1, 2, 2), "any", (64, 64, 64), (0, 1, 2), (8, 8, 8), (8, 8, 8), (64, 64, 64),
        None, False, ["z", "y", "x"],
    )  # fmt: skip
    assert grown == (32, 32, 32)
    _, deep = pyramid.plan_pyramid(
        6, (1, 2, 2), "any", (64, 64, 64), (0, 1, 2), (8, 8, 8), (8, 8, 8), (64, 64, 64),
        None, False, ["z", "y", "x"],
    )  # fmt: skip
    assert deep == (32, 64, 64)  # s6's factor on y and x is 64


# -- the command line -------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("mode", ["any", "mode"])
@pytest.mark.parametrize("fmt", [2, 3])
def test_every_level_matches_numpy(tmp_path, uneven, fmt, mode, path):
    container, data = uneven
    out = tmp_path / "out.zarr"
    run = run_cli(
        "run", *io_args(container, "raw", out, "mask", 0.8), "--ome-zarr", "--pyramid", "3",
        "--pyramid-mode", mode, "--zarr-format", str(fmt), "-n", "1", env=PATHS[path],
    )  # fmt: skip
    assert run.code == 0, run
    assert f"pyramid s1-s3 ({mode})" in run.out
    check_levels(out, "mask", expected(data, 0.8), 3, (2, 2, 2), mode)
    assert zarr.open_array(str(out), path="mask/s3").metadata.zarr_format == fmt


def test_direct_and_zarr_paths_write_the_same_level_chunks(tmp_path, uneven):
    container, _ = uneven
    files = {}
    for path, env in PATHS.items():
        out = tmp_path / f"{path}.zarr"
        run = run_cli("run", *io_args(container, "raw", out, "mask", 0.7), "--ome-zarr",
                      "--pyramid", "2", "-n", "1", env=env)  # fmt: skip
        assert run.code == 0, run
        files[path] = {
            str(p.relative_to(out)): p.read_bytes()
            for p in sorted((out / "mask").rglob("*"))
            if p.is_file() and p.parent.name != "mask" and "/s0/" not in str(p)
        }
    assert files["direct"] == files["zarr"]
    assert any(key.startswith("mask/s2/c/") for key in files["direct"])


@pytest.mark.parametrize("fmt", [2, 3])
def test_anisotropic_factors_and_a_roi_keep_levels_right_and_the_metadata_valid(
    tmp_path, uneven, fmt
):
    container, data = uneven
    out = tmp_path / "out.zarr"
    # voxels (8, 4, 4) nm, offset (80, 40, 0): ROI voxels z 3:33, y 5:40, x 9:50
    roi = ["--roi-offset", "104,60,36", "--roi-shape", "240,140,164"]
    run = run_cli(
        "run", *io_args(container, "raw", out, "mask", 0.6), *roi, "--ome-zarr",
        "--pyramid", "3", "--pyramid-factors", "1,2,3", "--pyramid-mode", "mode",
        "--zarr-format", str(fmt), "-n", "1",
    )  # fmt: skip
    assert run.code == 0, run
    mask = np.zeros(data.shape, np.uint8)  # s0 is 0 outside the ROI
    inside = (slice(3, 33), slice(5, 40), slice(9, 50))
    mask[inside] = expected(data[inside], 0.6)
    check_levels(out, "mask", mask, 3, (1, 2, 3), "mode")

    image = validated(out, "mask", fmt).multiscales[0]
    assert [d.path for d in image.datasets] == ["s0", "s1", "s2", "s3"]
    for k, dataset in enumerate(image.datasets):
        scale, translation = dataset.coordinateTransformations
        factors = (1, 2**k, 3**k)
        assert list(scale.scale) == [v * f for v, f in zip((8, 4, 4), factors, strict=True)]
        # each level voxel's center is its window's center: the levels cover s0's region
        assert list(translation.translation) == [
            t + (f - 1) * v / 2 for t, v, f in zip((80, 40, 0), (8, 4, 4), factors, strict=True)
        ]


def test_a_channel_axis_is_never_downsampled(tmp_path):
    data = blobs((2, 20, 18, 22), seed=22)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (2, 8, 8, 8), voxel_size=(4, 4, 4))
    out = tmp_path / "out.zarr"
    run = run_cli("run", *io_args(container, "raw", out, "mask", 0.5), "--ome-zarr",
                  "--pyramid", "2", "-n", "1")  # fmt: skip
    assert run.code == 0, run
    check_levels(out, "mask", expected(data, 0.5), 2, (2, 2, 2), "any", spatial=(1, 2, 3))
    assert zarr.open_array(str(out), path="mask/s2").shape == (2, 5, 5, 6)
    validated(out, "mask", 3)


def test_sharded_s0_with_levels(tmp_path):
    data = blobs((40, 40, 40), seed=23)
    container = tmp_path / "in.zarr"
    write_array(container, "raw", data, (8, 8, 8), voxel_size=(4, 4, 4))
    out = tmp_path / "out.zarr"
    run = run_cli("run", *io_args(container, "raw", out, "mask", 0.5), "--ome-zarr",
                  "--output-shards", "16,16,16", "--pyramid", "2", "-n", "1")  # fmt: skip
    assert run.code == 0, run
    check_levels(out, "mask", expected(data, 0.5), 2, (2, 2, 2), "any")
    validated(out, "mask", 3)


def test_a_sweep_writes_levels_for_each_output(tmp_path, uneven):
    container, data = uneven
    out = tmp_path / "out.zarr"
    run = run_cli(
        "run", "-ic", str(container), "-id", "raw", "-oc", str(out), "-od", "t_{threshold}",
        "--thresholds", "0.3,0.9", "--ome-zarr", "--pyramid", "2", "-n", "1",
    )  # fmt: skip
    assert run.code == 0, run
    for t in (0.3, 0.9):
        check_levels(out, f"t_{t}", expected(data, t), 2, (2, 2, 2), "any")
        validated(out, f"t_{t}", 3)


def test_interrupted_run_resumes_and_a_block_is_marked_only_after_all_its_levels(
    tmp_path, uneven, monkeypatch
):
    container, data = uneven
    out = tmp_path / "out.zarr"
    args = [*io_args(container, "raw", out, "mask", 0.8), "--ome-zarr", "--pyramid", "3",
            "--block-shape", "16,16,16", "-n", "1"]  # fmt: skip
    real = pyramid.downsample
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args)
        for k, selection, level_data in real(*args, **kwargs):
            if len(calls) == 5 and k == 2:
                raise KeyboardInterrupt  # block 5: s1 written, s2 and s3 not
            yield k, selection, level_data

    monkeypatch.setattr(pyramid, "downsample", interrupted)
    stopped = run_cli("run", *args)
    assert stopped.code == 130, stopped
    assert marker_blocks(out / "mask" / "s0") == {0, 1, 2, 3}
    assert (out / "mask" / "s1" / "c").exists()
    monkeypatch.setattr(pyramid, "downsample", real)
    resumed = run_cli("run", *args)
    assert resumed.code == 0, resumed
    assert "4 already done" in resumed.out
    check_levels(out, "mask", expected(data, 0.8), 3, (2, 2, 2), "any")


def test_partitions_write_the_levels_of_their_blocks(tmp_path, uneven):
    container, data = uneven
    out = tmp_path / "out.zarr"
    args = [*io_args(container, "raw", out, "mask", 0.8), "--ome-zarr", "--pyramid", "2",
            "--pyramid-mode", "mode", "--partitions", "3"]  # fmt: skip
    prepared = run_cli("prepare", *args)
    assert prepared.code == 0, prepared
    report = json.loads(prepared.out)
    assert [level["path"] for level in report["output"]["pyramid"]] == ["s1", "s2"]
    for partition in range(3):
        done = run_cli("start-worker", *args, "--partition", str(partition))
        assert done.code == 0, done
    check_levels(out, "mask", expected(data, 0.8), 2, (2, 2, 2), "mode")
    validated(out, "mask", 3)


def test_overwrite_with_fewer_levels_removes_the_old_ones(tmp_path, uneven):
    container, data = uneven
    out = tmp_path / "out.zarr"
    args = [*io_args(container, "raw", out, "mask", 0.8), "--ome-zarr", "-n", "1"]
    assert run_cli("run", *args, "--pyramid", "3").code == 0
    again = run_cli("run", *args, "--pyramid", "3")
    assert again.code == 0 and "0 processed" in again.out  # its own levels: resumed
    other = run_cli("run", *args, "--pyramid", "1")
    assert other.code == 2 and "another job" in other.err  # the pyramid is part of the plan
    replaced = run_cli("run", *args, "--pyramid", "1", "--overwrite")
    assert replaced.code == 0, replaced
    check_levels(out, "mask", expected(data, 0.8), 1, (2, 2, 2), "any")
    assert [d.path for d in validated(out, "mask", 3).multiscales[0].datasets] == ["s0", "s1"]
    plain = run_cli("run", *args, "--overwrite")
    assert plain.code == 0, plain
    assert sorted(zarr.open_group(str(out), path="mask")) == ["s0"]


def test_a_level_of_an_image_is_written_only_through_the_image(tmp_path, uneven):
    """A plain job into s0 (or s1) of an image would leave the other levels, which the
    group still lists, showing another job's mask: refused, nothing written."""
    container, data = uneven
    out = tmp_path / "out.zarr"
    ome = [*io_args(container, "raw", out, "mask", 0.5), "--ome-zarr", "--pyramid", "2", "-n", "1"]
    assert run_cli("run", *ome).code == 0
    before = files_of(out)
    for level, others in (("s0", "s1-s2"), ("s1", "s0, s2")):
        plain = io_args(container, "raw", out, f"mask/{level}", 0.7)
        refused = run_cli("run", *plain, "--overwrite", "-n", "1")
        assert refused.code == 2, refused
        assert refused.err.count("\n") == 1
        assert (
            f"output_dataset: {out}/mask/{level} is level {level} of the OME-Zarr image 'mask', "
            f"with levels {others}; write the image with --ome-zarr -od mask" in refused.err
        )
    # the reverse: the image's group is no plain output, nor a place for another image
    as_array = run_cli("run", *io_args(container, "raw", out, "mask", 0.7), "-n", "1")
    assert as_array.code == 2 and "mask is an OME-Zarr image group, and" in as_array.err
    inner = run_cli("run", *io_args(container, "raw", out, "mask/inner", 0.7), "--ome-zarr")
    assert inner.code == 2 and "lies inside the OME-Zarr image 'mask'" in inner.err
    assert files_of(out) == before
    # the image's own job still resumes, and replaces every level with --overwrite
    again = run_cli("run", *ome)
    assert again.code == 0 and "0 processed" in again.out, again
    other = [*io_args(container, "raw", out, "mask", 0.7), "--ome-zarr", "--pyramid", "2"]
    assert run_cli("run", *other, "--overwrite", "-n", "1").code == 0
    check_levels(out, "mask", expected(data, 0.7), 2, (2, 2, 2), "any")


def test_a_refusal_over_another_pyramid_names_the_pyramid(tmp_path, uneven):
    container, _ = uneven
    out = tmp_path / "out.zarr"
    args = [*io_args(container, "raw", out, "mask", 0.5), "--ome-zarr", "--block-shape",
            "32,32,32", "-n", "1"]  # fmt: skip
    assert run_cli("run", *args, "--pyramid", "3").code == 0
    refused = run_cli("run", *args, "--pyramid", "2")
    assert refused.code == 2, refused
    assert (
        "the same input path and threshold, but the pyramid differs: the output has levels "
        "s1-s3 (factors 2,2,2, mode any), this job asks for levels s1-s2 (factors 2,2,2, "
        "mode any); pass --overwrite" in refused.err
    )
    assert "another parameter (roi, block shape, layout)" not in refused.err
    none = run_cli("run", *args)
    assert none.code == 2 and "this job asks for no pyramid" in none.err


# -- refusals ---------------------------------------------------------------------------


def test_a_block_shape_that_cannot_hold_whole_level_chunks_is_refused(tmp_path, uneven):
    container, _ = uneven
    args = [*io_args(container, "raw", tmp_path / "out.zarr", "mask", 0.5), "--ome-zarr"]
    fits = run_cli("plan", *args, "--pyramid", "3", "--block-shape", "8,16,16")
    assert fits.code == 0, fits  # 8-voxel chunks, s3's factor 8: any multiple of 8 holds them
    refused = run_cli("plan", *args, "--pyramid", "4", "--block-shape", "8,16,16")
    assert refused.code == 2
    assert refused.err == (
        "error: block_shape: (8, 16, 16) is not a multiple of (16, 16, 16), the output's write "
        "unit (8, 8, 8) and level s4's factor (16, 16, 16): a block must hold whole chunks of "
        "every pyramid level; use --block-shape 16,16,16\n"
    )
    assert not (tmp_path / "out.zarr").exists()
    grown = run_cli("plan", *args, "--pyramid", "4", "--json")
    assert grown.code == 0, grown
    assert json.loads(grown.out)["block_shape"] == [32, 32, 32]  # twice the usual default


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pyramid", "2"], "pyramid: its levels are arrays of an OME-Zarr image group"),
        (["--ome-zarr", "--pyramid-factors", "2,2,2"], "pyramid_factors: has no effect"),
        (["--ome-zarr", "--pyramid-mode", "mode"], "pyramid_mode: has no effect"),
        (["--ome-zarr", "--pyramid", "2", "--pyramid-factors", "1,1,1"], "downsamples no axis"),
        (["--ome-zarr", "--pyramid", "2", "--pyramid-factors", "2,2"], "has 2 values; the input"),
        (["--ome-zarr", "--pyramid", "11"], "less than or equal to 10"),
    ],
)
def test_pyramid_options_that_mean_nothing_are_refused(tmp_path, uneven, extra, message):
    container, _ = uneven
    refused = run_cli("plan", *io_args(container, "raw", tmp_path / "o.zarr", "m", 0.5), *extra)
    assert refused.code == 2, refused
    assert message in refused.err


def test_the_pyramid_is_a_field_of_every_door():
    params = JobParameters(
        input_container="a", input_dataset="b", output_container="c", output_dataset="d",
        ome_zarr=True, pyramid=4, pyramid_factors=[1, 2, 2], pyramid_mode="mode",
    )  # fmt: skip
    assert params.to_args()[-6:] == [
        "--pyramid", "4", "--pyramid-factors", "1,2,2", "--pyramid-mode", "mode",
    ]  # fmt: skip
    camel = params.model_dump(by_alias=True)
    assert camel["pyramid"] == 4 and camel["pyramidFactors"] == [1, 2, 2]
    assert JobParameters.model_validate(camel) == params
    assert math.prod(Pyramid(4, (1, 2, 2), "any", (0, 1, 2), (), ()).scale(4)) == 256


def test_preview_shows_a_level_beside_full_resolution(tmp_path, uneven):
    from PIL import Image

    container, data = uneven
    out = tmp_path / "out.zarr"
    args = io_args(container, "raw", out, "mask", 0.8)
    assert run_cli("run", *args, "--ome-zarr", "--pyramid", "2", "-n", "1").code == 0
    png = tmp_path / "p.png"
    shown = run_cli("preview", *args[:-2], "--level", "2", "-o", str(png))
    assert shown.code == 0, shown
    pixels = np.asarray(Image.open(png))
    assert pixels.shape == (5 * 45, 5 * (3 * 51 + 2 * 8))  # input | s0 | s2, blown up 5x
    pixels = pixels[::5, ::5]
    s2 = reference(expected(data, 0.8), (4, 4, 4), "any")[18 // 4]
    blown = np.repeat(np.repeat(s2, 4, axis=0), 4, axis=1)[:45, :51] * 255
    np.testing.assert_array_equal(pixels[:, -51:], blown)
    missing = run_cli("preview", *args[:-2], "--level", "3", "-o", str(png))
    assert missing.code == 2 and "s3 is not a level" in missing.err and "s0, s1, s2" in missing.err
