"""The planner: pure arithmetic, chunk-aligned, daisy-compatible for fit=valid."""

from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import pytest
from funlib.geometry import Roi

from threshold_worker.errors import InputError
from threshold_worker.plan import Plan, round_up


def make(**kw):
    base = dict(
        array_shape=(100, 70, 90),
        write_unit=(10, 10, 10),
        roi_begin=(0, 0, 0),
        roi_shape=(100, 70, 90),
        block_shape=(20, 20, 30),
    )
    base.update(kw)
    return Plan.create(**base)


@pytest.mark.parametrize(
    "roi_begin,roi_shape", [((0, 0, 0), (100, 70, 90)), ((13, 20, 7), (61, 43, 80))]
)
def test_shrink_covers_every_roi_voxel_exactly_once(roi_begin, roi_shape):
    plan = make(roi_begin=roi_begin, roi_shape=roi_shape)
    hits = np.zeros((100, 70, 90), dtype=np.uint8)
    for b in range(plan.total_blocks):
        (z0, y0, x0), (z1, y1, x1) = plan.block_box(b)
        hits[z0:z1, y0:y1, x0:x1] += 1
    want = np.zeros_like(hits)
    sl = tuple(slice(b, b + s) for b, s in zip(roi_begin, roi_shape, strict=True))
    want[sl] = 1
    np.testing.assert_array_equal(hits, want)


def test_blocks_never_split_a_chunk():
    plan = make(roi_begin=(13, 20, 7), roi_shape=(61, 43, 80))
    chunk_owner: dict[tuple[int, ...], int] = {}
    for b in range(plan.total_blocks):
        begin, end = plan.block_box(b)
        ranges = [range(lo // 10, (hi - 1) // 10 + 1) for lo, hi in zip(begin, end, strict=True)]
        for chunk in itertools.product(*ranges):
            assert chunk_owner.setdefault(chunk, b) == b, (
                f"chunk {chunk} in blocks {chunk_owner[chunk]} and {b}"
            )


def test_valid_skips_partial_border_blocks_as_daisy_does(tmp_path, monkeypatch):
    import daisy

    monkeypatch.chdir(tmp_path)  # daisy writes its logs below the working directory

    total = Roi((10, 20, 0), (95, 50, 90))
    block = Roi((0, 0, 0), (20, 20, 30))
    seen = []
    task = daisy.Task(
        "valid",
        total_roi=total,
        read_roi=block,
        write_roi=block,
        process_function=lambda b: seen.append((tuple(b.write_roi.begin), tuple(b.write_roi.end))),
        read_write_conflict=False,
        fit="valid",
    )
    assert daisy.run_blockwise([task], multiprocessing=False)
    plan = Plan.create(
        array_shape=(120, 80, 90),
        write_unit=(10, 10, 10),
        roi_begin=(10, 20, 0),
        roi_shape=(95, 50, 90),
        block_shape=(20, 20, 30),
        fit="valid",
    )
    ours = [plan.block_box(b) for b in range(plan.total_blocks)]
    assert sorted(ours) == sorted(seen)
    assert plan.total_blocks == 4 * 2 * 3


def test_block_ids_are_c_order():
    plan = make()
    assert plan.grid_shape == (5, 4, 3)
    assert plan.block_box(0) == ((0, 0, 0), (20, 20, 30))
    assert plan.block_box(1) == ((0, 0, 30), (20, 20, 60))
    assert plan.block_box(3) == ((0, 20, 0), (20, 40, 30))
    assert plan.block_box(59) == ((80, 60, 60), (100, 70, 90))
    with pytest.raises(IndexError):
        plan.block_box(60)


@pytest.mark.parametrize("total_partitions", [1, 2, 7, 60, 1000])
def test_partitions_are_contiguous_and_balanced(total_partitions):
    plan = make(partitions=total_partitions)
    ranges = [plan.partition_range(i) for i in range(plan.partitions)]
    assert plan.partitions == min(total_partitions, 60)
    assert ranges[0].start == 0 and ranges[-1].stop == plan.total_blocks
    for a, b in itertools.pairwise(ranges):
        assert a.stop == b.start
    sizes = {len(r) for r in ranges}
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_ten_million_blocks_plan_in_constant_memory():
    tracemalloc.start()
    plan = Plan.create(
        array_shape=(40000, 40000, 40000),
        write_unit=(64, 64, 64),
        roi_begin=(0, 0, 0),
        roi_shape=(27648, 27648, 27648),
        block_shape=(128, 128, 128),
        partitions=1000,
    )
    assert plan.total_blocks == 216**3  # 10,077,696
    boxes = [plan.block_box(b) for b in (0, plan.total_blocks // 2, plan.total_blocks - 1)]
    last = plan.partition_range(999)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 200_000, f"planning allocated {peak} bytes"
    assert boxes[-1] == ((27520,) * 3, (27648,) * 3)
    assert last.stop == plan.total_blocks and len(last) == math.ceil(plan.total_blocks / 1000)


def test_fingerprint_changes_with_what_defines_the_output():
    a = make(identity={"threshold": "0.5"})
    assert a.fingerprint == make(identity={"threshold": "0.5"}).fingerprint
    assert a.fingerprint == make(identity={"threshold": "0.5"}, partitions=4).fingerprint
    assert a.fingerprint != make(identity={"threshold": "0.6"}).fingerprint
    assert a.fingerprint != make(identity={"threshold": "0.5"}, roi_shape=(100, 70, 80)).fingerprint
    assert (
        a.fingerprint != make(identity={"threshold": "0.5"}, block_shape=(10, 20, 30)).fingerprint
    )
    assert a.fingerprint != make(identity={"threshold": "0.5"}, fit="valid").fingerprint


def test_default_block_holds_about_eight_chunks():
    plan = make(block_shape=None)
    assert plan.block_shape == (20, 20, 20)
    sharded = make(block_shape=None, write_unit=(50, 10, 30), sharded=True)
    assert sharded.block_shape == (50, 10, 30)


@pytest.mark.parametrize(
    "kw,field,words",
    [
        (
            dict(block_shape=(15, 20, 30)),
            "block_shape",
            "not a multiple of the output chunk shape (10, 10, 10); blocks that split a chunk "
            "would race on it; use --block-shape 20,20,30",
        ),
        (
            dict(block_shape=(10, 20, 30), align=(20, 20, 20)),
            "block_shape",
            "not a multiple of the grid (20, 20, 20) it starts on; use --block-shape 20,20,40",
        ),
        (  # no larger than the block that covers the roi: 2^63 - 1 rounds up past int64
            dict(block_shape=(2**63 - 1, 25, 30), roi_begin=(5, 0, 0), roi_shape=(50, 70, 90)),
            "block_shape",
            "use --block-shape 60,30,30",
        ),
        (dict(block_shape=(0, 20, 30)), "block_shape", "positive"),
        (dict(block_shape=(20, 20)), "block_shape", "expected 3"),
        (dict(fit="overhang"), "fit", "outside the roi"),
        (dict(fit="bogus"), "fit", "not one of"),
        (dict(roi_shape=(0, 10, 10)), "roi.shape", "positive"),
        (dict(fit="valid", roi_begin=(5, 0, 0), roi_shape=(90, 70, 90)), "roi.offset", "chunk"),
        (
            dict(fit="valid", roi_shape=(10, 70, 90)),
            "block_shape",
            "no block; use fit=shrink or --block-shape 10,20,30",
        ),
        (
            dict(fit="valid", roi_shape=(5, 70, 90)),
            "block_shape",
            "no block; use fit=shrink or a larger roi: a block holds at least (10, 10, 10) voxels",
        ),
        (dict(partitions=0), "partitions", "at least 1"),
    ],
)
def test_bad_plans_name_the_field(kw, field, words):
    with pytest.raises(InputError) as info:
        make(**kw)
    assert info.value.field == field
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_plan_round_trips_through_json():
    import json

    plan = make(partitions=3, identity={"x": 1})
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan


def test_round_up_gives_the_smallest_multiple_per_axis():
    """The one rounding of a shape up to whole steps, which every 'use --block-shape' (and
    --output-shards) suggestion comes from."""
    assert round_up((10, 16, 1, 0), (8, 16, 4, 3)) == (16, 16, 4, 0)
    assert round_up([np.int64(17)], [8]) == (24,)
