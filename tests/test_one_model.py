"""One model of a job: every door into it (the CLI, start_worker_fn, a ThresholdJob's
manifest and the pods the operator makes of it, spawn_worker on both compute contexts)
builds the same JobParameters, and so the same plan fingerprint, for one threshold and for a
sweep: a door that drops or doubles a field fails here."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import blobs, run_cli, write_array
from crd_admission import CustomResourceAdmission
from k8s_harness import CRD_FILE
from threshold_operator import compute
from threshold_operator.api import IMMUTABLE, PLAN_FIELDS, ThresholdJobSpec
from threshold_operator.catalog import PoolSpec
from threshold_operator.jobs import Settings, prepare_job, work_job
from threshold_worker import LocalArrayIdentifier, spawn_worker, start_worker_fn
from threshold_worker.commands import cli
from threshold_worker.job import sweep_fingerprint
from threshold_worker.ownership import OWNER_FILE
from threshold_worker.params import JobParameters, options

CRD = CustomResourceAdmission.from_file(CRD_FILE)
BODY = {"metadata": {"name": "tj", "namespace": "lab", "uid": "1234"}}


#: One threshold, or a sweep (whose threshold is left at its default beside thresholds).
THRESHOLDS = {
    "single": {"output_dataset": "mask", "threshold": 0.3},
    "sweep": {"output_dataset": "mask_{threshold}", "thresholds": [0.11, 0.22]},
    # -0.0 comes back from the API server as 0: one name, one fingerprint through each door
    "signed zero": {"output_dataset": "mask_{threshold}", "thresholds": [-0.0, 0.22]},
}


@pytest.fixture(params=list(THRESHOLDS))
def job(request: pytest.FixtureRequest, tmp_path: Path) -> JobParameters:
    container = tmp_path / "in.zarr"
    write_array(container, "raw", blobs((32, 32, 48), seed=9), (8, 16, 16), voxel_size=(4, 4, 4))
    return JobParameters(
        input_container=str(container),
        input_dataset="raw",
        output_container=str(tmp_path / "out.zarr"),
        **THRESHOLDS[request.param],
        roi_offset=[0, 0, 64],
        roi_shape=[96, 128, 128],
        block_shape=[8, 16, 32],
        partitions=3,
        output_chunks=[8, 16, 16],
        zarr_format=3,
    )


def plan_of(args: list[str]) -> str:
    """The fingerprint `threshold-worker plan` prints for these arguments."""
    result = run_cli("plan", *args, "--json")
    assert result.code == 0, result
    return json.loads(result.out)["fingerprint"]


def test_every_field_has_one_spelling_in_each_door():
    """The CLI's options, the CRD's fields and the seed API's keywords are the model's."""
    flags = {name for name, _, _ in options(JobParameters)}
    assert flags == set(JobParameters.model_fields)
    commands = {p.name for p in cli.commands["run"].params}
    assert flags <= commands
    assert set(PLAN_FIELDS) == {
        JobParameters.model_fields[n].alias for n in JobParameters.model_fields
    } | {"arrayStore"}
    assert set(PLAN_FIELDS) < set(IMMUTABLE)
    crd_fields = set(ThresholdJobSpec.model_json_schema(by_alias=True)["properties"])
    assert {JobParameters.model_fields[n].alias for n in JobParameters.model_fields} <= crd_fields


def test_arguments_round_trip_through_the_cli(job):
    parsed = {}

    @cli.command("echo-job")
    def echo(**kw: object) -> None:
        parsed.update(kw)

    from threshold_worker.commands import job_options, parameters

    job_options(echo)
    try:
        result = CliRunner().invoke(cli, ["echo-job", *job.to_args()])
        assert result.exit_code == 0, result.output
    finally:
        cli.commands.pop("echo-job")
    assert parameters(**parsed) == job


def test_the_same_job_through_every_door_has_one_fingerprint(job, tmp_path, monkeypatch):
    fingerprint = plan_of(job.to_args())

    # start_worker_fn: DaCapo's arguments, the model's other fields as keyword-only extras.
    seed = ("input_container", "input_dataset", "output_container", "output_dataset", "threshold")
    extras = job.model_dump(exclude=set(seed))
    stats = start_worker_fn(
        job.input_container,
        job.input_dataset,
        job.output_container,
        job.output_dataset,
        job.threshold,
        **extras,
    )
    assert stats.processed > 0
    owners = [
        json.loads((Path(job.output_container) / one.output_dataset / OWNER_FILE).read_text())
        for one in job.sweep()
    ]

    # spawn_worker on the Local context: the same job finds the outputs its own, all done.
    options = tmp_path / "threshold.yaml"
    monkeypatch.setenv("THRESHOLD_OPTIONS_FILE", str(options))
    options.write_text("compute_context: {type: Local}\n")
    spawn = functools.partial(
        spawn_worker,
        LocalArrayIdentifier(job.input_container, job.input_dataset),
        LocalArrayIdentifier(job.output_container, job.output_dataset),
        job.threshold,
        **extras,
    )
    summary = spawn()()
    assert sweep_fingerprint(summary.jobs) == fingerprint and summary.stats.processed == 0
    assert [o["fingerprint"] for o in owners] == [one.plan.fingerprint for one in summary.jobs]

    # spawn_worker on the Kubernetes context: the ThresholdJob it submits, as the API server
    # admits it (pruned, defaulted)...
    options.write_text("compute_context: {type: Kubernetes, config: {namespace: lab, pool: gpu}}")
    submitted: list[dict] = []

    class Api:
        def create_namespaced_custom_object(self, *path: str) -> dict:
            *_, namespace, _, body = path
            submitted.append(CRD.create(body, namespace=namespace))
            return submitted[-1]

    monkeypatch.setattr(compute, "_api", Api)
    spawn()
    spec = ThresholdJobSpec.model_validate(submitted[0]["spec"])
    assert spec.parameters() == job and spec.pool == "gpu"

    # ...and the pods the operator makes of it run exactly that job.
    for built in (
        prepare_job(BODY, spec, PoolSpec(), Settings()),
        work_job(BODY, spec, PoolSpec(), Settings(), 3, fingerprint),
    ):
        args = built["spec"]["template"]["spec"]["containers"][0]["args"]
        command, rest = args[0], args[1:]
        assert command in ("prepare", "start-worker")
        rest = rest[: rest.index("--termination-log")] if command == "prepare" else rest
        rest = rest[: rest.index("--expect-fingerprint")] if command == "start-worker" else rest
        assert plan_of(rest) == fingerprint


def test_the_operators_default_partitions_are_written_into_the_pods(job):
    spec = ThresholdJobSpec(
        **job.model_dump(exclude={"partitions"}, exclude_unset=True), parallelism=5
    )
    args = prepare_job(BODY, spec, PoolSpec(), Settings())["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert args[args.index("--partitions") + 1] == "20"  # 4 per pod that may run at once
