"""The threshold at the edges of float types: compared in the input's precision, as numpy
and DaCapo compare, except where the threshold itself would round to an infinity (but not
where it rounds to a zero); and 64-bit integers, which numpy compares with a float threshold
in float64."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zarr

from conftest import io_args, run_cli, write_array
from threshold_worker.kernel import threshold

SPECIAL = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, -1.0]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("value", [1e300, -1e300, 3.4028236e38, -3.4028236e38, 7e4, -7e4, 0.5])
def test_a_threshold_beyond_the_types_range_is_compared_as_what_it_is(dtype, value):
    info = np.finfo(dtype)
    data = np.array([*SPECIAL, float(info.max), float(info.min)], dtype)
    expected = [int(not np.isnan(x) and float(x) > value) for x in data]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning on stderr either
        got = threshold(data, value)
        out = np.zeros(data.shape, np.uint8)
        threshold(data, value, out=out)
    assert list(got) == expected and list(out) == expected


def test_within_range_the_comparison_is_numpys_in_the_inputs_precision():
    """0.3 on float32 is float32(0.3): a voxel holding it is not above it (DaCapo's result)."""
    data = np.array([0.3, 0.31, 0.29], np.float32)
    assert list(threshold(data, 0.3)) == list((data > 0.3).view(np.uint8)) == [0, 1, 0]


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_threshold_too_small_for_the_type_is_a_zero_of_its_sign(tmp_path, dtype):
    """What the README says: a threshold of at most half the type's smallest subnormal in
    magnitude rounds to a zero of its sign, and -0.0 equals 0.0, so a voxel holding 0 (or
    -0) is not above -1e-300 on float32 (it is in float64); the smallest subnormal itself,
    negated, counts the zeros."""
    sub = float(np.finfo(dtype).smallest_subnormal)
    values = [0.0, -0.0, sub, -sub, 1.0, -1.0, 2 * sub, -2 * sub]
    data = np.array(values, dtype).reshape(2, 2, 2)
    write_array(tmp_path / "in.zarr", "raw", data, (2, 2, 2))
    masks = {}
    for given in ("-1e-300", repr(-sub / 2), repr(-sub), "-1e-45", "-1e-400"):
        out = f"m{given}"
        args = io_args(tmp_path / "in.zarr", "raw", tmp_path / "o.zarr", out, given)
        assert run_cli("run", *args).code == 0
        masks[given] = zarr.open_array(str(tmp_path / "o.zarr"), path=out)[...].ravel().tolist()
    zeros_not_above = [0, 0, 1, 0, 1, 0, 1, 0]
    assert masks["-1e-300"] == masks[repr(-sub / 2)] == zeros_not_above
    assert masks[repr(-sub)] == [1, 1, 1, 0, 1, 0, 1, 0]
    assert masks["-1e-400"] == zeros_not_above  # read as -0.0 whatever the input
    assert masks["-1e-45"] == (zeros_not_above if dtype == "float16" else masks[repr(-sub)])
    assert [int(v > -1e-300) for v in values] != zeros_not_above  # not float64's answer
    assert (data > -1e-300).ravel().astype(int).tolist() == zeros_not_above  # numpy's


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
@pytest.mark.parametrize("given", ["9007199254740992", "9007199254740993"])
def test_64_bit_integers_beyond_2_to_the_53_are_compared_in_float64(tmp_path, dtype, given):
    """What the README says: the threshold is a float64 (2^53 + 1 reads as 2^53), and numpy
    compares an int64 or uint64 input with it in float64, where 2^53 + 1 is 2^53: so
    2^53 + 1 > 2^53 is false, though 2^53 + 2 and 2^53 + 3 (which rounds up) are above."""
    t = 2**53
    values = [t - 1, t, t + 1, t + 2, t + 3, 2**62, 2**63 - 1, 0]
    data = np.array(values, dtype).reshape(2, 2, 2)
    write_array(tmp_path / "in.zarr", "raw", data, (2, 2, 2))
    result = run_cli("run", *io_args(tmp_path / "in.zarr", "raw", tmp_path / "o.zarr", "m", given))
    assert result.code == 0, result
    got = zarr.open_array(str(tmp_path / "o.zarr"), path="m")[...].ravel().tolist()
    assert got == [0, 0, 0, 1, 1, 1, 1, 0]
    assert got != [int(v > t) for v in values]  # not the exact integer comparison


def test_integers_of_32_bits_compare_exactly():
    top = np.iinfo(np.int32).max
    data = np.array([top, top - 1, -top - 1], np.int32)
    assert threshold(data, float(top - 1)).tolist() == [1, 0, 0]
