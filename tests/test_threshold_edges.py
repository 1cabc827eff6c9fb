"""The threshold at the edges of float types: compared in the input's precision, as numpy
and DaCapo compare, except where the threshold itself would round to an infinity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

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
