"""The worker's messages told in a ThresholdJob's terms (threshold_operator.wording): the
field a message names and the options it suggests become the spec's fields, while the worker
itself keeps its command-line wording."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import blobs, run_cli, write_array
from threshold_operator.api import ThresholdJobSpec
from threshold_operator.wording import (
    GROUPS,
    array_store_sources,
    in_spec_terms,
    rerun_as,
    spec_error,
)
from threshold_worker.compute import first_error
from threshold_worker.params import JobParameters

ARRAYS = {"inputDataset": "raw", "outputContainer": "/out.zarr", "outputDataset": "mask"}


def spec(container: Path | str = "/in.zarr", **fields: object) -> ThresholdJobSpec:
    return ThresholdJobSpec.model_validate({"inputContainer": str(container), **ARRAYS, **fields})


@pytest.mark.parametrize("name", list(JobParameters.model_fields))
def test_every_field_the_worker_names_is_told_as_the_spec_field(name):
    alias = JobParameters.model_fields[name].alias
    assert in_spec_terms(f"{name}: is wrong") == f"spec.{alias}: is wrong"


#: (worker options beyond the arrays, the worker's message, what the status says). The
#: array is 32 x 32 x 48 voxels of 4 nm in chunks of 8 x 16 x 16.
CASES = [
    (
        ["--block-shape", "10,16,16"],
        "block_shape: (10, 16, 16) is not a multiple of the output chunk shape (8, 16, 16); "
        "blocks that split a chunk would race on it; use --block-shape 16,16,16",
        "spec.blockShape: (10, 16, 16) is not a multiple of the output chunk shape (8, 16, 16); "
        "blocks that split a chunk would race on it; use spec.blockShape: [16, 16, 16]",
    ),
    (
        ["--roi-offset", "0,0"],
        "roi_offset: (0, 0) has 2 values; the input has 3 spatial axes (z, y, x)",
        "spec.roiOffset: (0, 0) has 2 values; the input has 3 spatial axes (z, y, x)",
    ),
    (
        ["--roi-offset", "200,0,0", "--roi-shape", "16,16,16"],
        "roi: [200:216, 0:16, 0:16] (16, 16, 16) lies outside {where}, whose roi is "
        "[0:128, 0:128, 0:192] (128, 128, 192)",
        "spec.roiOffset/spec.roiShape: [200:216, 0:16, 0:16] (16, 16, 16) lies outside "
        "{where}, whose roi is [0:128, 0:128, 0:192] (128, 128, 192)",
    ),
    (
        ["--roi-offset", "2,0,0", "--roi-shape", "16,16,16"],
        "roi: [2:18, 0:16, 0:16] (16, 16, 16) is not on the voxel grid of {where} (voxel size "
        "(4, 4, 4)); use --roi-offset 0,0,0 --roi-shape 20,16,16 (the voxels it covers)",
        "spec.roiOffset/spec.roiShape: [2:18, 0:16, 0:16] (16, 16, 16) is not on the voxel "
        "grid of {where} (voxel size (4, 4, 4)); use spec.roiOffset: [0, 0, 0] and "
        "spec.roiShape: [20, 16, 16] (the voxels it covers)",
    ),
    (
        ["--roi-offset", "4,0,0", "--roi-shape", "124,128,192", "--fit", "valid"],
        "roi.offset: voxel (1, 0, 0) is not on the output chunk shape grid (8, 16, 16), which "
        "fit=valid needs; use fit=shrink or an aligned offset, e.g. --roi-offset 32,0,0 "
        "--roi-shape 96,128,192",
        "spec.roiOffset: voxel (1, 0, 0) is not on the output chunk shape grid (8, 16, 16), "
        "which fit=valid needs; use fit=shrink or an aligned offset, e.g. spec.roiOffset: "
        "[32, 0, 0] and spec.roiShape: [96, 128, 192]",
    ),
    (
        ["--fit", "valid", "--block-shape", "64,16,16"],
        "block_shape: (64, 16, 16) is larger than the roi (32, 32, 48) on some axis, so "
        "fit=valid leaves no block; use fit=shrink or --block-shape 32,16,16",
        "spec.blockShape: (64, 16, 16) is larger than the roi (32, 32, 48) on some axis, so "
        "fit=valid leaves no block; use fit=shrink or spec.blockShape: [32, 16, 16]",
    ),
    (
        ["--output-shards", "12,16,16"],
        "output_shards: (12, 16, 16) is not a multiple of the output chunk shape (8, 16, 16); "
        "use --output-shards 16,16,16",
        "spec.outputShards: (12, 16, 16) is not a multiple of the output chunk shape "
        "(8, 16, 16); use spec.outputShards: [16, 16, 16]",
    ),
    (
        ["--pyramid-mode", "mode"],
        "pyramid_mode: has no effect without pyramid (--pyramid N)",
        "spec.pyramidMode: has no effect without pyramid (spec.pyramid: N)",
    ),
]


@pytest.mark.parametrize("options,worker,status", CASES)
def test_the_workers_messages_in_spec_terms(tmp_path, options, worker, status):
    """The worker's own line (the CLI's words), and the same line in a ThresholdJob's status."""
    container = tmp_path / "in.zarr"
    write_array(container, "raw", blobs((32, 32, 48)), (8, 16, 16), voxel_size=(4, 4, 4))
    args = ["-ic", str(container), "-id", "raw", "-oc", str(tmp_path / "o.zarr"), "-od", "m"]
    result = run_cli("plan", *args, *options)
    where = f"{container}/raw"
    assert result.code == 2 and result.err.strip() == f"error: {worker.format(where=where)}"
    assert in_spec_terms(worker.format(where=where)) == status.format(where=where)


def test_an_roi_is_told_as_the_fields_that_gave_it():
    line = "roi: [0:400, 0:16, 0:16] (400, 16, 16) lies outside /in.zarr/raw"
    told = line.removeprefix("roi: ")
    assert in_spec_terms(line, spec(roiShape=[400, 16, 16])) == f"spec.roiShape: {told}"
    assert in_spec_terms(line, spec(roiOffset=[0, 0, 0])) == f"spec.roiOffset: {told}"
    both = spec(roiOffset=[0, 0, 0], roiShape=[400, 16, 16])
    assert in_spec_terms(line, both) == f"spec.roiOffset/spec.roiShape: {told}"
    assert all(set(group) <= set(JobParameters.model_fields) for group in GROUPS.values())


@pytest.mark.parametrize("head", ["output", "input", "zarr", "ome"])
def test_a_word_that_starts_field_names_is_no_group_of_them(head):
    """Only the groups the worker names (roi) stand for several fields: `output: ` is no
    field, and is not told as outputContainer/outputDataset/outputChunks/outputShards."""
    assert in_spec_terms(f"{head}: cannot be read") == f"{head}: cannot be read"


def test_the_array_store_fields_are_found_from_the_model():
    """Each array field as the arrayStore fields that make it: the output dataset is
    parameters' alone; iteration and dataset make the input dataset (and the output's)."""
    assert array_store_sources() == {
        "input_container": ("basedir", "run"),
        "input_dataset": ("iteration", "dataset"),
        "output_container": ("basedir", "run"),
        "output_dataset": ("parameters",),
    }


def test_a_job_of_an_array_store_is_told_in_array_store_fields(tmp_path):
    """An output path that arrayStore made is told as arrayStore's field, not as the
    outputDataset the ThresholdJob never set."""
    store = {"basedir": str(tmp_path), "run": "run1", "iteration": 100000, "dataset": "val"}
    job = ThresholdJobSpec.model_validate(
        {"arrayStore": {**store, "parameters": "../../escape_{threshold}"}, "threshold": 0.9}
    )
    result = run_cli("plan", *job.parameters().to_args())
    line = result.err.strip().removeprefix("error: ")
    assert result.code == 2 and line.startswith("output_dataset: '100000/val/output/../../esc")
    assert in_spec_terms(line, job) == line.replace("output_dataset", "spec.arrayStore.parameters")
    missing = f"input_dataset: no array '100000/val/prediction' in container {tmp_path}"
    assert in_spec_terms(missing, job) == missing.replace(
        "input_dataset", "spec.arrayStore.iteration/spec.arrayStore.dataset"
    )
    assert in_spec_terms("output_container: cannot write", job) == (
        "spec.arrayStore.basedir/spec.arrayStore.run: cannot write"
    )
    # without the spec (or with one that names its arrays itself): the spec's array fields
    assert in_spec_terms(line).startswith("spec.outputDataset: ")
    assert in_spec_terms(line, spec()).startswith("spec.outputDataset: ")


def test_an_array_option_of_an_array_store_job_names_the_fields_without_a_value(tmp_path):
    """`-od 100000/val/output/img` is a path arrayStore makes of several fields: the status
    names the field(s) to change, never a whole path as the value of one of them."""
    store = {"basedir": str(tmp_path), "run": "run1", "iteration": 100000, "dataset": "val"}
    job = ThresholdJobSpec.model_validate(
        {"arrayStore": {**store, "parameters": "img/s0"}, "threshold": 0.5}
    )
    params = job.parameters()
    write_array(Path(params.input_container), params.input_dataset, blobs((16,) * 3), (8,) * 3)
    image = params.model_copy(update={"output_dataset": "100000/val/output/img", "ome_zarr": True})
    assert run_cli("run", *image.to_args(), "--pyramid", "1", "-n", "1").code == 0
    result = run_cli("plan", *params.to_args(), "--overwrite")
    level = f"{params.output_container}/100000/val/output/img/s0"
    assert result.code == 2 and result.err == (
        f"error: output_dataset: {level} is level s0 of the OME-Zarr image "
        "'100000/val/output/img', with levels s1; write the image with --ome-zarr -od "
        "100000/val/output/img (its levels are replaced with it), or choose another "
        "output_dataset\n"
    )
    assert in_spec_terms(result.err.removeprefix("error: ").strip(), job) == (
        f"spec.arrayStore.parameters: {level} is level s0 of the OME-Zarr image "
        "'100000/val/output/img', with levels s1; write the image with spec.omeZarr: true and "
        "spec.arrayStore.parameters (its levels are replaced with it), or choose another "
        "spec.arrayStore.parameters"
    )


@pytest.mark.parametrize(
    "worker,status",
    [
        (
            "block_shape: (10, 16, 16) is not a multiple of the grid (16, 16, 16) it starts on; "
            "use --block-shape 16,16,16",
            "spec.blockShape: (10, 16, 16) is not a multiple of the grid (16, 16, 16) it starts "
            "on; use spec.blockShape: [16, 16, 16]",
        ),
        (
            "pyramid: its levels are arrays of an OME-Zarr image group: add --ome-zarr "
            "(omeZarr: true)",
            "spec.pyramid: its levels are arrays of an OME-Zarr image group: add "
            "spec.omeZarr: true",
        ),
        (
            "pyramid_mode: has no effect without pyramid (--pyramid N)",
            "spec.pyramidMode: has no effect without pyramid (spec.pyramid: N)",
        ),
        (
            "output_container: /o.zarr is a zarr v2 group, so an output below it must be v2 "
            "too, not --zarr-format 3 (v2 and v3 metadata side by side make a hierarchy no "
            "zarr reader lists whole); leave --zarr-format out or pass 2, or choose another "
            "output_container",
            "spec.outputContainer: /o.zarr is a zarr v2 group, so an output below it must be "
            "v2 too, not spec.zarrFormat: 3 (v2 and v3 metadata side by side make a hierarchy "
            "no zarr reader lists whole); leave spec.zarrFormat out or pass 2, or choose "
            "another spec.outputContainer",
        ),
        (
            "output_shards: sharding needs zarr format 3, and /o.zarr is a zarr v2 group, so "
            "an output below it is v2; leave --output-shards out, or choose another "
            "output_container",
            "spec.outputShards: sharding needs zarr format 3, and /o.zarr is a zarr v2 group, "
            "so an output below it is v2; leave spec.outputShards out, or choose another "
            "spec.outputContainer",
        ),
        (
            "output_dataset: /o.zarr/img/s0 is level s0 of the OME-Zarr image 'img', with "
            "levels s1-s2; write the image with --ome-zarr -od img (its levels are replaced "
            "with it), or choose another output_dataset",
            "spec.outputDataset: /o.zarr/img/s0 is level s0 of the OME-Zarr image 'img', with "
            "levels s1-s2; write the image with spec.omeZarr: true and spec.outputDataset: img "
            "(its levels are replaced with it), or choose another spec.outputDataset",
        ),
        (
            "input_dataset: /in.zarr/raw/c/0/0/0 cannot be decoded (ValueError: bad); the input "
            "is damaged there: rewrite it, or leave that region out with --roi-offset/--roi-shape",
            "spec.inputDataset: /in.zarr/raw/c/0/0/0 cannot be decoded (ValueError: bad); the "
            "input is damaged there: rewrite it, or leave that region out with "
            "spec.roiOffset/spec.roiShape",
        ),
        (
            "output_dataset: /o.zarr/m exists with chunks (8, 8, 8); pass --overwrite to "
            "replace it",
            "spec.outputDataset: /o.zarr/m exists with chunks (8, 8, 8); create the "
            "ThresholdJob again with spec.overwrite: true to replace it",
        ),
        (  # not a job's option
            "(local containers: add --serve to serve them at http://127.0.0.1:8000)",
            "(local containers: add --serve to serve them at http://127.0.0.1:8000)",
        ),
        (
            "output_dataset: 'output_dataset' in /a.zarr",  # a name, quoted
            "spec.outputDataset: 'output_dataset' in /a.zarr",
        ),
        # an option right after the head's first word is no second field of a pair
        ("fit: use --fit shrink", "spec.fit: use spec.fit: shrink"),
        ("block_shape: use --block-shape 8,8,8", "spec.blockShape: use spec.blockShape: [8, 8, 8]"),
        (
            "block_shape: (8, 8, 8) --block-shape 16,16,16 --fit valid",
            "spec.blockShape: (8, 8, 8) spec.blockShape: [16, 16, 16] and spec.fit: valid",
        ),
    ],
)
def test_options_become_the_fields_that_say_the_same(worker, status):
    """Options next to each other are fields to set together ("... and ..."); an option
    after any other word, the head's field included, stands alone."""
    assert in_spec_terms(worker) == status


@pytest.mark.parametrize(
    ("worker", "remedy", "told"),
    [
        (
            "output_container: opening the output on s3://b/o.zarr/m failed 6 times over about 60 "
            "s (ConnectionError: refused); check the endpoint, the network and the storage "
            "service, then rerun: finished blocks are kept",
            "create the ThresholdJob again",
            "spec.outputContainer: opening the output on s3://b/o.zarr/m failed 6 times over "
            "about 60 s (ConnectionError: refused); check the endpoint, the network and the "
            "storage service, then create the ThresholdJob again",
        ),
        (
            "output_container: no space left on the device holding /d/o.zarr; free space (or "
            "grow the volume), then rerun the same command: finished blocks are kept",
            "",
            "spec.outputContainer: no space left on the device holding /d/o.zarr; free space "
            "(or grow the volume)",
        ),
        (
            "output_dataset: /d/o.zarr/m is being written by another job right now (plan x); "
            "wait for it to end or stop it, then rerun",
            "create the ThresholdJob again",
            "spec.outputDataset: /d/o.zarr/m is being written by another job right now (plan "
            "x); wait for it to end or stop it, then create the ThresholdJob again",
        ),
    ],
)
def test_the_workers_rerun_is_what_reruns_a_threshold_job(worker, remedy, told):
    """A failed prepare pod's "then rerun" would tell of a command no one types; spec.retry
    cannot rerun a job that was never planned: it is created again. A work pod's is left out,
    as the status adds how to retry it."""
    assert rerun_as(in_spec_terms(worker), remedy) == told


def test_a_spec_the_operator_refuses_names_its_fields():
    """The model's own checks (spec: pyramid: ...) say the field, and the remedy as a field."""
    with pytest.raises(ValidationError) as refused:
        spec(pyramid=2)
    message = first_error(refused.value, "spec")
    assert message.startswith("spec: pyramid: ") and "--ome-zarr" in message  # the CLI's words
    assert spec_error(message) == (
        "spec.pyramid: its levels are arrays of an OME-Zarr image group: add spec.omeZarr: true"
    )
    assert (
        spec_error("spec: roiOffset and roiShape differ") == "spec: roiOffset and roiShape differ"
    )
