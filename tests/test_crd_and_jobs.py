"""The API model, the generated CRD, the examples, the Job builder and status arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from pss import assert_restricted
from threshold_operator.api import IMMUTABLE, KUEUE_SUSPEND_RULE, ThresholdJobSpec
from threshold_operator.catalog import CatalogError, PoolSpec, load_catalog
from threshold_operator.cli import cli as operator_cli
from threshold_operator.crd import crd, crd_yaml
from threshold_operator.jobs import Settings, prepare_job, work_job
from threshold_operator.status import blocks_in, describe_partitions, work_progress
from threshold_worker.intervals import parse_runs
from threshold_worker.plan import Plan, partition_range

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CRD_FILE = ROOT / "crds" / "thresholdjobs.blockwise.dev.yaml"
BODY = {"metadata": {"name": "tj", "namespace": "lab", "uid": "1234"}}


def schema() -> dict:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_crd_is_what_the_model_generates():
    assert CRD_FILE.read_text() == crd_yaml(), (
        "run: threshold-operator crd > crds/thresholdjobs.blockwise.dev.yaml"
    )
    result = CliRunner().invoke(operator_cli, ["crd"])
    assert result.exit_code == 0 and result.output == crd_yaml()
    chart_copy = ROOT / "charts" / "threshold-operator" / "crds" / CRD_FILE.name
    if chart_copy.exists():
        assert chart_copy.read_text() == crd_yaml()


def test_crd_is_structural_and_described():
    def walk(node: dict, path: str) -> None:
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return
        assert "type" in node, f"{path} has no type"
        for name, sub in (node.get("properties") or {}).items():
            walk(sub, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(schema(), "")
    spec = schema()["properties"]["spec"]
    for field in ("threshold", "parallelism", "pool", "fit", "blockShape", "suspend"):
        assert spec["properties"][field].get("description"), field
    assert spec["properties"]["parallelism"]["minimum"] == 1
    assert spec["properties"]["pool"]["default"] == "cpu"
    assert spec["properties"]["fit"]["enum"] == ["shrink", "valid"]


def test_crd_names_columns_and_immutability():
    c = crd()["spec"]
    assert c["names"]["shortNames"] == ["tj"] and c["names"]["categories"] == ["blockwise"]
    version = c["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [col["name"] for col in version["additionalPrinterColumns"]] == [
        "Phase",
        "Blocks",
        "ETA",
        "Pool",
        "Message",
        "Age",
    ]
    rules = [r["rule"] for r in schema()["properties"]["spec"]["x-kubernetes-validations"]]
    for field in IMMUTABLE:  # a set compares as a list of its values (crd._unchanged)
        same = f"self.{field} == oldSelf.{field}"
        values = f"self.{field}.map(x, x) == oldSelf.{field}.map(x, x)"
        assert any(same in r or values in r for r in rules)
    assert not [r for r in rules if "parallelism" in r]  # they may change
    assert [r for r in rules if "suspend" in r] == [KUEUE_SUSPEND_RULE["rule"]]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate_against_the_crd_and_the_model(path):
    doc = yaml.safe_load(path.read_text())
    jsonschema.validate(doc, schema())
    ThresholdJobSpec.model_validate(doc["spec"])
    assert doc["kind"] == "ThresholdJob"


def test_there_are_cpu_gpu_array_store_and_s3_examples():
    assert {p.stem for p in EXAMPLES} >= {"cpu", "gpu", "array-store", "s3"}


def test_schema_rejects_bad_manifests():
    good = yaml.safe_load((ROOT / "examples" / "cpu.yaml").read_text())
    for bad_spec in (
        {**good["spec"], "parallelism": 0},
        {**good["spec"], "fit": "overhang"},
        {**good["spec"], "threshold": "high"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**good, "spec": bad_spec}, schema())


def _spec(**extra) -> ThresholdJobSpec:
    return ThresholdJobSpec.model_validate(
        {
            "inputContainer": "/data/a.zarr",
            "inputDataset": "raw",
            "outputContainer": "/data/a.zarr",
            "outputDataset": "mask",
            "threshold": 0.5,
            **extra,
        }
    )


@pytest.mark.parametrize("context_name", ["cpu", "gpu"])
def test_pod_templates_are_restricted_and_sized(context_name):
    context = load_catalog(None)[context_name]
    for job in (
        prepare_job(BODY, _spec(), context, Settings()),
        work_job(BODY, _spec(), context, Settings(), 8, "abc"),
    ):
        pod = job["spec"]["template"]["spec"]
        assert_restricted(pod)
        assert pod["automountServiceAccountToken"] is False
        assert pod["containers"][0]["resources"]["requests"]["cpu"]
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        assert job["metadata"]["ownerReferences"][0]["uid"] == "1234"
    work = work_job(BODY, _spec(), context, Settings(), 8, "abc")["spec"]["template"]["spec"]
    if context_name == "gpu":
        assert work["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert work["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
        assert work["containers"][0]["resources"]["limits"] == {
            "memory": "16Gi",
            "nvidia.com/gpu": "1",
        }


A100 = {
    "gpu": True,
    "nodeSelector": {"pool": "a100"},
    "tolerations": [{"key": "a100", "operator": "Exists", "effect": "NoSchedule"}],
    "runtimeClassName": "nvidia",
    "priorityClassName": "batch-low",
    "resources": {"limits": {"nvidia.com/gpu": "2", "memory": "64Gi"}},
}
AMD = {"resources": {"requests": {"amd.com/gpu": "1"}, "limits": {"amd.com/gpu": "1"}}}


@pytest.mark.parametrize("context", ["cpu", "gpu", "a100", "amd"])
def test_the_prepare_pod_never_asks_for_a_gpu(context):
    """It only reads metadata: modest requests, no extended resource, no GPU scheduling."""
    catalog = {
        **load_catalog(None),
        "a100": PoolSpec.model_validate(A100),
        "amd": PoolSpec.model_validate(AMD),
    }
    pod = prepare_job(BODY, _spec(), catalog[context], Settings())["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "runtimeClassName" not in pod
    assert pod.get("priorityClassName") == ("batch-low" if context == "a100" else None)
    work = work_job(BODY, _spec(), catalog[context], Settings(), 4, "f")["spec"]["template"]
    gpu = {"cpu": False, "gpu": True, "a100": True, "amd": False}[context]
    assert ("nvidia.com/gpu" in work["spec"]["containers"][0]["resources"].get("limits", {})) is gpu


def test_a_cpu_pool_keeps_its_scheduling_for_the_prepare_pod():
    pool = PoolSpec.model_validate(
        {"nodeSelector": {"pool": "batch"}, "resources": {"requests": {"cpu": "8"}}}
    )
    pod = prepare_job(BODY, _spec(), pool, Settings())["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "batch"}
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}


def test_only_the_prepare_step_may_replace_another_jobs_output():
    """spec.overwrite reaches the prepare pod, which replaces the output once; the
    partitions then find it prepared, and never replace it themselves."""
    context = PoolSpec()
    for overwrite in (False, True):
        spec = _spec(overwrite=overwrite)
        prep = prepare_job(BODY, spec, context, Settings())
        work = work_job(BODY, spec, context, Settings(), 4, "f")
        prep_args = prep["spec"]["template"]["spec"]["containers"][0]["args"]
        work_args = work["spec"]["template"]["spec"]["containers"][0]["args"]
        assert ("--overwrite" in prep_args) is overwrite
        assert "--overwrite" not in work_args


def test_work_job_failure_handling_and_kueue():
    job = work_job(
        BODY,
        _spec(retries={"perPartition": 2, "maxFailedPartitions": 1}, queueName="q", parallelism=3),
        PoolSpec(),
        Settings(),
        10,
        "abc",
    )
    spec = job["spec"]
    assert (
        spec["completionMode"] == "Indexed"
        and spec["completions"] == 10
        and spec["parallelism"] == 3
    )
    assert spec["backoffLimitPerIndex"] == 2 and spec["maxFailedIndexes"] == 1
    assert spec["podReplacementPolicy"] == "Failed"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1]["action"] == "FailIndex" and rules[1]["onExitCodes"]["values"] == [2, 3]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "q"
    assert spec["suspend"] is True  # Kueue admits it
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert (
        args[:1] == ["start-worker"]
        and "--expect-fingerprint" in args
        and "JOB_COMPLETION_INDEX" not in args
    )


def test_catalog_pools_map_to_pods(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "pools": {
                    "a100": {
                        "gpu": True,
                        "nodeSelector": {"pool": "a100"},
                        "runtimeClassName": "nvidia",
                        "priorityClassName": "batch-low",
                        "resources": {"limits": {"nvidia.com/gpu": "2", "memory": "64Gi"}},
                    }
                }
            }
        )
    )
    catalog = load_catalog(path)
    pod = work_job(BODY, _spec(pool="a100"), catalog["a100"], Settings(), 4, "f")["spec"][
        "template"
    ]["spec"]
    assert pod["nodeSelector"] == {"pool": "a100", "nvidia.com/gpu.present": "true"}
    assert pod["runtimeClassName"] == "nvidia" and pod["priorityClassName"] == "batch-low"
    assert pod["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "2"
    path.write_text("pools: {cpu: {resources: 3}}")
    with pytest.raises(CatalogError, match=r"cpu\.resources"):
        load_catalog(path)


def test_intervals_and_blocks_match_the_planner():
    plan = Plan.create(
        array_shape=(1000,),
        write_unit=(1,),
        roi_begin=(0,),
        roi_shape=(997,),
        block_shape=(1,),
        partitions=7,
    )
    for k in range(7):
        assert partition_range(k, 7, plan.total_blocks) == plan.partition_range(k)
    done = parse_runs("0-2,4,6")
    assert done == [(0, 2), (4, 4), (6, 6)]
    assert blocks_in(done, 7, 997) == sum(len(plan.partition_range(k)) for k in (0, 1, 2, 4, 6))
    assert describe_partitions([(4, 4)], 7, 997) == "partition 4 (blocks 569-711)"
    assert (
        describe_partitions([(0, 0), (2, 3)], 4, 4)
        == "partition 0 (block 0), partitions 2-3 (blocks 2-3)"
    )


def test_million_block_job_and_status_stay_small():
    total, partitions = 1_000_000, 100_000
    job = work_job(BODY, _spec(partitions=partitions), PoolSpec(), Settings(), partitions, "f" * 16)
    assert len(json.dumps(job)) < 100 * 1024
    alternating = ",".join(str(i) for i in range(0, partitions, 2))  # the worst interval string
    progress = work_progress(
        {"status": {"completedIndexes": alternating, "failedIndexes": "1,3"}}, partitions, total
    )
    status = {k: v for k, v in progress.items() if k in ("blocks", "partitions")}
    assert len(json.dumps(status)) < 100 * 1024
    assert progress["blocks"]["done"] == total // 2 and progress["partitions"]["failed"] == 2


def test_every_manifest_in_the_readme_is_an_example():
    import re

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    shown = [b for b in blocks if "kind: ThresholdJob" in b]
    examples = {p.read_text().rstrip() for p in EXAMPLES}
    assert len(shown) >= 4
    for block in shown:
        assert block.rstrip() in examples, block[:200]
