"""Every case compares the output with numpy's `(x > t).astype(uint8)` over the ROI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import blobs, expected, io_args, run_cli, write_array


def run(ic, id_, oc, od, th, *extra: str) -> str:
    result = run_cli("run", *io_args(ic, id_, oc, od, th), "-n", "1", *extra)
    assert result.code == 0, result
    return result.out


def read(container: Path, dataset: str) -> np.ndarray:
    return zarr.open_array(str(container), path=dataset, mode="r")[...]


def test_whole_array_default_options(volume):
    container, data = volume
    out = run(container, "raw", container, "mask", 0.5)
    assert "blocks      " in out
    np.testing.assert_array_equal(read(container, "mask"), expected(data, 0.5))


def test_roi_not_a_multiple_of_the_block_shape_shrink_covers_every_voxel(volume):
    container, data = volume
    # world offset (80, 40, 0) voxel (8,4,4): roi voxels z 3..38, y 5..42, x 7..50
    run(
        container,
        "raw",
        container,
        "mask",
        0.3,
        "--roi-offset",
        "104,60,28",
        "--roi-shape",
        "280,148,172",
        "--block-shape",
        "16,32,32",
    )
    want = np.zeros_like(data, dtype=np.uint8)
    sl = np.s_[3:38, 5:42, 7:50]
    want[sl] = expected(data[sl], 0.3)
    np.testing.assert_array_equal(read(container, "mask"), want)


def test_valid_skips_partial_border_blocks(volume):
    container, data = volume
    # chunk-aligned roi start (voxel 8, 16, 16), shape 30 x 30 x 40 voxels, blocks 16^3:
    # valid keeps 1 x 1 x 2 whole blocks = voxels z 8..24, y 16..32, x 16..48
    run(
        container,
        "raw",
        container,
        "mask",
        0.5,
        "--roi-offset",
        "144,104,64",
        "--roi-shape",
        "240,120,160",
        "--block-shape",
        "16,16,16",
        "--fit",
        "valid",
    )
    want = np.zeros_like(data, dtype=np.uint8)
    sl = np.s_[8:24, 16:32, 16:48]
    want[sl] = expected(data[sl], 0.5)
    np.testing.assert_array_equal(read(container, "mask"), want)


def test_output_keeps_geometry_and_axis_names(volume):
    container, _ = volume
    run(container, "raw", container, "mask", 0.5)
    attrs = zarr.open_array(str(container), path="mask").attrs.asdict()
    assert attrs["voxel_size"] == [8, 4, 4]
    assert attrs["offset"] == [80, 40, 0]
    assert attrs["axis_names"] == ["z", "y", "x"]
    assert attrs["units"] == ["nm", "nm", "nm"]
    assert attrs["threshold_job"]["threshold"] == 0.5


def test_channel_axis_passes_through(tmp_path):
    data = blobs((3, 20, 30, 40), seed=2)
    container = tmp_path / "c.zarr"
    write_array(
        container,
        "pred",
        data,
        (1, 10, 10, 20),
        voxel_size=(4, 4, 4),
        axis_names=["c^", "z", "y", "x"],
    )
    run(
        container,
        "pred",
        container,
        "mask",
        0.4,
        "--roi-offset",
        "8,8,0",
        "--roi-shape",
        "60,80,160",
    )
    out = read(container, "mask")
    assert out.shape == data.shape
    want = np.zeros_like(out)
    want[:, 2:17, 2:22, 0:40] = expected(data[:, 2:17, 2:22, 0:40], 0.4)
    np.testing.assert_array_equal(out, want)
    assert zarr.open_array(str(container), path="mask").attrs["types"] == [
        "channel",
        "space",
        "space",
        "space",
    ]


@pytest.mark.parametrize("zarr_format,compressor", [(2, "blosc"), (2, "zstd"), (3, "default")])
def test_zarr_v2_and_v3_inputs(tmp_path, zarr_format, compressor):
    import numcodecs

    data = blobs((32, 32, 32), seed=3)
    kwargs = {}
    if compressor == "blosc":
        kwargs["compressors"] = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1)
    elif compressor == "zstd":
        kwargs["compressors"] = numcodecs.Zstd(level=3)
    container = tmp_path / "v.zarr"
    write_array(
        container,
        "raw",
        data,
        (16, 16, 16),
        voxel_size=(2, 2, 2),
        zarr_format=zarr_format,
        **kwargs,
    )
    run(container, "raw", container, "mask", 0.5)
    out = zarr.open_array(str(container), path="mask")
    assert out.metadata.zarr_format == zarr_format
    np.testing.assert_array_equal(out[...], expected(data, 0.5))


@pytest.mark.parametrize(
    "dtype,threshold",
    [
        (np.uint8, 127),
        (np.int16, -3),
        (np.uint16, 40000.5),
        (np.int64, 7),
        (np.float64, 0.25),
        (np.bool_, 0.5),
    ],
)
def test_integer_and_float_inputs(tmp_path, dtype, threshold):
    rng = np.random.default_rng(4)
    if dtype == np.bool_:
        data = rng.random((24, 24, 24)) > 0.5
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -20), min(info.max, 65535)
        data = rng.integers(lo, hi, (24, 24, 24), endpoint=True).astype(dtype)
    else:
        data = rng.random((24, 24, 24)).astype(dtype)
    container = tmp_path / "i.zarr"
    write_array(container, "raw", data, (8, 8, 8))
    run(container, "raw", container, "mask", threshold)
    np.testing.assert_array_equal(read(container, "mask"), expected(data, threshold))


def test_nan_gives_zero_and_threshold_is_strict(tmp_path):
    data = blobs((16, 16, 16), seed=5)
    data[::3] = np.nan
    data[1, 1, :] = 0.5  # equal to the threshold: not above it
    container = tmp_path / "n.zarr"
    write_array(container, "raw", data, (8, 8, 8))
    run(container, "raw", container, "mask", 0.5)
    out = read(container, "mask")
    assert out[::3].sum() == 0 and out[1, 1].sum() == 0
    np.testing.assert_array_equal(out, expected(data, 0.5))


def test_sharded_v3_output(tmp_path):
    data = blobs((64, 64, 64), seed=6)
    container = tmp_path / "s.zarr"
    write_array(container, "raw", data, (16, 16, 16))
    out_container = tmp_path / "out.zarr"
    text = run(
        container,
        "raw",
        out_container,
        "mask",
        0.5,
        "--output-chunks",
        "16,16,16",
        "--output-shards",
        "32,32,64",
        "--roi-shape",
        "60,50,64",
    )
    out = zarr.open_array(str(out_container), path="mask")
    assert out.shards == (32, 32, 64) and out.chunks == (16, 16, 16)
    assert "32x32x64" in text  # one shard per block by default
    want = np.zeros_like(data, dtype=np.uint8)
    want[:60, :50] = expected(data[:60, :50], 0.5)
    np.testing.assert_array_equal(out[...], want)


def test_sharded_output_refuses_blocks_that_split_a_shard(tmp_path):
    data = blobs((64, 64, 64), seed=6)
    container = tmp_path / "s.zarr"
    write_array(container, "raw", data, (16, 16, 16))
    result = run_cli(
        "run",
        *io_args(container, "raw", container, "mask", 0.5),
        "--output-shards",
        "32,32,32",
        "--block-shape",
        "16,32,32",
    )
    assert result.code == 2
    assert "block_shape" in result.err and "shard shape" in result.err


def test_funlib_persistence_round_trip(tmp_path):
    from funlib.geometry import Coordinate
    from funlib.persistence import open_ds, prepare_ds

    data = blobs((30, 40, 50), seed=7)
    container = tmp_path / "f.zarr"
    src = prepare_ds(
        container / "pred",
        shape=data.shape,
        offset=Coordinate(40, 8, 12),
        voxel_size=Coordinate(10, 4, 6),
        axis_names=["z", "y", "x"],
        units=["nm", "nm", "nm"],
        chunk_shape=(10, 20, 25),
        dtype=np.float32,
    )
    src[src.roi] = data
    run(container, "pred", container, "mask", 0.6)
    out = open_ds(container / "mask")
    assert out.voxel_size == Coordinate(10, 4, 6)
    assert out.offset == Coordinate(40, 8, 12)
    assert list(out.axis_names) == ["z", "y", "x"]
    assert out.roi == src.roi
    np.testing.assert_array_equal(out.to_ndarray(out.roi), expected(data, 0.6))


def test_two_processes_match_numpy(volume):
    container, data = volume
    result = run_cli(
        "run",
        *io_args(container, "raw", container, "mask", 0.5),
        "-n",
        "2",
        "--block-shape",
        "8,16,16",
    )
    assert result.code == 0, result
    assert "2 processes" in result.out
    np.testing.assert_array_equal(read(container, "mask"), expected(data, 0.5))


def test_all_zero_blocks_write_no_chunks(tmp_path):
    data = np.zeros((32, 32, 32), np.float32)
    data[:16, :16, :16] = 1.0
    container = tmp_path / "z.zarr"
    write_array(container, "raw", data, (16, 16, 16))
    run(container, "raw", container, "mask", 0.5)
    chunks = sorted(
        p.relative_to(container / "mask")
        for p in (container / "mask" / "c").rglob("*")
        if p.is_file()
    )
    assert [str(c) for c in chunks] == ["c/0/0/0"]
