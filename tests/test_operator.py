"""The operator tier: the real kopf runtime and kubernetes client, over HTTP, against an
emulated API server (kmock) that authorizes the operator with the Helm chart's RBAC, and a
test-side Job controller running the real worker on real zarr data. See k8s_harness.py for
what is emulated and why."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

import kube_status
from conftest import assert_thresholded, blobs, write_array
from k8s_emulator import AdmissionRequest
from k8s_harness import (
    DEFAULT_ADMISSION,
    EmulatedCluster,
    JobSimulator,
    create_threshold_job,
    operator_env,
    running_operator,
    wait_for,
)
from kube_validation import dns_label
from threshold_operator.api import GROUP, PLURAL, VERSION
from threshold_operator.handlers import event_message
from threshold_operator.names import ANNOTATION_NAME, MAX_LABEL

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Cluster:
    def __init__(
        self, emulated: EmulatedCluster, api: Any, tmp: Path, namespace: str = "default"
    ) -> None:
        from kubernetes import client

        self.emulated = emulated
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.tmp = tmp
        self.namespace = namespace

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return create_threshold_job(self.api, name, spec, self.namespace)

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def wait_phase(self, name: str, *phases: str, timeout: float = 90) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.status(name)).get("phase") in phases and s,
            timeout,
            f"{name} to reach {phases}, last {self.status(name)}",
        )

    def job(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(
                self.batch.read_namespaced_job(name, self.namespace, _preload_content=False).data
            )
        except Exception:
            return None

    def jobs(self, selector: str | None = None) -> list[dict[str, Any]]:
        answer = self.batch.list_namespaced_job(
            self.namespace, label_selector=selector, _preload_content=False
        )
        return json.loads(answer.data)["items"]

    def pods(self, selector: str | None = None) -> list[dict[str, Any]]:
        answer = self.core.list_namespaced_pod(
            self.namespace, label_selector=selector, _preload_content=False
        )
        return json.loads(answer.data)["items"]

    def events(self, name: str) -> list[dict[str, Any]]:
        items = json.loads(
            self.core.list_namespaced_event(self.namespace, _preload_content=False).data
        )["items"]
        return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]

    def operator_calls(self, verb: str, resource: str) -> list[Any]:
        user = self.emulated.operator_user.name
        return [
            c for c in self.emulated.calls if (c.user, c.verb, c.resource) == (user, verb, resource)
        ]


@contextlib.contextmanager
def emulated_cluster(
    tmp_path: Path,
    watch_namespaces: Sequence[str] = (),
    namespace: str = "default",
    admission: dict[str, Any] | None = None,
) -> Iterator[Cluster]:
    """A cluster where the operator (kopf, via KUBECONFIG) is the chart's ServiceAccount and
    the test is admin; at the end, no request of the operator may have been refused by RBAC."""
    from kubernetes import config

    namespaces = ["default", *watch_namespaces]
    with EmulatedCluster(watch_namespaces, namespaces, admission) as emulated:
        admin = emulated.kubeconfig(tmp_path / "admin.kubeconfig", user="admin")
        with operator_env(emulated.kubeconfig(tmp_path / "kubeconfig", user="operator")):
            api = config.new_client_from_config(str(admin))
            yield Cluster(emulated, api, tmp_path, namespace)
    operator = emulated.operator_user.name
    refused = [
        c for c in emulated.calls if c.user == operator and c.code in (401, 403) and not c.injected
    ]
    assert not refused, f"RBAC refused the operator: {refused}"
    assert any(c.user == operator for c in emulated.calls), "the operator never called"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with emulated_cluster(tmp_path) as c:
        yield c


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, np.ndarray]:
    values = blobs((48, 64, 64), seed=41)
    container = tmp_path / "data" / "pred.zarr"
    write_array(container, "raw", values, (16, 32, 32), voxel_size=(8, 4, 4))
    return container, values


def spec_for(container: Path, **extra: Any) -> dict[str, Any]:
    return {
        "inputContainer": str(container),
        "inputDataset": "raw",
        "outputContainer": str(container),
        "outputDataset": "mask",
        "threshold": 0.5,
        "blockShape": [16, 32, 32],  # 3 x 2 x 2 = 12 blocks
        "parallelism": 2,
        "partitions": 4,
        "volumes": [{"claimName": "lab-data", "mountPath": str(container.parent)}],
        **extra,
    }


def test_happy_path(cluster: Cluster, data):
    container, values = data
    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create("tj1", spec_for(container))
        status = cluster.wait_phase("tj1", "Succeeded", "Failed")
    assert not sim.errors, sim.errors
    assert status["phase"] == "Succeeded", status
    assert status["blocks"] == {"total": 12, "done": 12, "failed": 0}
    assert (
        status["partitions"]["completed"] == 4 and status["partitions"]["completedIndexes"] == "0-3"
    )
    assert status["progress"] == "12/12"
    assert status["plan"]["totalBlocks"] == 12 and len(status["plan"]["fingerprint"]) == 16
    assert {c["type"]: c["status"] for c in status["conditions"]}["Succeeded"] == "True"
    assert_thresholded(container, "mask", values, 0.5)
    reasons = [e["reason"] for e in cluster.events("tj1")]
    assert "Planned" in reasons and "Succeeded" in reasons
    assert status["selector"] == "blockwise.dev/threshold-job=tj1"
    assert sorted(j["metadata"]["name"] for j in cluster.jobs(status["selector"])) == [
        "tj1-prepare",
        "tj1-work",
    ]
    assert len(cluster.pods(status["selector"])) == 5  # the prepare pod and 4 partitions


def test_spec_verify_adds_a_verifying_pass_to_each_pod(cluster: Cluster, data):
    """spec.verify: each work pod recomputes its partition's blocks (here 2 of each) after
    writing them; the job succeeds only if they are right."""
    container, values = data
    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create("checked", spec_for(container, verify={"sample": 2}))
        status = cluster.wait_phase("checked", "Succeeded", "Failed")
    assert not sim.errors, sim.errors
    assert status["phase"] == "Succeeded", status
    args = cluster.job("checked-work")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--verify") :][:3] == ["--verify", "--verify-sample", "2"]
    prepare = cluster.job("checked-prepare")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--verify" not in prepare
    assert_thresholded(container, "mask", values, 0.5)


def test_bad_input_fails_in_prepare_with_the_workers_message(cluster: Cluster, data):
    container, _ = data
    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create("bad", spec_for(container, blockShape=[10, 32, 32]))
        status = cluster.wait_phase("bad", "Failed", "Succeeded")
        events = cluster.events("bad")
    assert status["phase"] == "Failed"
    assert status["message"].startswith(
        "spec.blockShape: (10, 32, 32) is not a multiple of the output chunk shape"
    )
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Failed"] == "PrepareFailed"
    assert [n for n, i in sim.pods_started] == ["bad-prepare"]  # exit code 2: never retried
    assert cluster.job("bad-work") is None
    assert not (container / "mask").exists()
    warning = [e for e in events if e["type"] == "Warning"]
    assert warning and "not a multiple" in warning[0]["message"]


def test_a_long_non_ascii_failure_still_gets_its_warning_event(cluster: Cluster, data):
    """kube-apiserver limits an Event's message to 1024 bytes (kopf cuts at 1024 characters):
    a failure naming a long non-ASCII dataset is still told as a Warning Event."""
    container, _ = data
    dataset = "/".join(["é" * 100] * 6)  # 605 characters, 1205 bytes
    spec = spec_for(container, inputDataset=dataset)
    with JobSimulator(cluster.api), running_operator():
        cluster.create("accents", spec)
        status = cluster.wait_phase("accents", "Failed", "Succeeded")
        warnings = wait_for(
            lambda: [e for e in cluster.events("accents") if e["type"] == "Warning"],
            what="the Warning Event",
        )
    assert dataset in status["message"]
    (warning,) = warnings
    assert len(warning["message"].encode()) <= 1024 < len(status["message"].encode())
    assert warning["message"] == event_message(status["message"])
    assert warning["message"].startswith(status["message"][:40]) and warning["message"].endswith(
        " …"
    )


def test_another_jobs_output_fails_the_threshold_job_until_overwrite(cluster: Cluster, data):
    """The output belongs to the ThresholdJob that wrote it: a second one with another
    threshold fails in prepare, naming the first; with spec.overwrite it replaces it."""
    container, values = data
    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create("first", spec_for(container))
        assert cluster.wait_phase("first", "Succeeded", "Failed")["phase"] == "Succeeded"
        cluster.create("second", spec_for(container, threshold=0.7))
        refused = cluster.wait_phase("second", "Failed", "Succeeded")
        cluster.create("third", spec_for(container, threshold=0.7, overwrite=True))
        replaced = cluster.wait_phase("third", "Succeeded", "Failed")
    assert refused["phase"] == "Failed"
    assert "holds the result of another job: threshold 0.5" in refused["message"]
    assert refused["message"].endswith(  # in a ThresholdJob's terms, not the CLI's
        "create the ThresholdJob again with spec.overwrite: true to replace it, or choose "
        "another output"
    )
    assert [n for n, _ in sim.pods_started].count("second-prepare") == 1  # exit 2: no retry
    assert replaced["phase"] == "Succeeded", replaced
    assert_thresholded(container, "mask", values, 0.7)


def test_a_job_on_a_running_jobs_output_waits_for_it_even_with_overwrite(cluster: Cluster, data):
    """A worker holds the output's lease only while a pod runs; between pods, or while they
    wait for a node, a second ThresholdJob with spec.overwrite would replace the output of a
    job that is still running. The operator makes it wait (kopf's index of outputs)."""
    container, values = data
    with JobSimulator(cluster.api) as sim, running_operator():
        sim.held.add("first-work")  # its pods wait, as for room on a node
        cluster.create("first", spec_for(container))
        wait_for(lambda: cluster.job("first-work"), what="the work Job")
        cluster.create("second", spec_for(container, threshold=0.7, overwrite=True))
        cluster.wait_phase("second", "Pending")
        wait_for(lambda: "waiting for" in (cluster.get("second").get("status") or {}).get(
            "message", ""), what="the waiting message")  # fmt: skip
        waiting = cluster.get("second")["status"]
        assert cluster.job("second-prepare") is None
        sim.held.clear()
        first = cluster.wait_phase("first", "Succeeded", "Failed")
        second = cluster.wait_phase("second", "Succeeded", "Failed")
    assert not sim.errors, sim.errors
    assert waiting["message"].startswith(
        "waiting for ThresholdJob first, which writes pred.zarr/mask on PersistentVolumeClaim "
        "lab-data, where this one writes too"
    )
    assert {c["type"]: c["reason"] for c in waiting["conditions"]}["Waiting"] == "OutputInUse"
    assert first["phase"] == "Succeeded" and second["phase"] == "Succeeded", (first, second)
    assert [n for n, _ in sim.pods_started].count("second-prepare") == 1
    assert_thresholded(container, "mask", values, 0.7)


def test_an_output_deleted_between_pods_fails_the_job_instead_of_a_partial_mask(
    cluster: Cluster, data
):
    """The output deleted after the prepare pod made it: a work pod that made it anew would
    hold only its own partition, every pod would exit 0, and the job would say Succeeded."""
    container, _ = data
    with JobSimulator(cluster.api) as sim, running_operator():
        sim.held.add("gone-work")  # its pods wait, as for room on a node
        cluster.create("gone", spec_for(container))
        wait_for(lambda: cluster.job("gone-work"), what="the work Job")
        shutil.rmtree(container / "mask")
        sim.held.clear()
        status = cluster.wait_phase("gone", "Failed", "Succeeded")
        failed = wait_for(  # held pods may be told first, as PodsCannotStart
            lambda: [e for e in cluster.events("gone") if e["reason"] == "Failed"],
            what="the Failed Event",
        )
    assert status["phase"] == "Failed", status
    assert "no longer holds what this job's prepare step made" in status["message"], status
    assert status["message"].endswith(
        "would lose the blocks written before: create the ThresholdJob again (with "
        "spec.overwrite: true if something was put in its place) (exit code 2: not retried, the "
        "pod would fail the same way)"
    ), status["message"]
    assert "bump spec.retry" not in status["message"]
    assert failed[0]["type"] == "Warning" and "no longer holds" in failed[0]["message"], failed
    assert not (container / "mask").exists()  # not made anew, not even a lease


def test_unknown_compute_context_lists_the_known_ones(cluster: Cluster, data):
    container, _ = data
    with running_operator():
        cluster.create("ctx", spec_for(container, pool="tpu"))
        status = cluster.wait_phase("ctx", "Failed")
    assert status["message"] == "spec.pool: 'tpu' is not in this cluster's catalog; known: cpu, gpu"
    assert cluster.jobs() == []


def test_a_partition_that_fails_once_succeeds_on_retry(cluster: Cluster, data):
    container, values = data
    with JobSimulator(cluster.api, fail_once={1}) as sim, running_operator():
        cluster.create("retry", spec_for(container))
        status = cluster.wait_phase("retry", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status
    assert sim.pods_started.count(("retry-work", 1)) == 2
    assert sim.pods_started.count(("retry-work", 0)) == 1
    assert_thresholded(container, "mask", values, 0.5)


def test_a_partition_exhausting_its_retries_fails_the_job_naming_its_blocks(cluster: Cluster, data):
    container, _ = data
    # Shard 2 of 4 holds blocks 6-8; block 6 reads input chunk (1, 1, 0): make it unreadable
    # in a way the worker cannot call bad input (a folder where the chunk file should be).
    chunk = container / "raw" / "c" / "1" / "1" / "0"
    chunk.unlink()
    chunk.mkdir()
    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create("broken", spec_for(container, retries={"perPartition": 1}))
        status = cluster.wait_phase("broken", "Failed", "Succeeded")
    assert status["phase"] == "Failed", status
    assert status["message"].startswith(
        "partition 2 (blocks 6-8) failed after 2 attempts; last error: "
    )
    assert "(exit code 1)" in status["message"]
    assert sim.pods_started.count(("broken-work", 2)) == 2
    assert status["partitions"]["failedIndexes"] == "2"
    assert status["blocks"]["failed"] == 3


def test_a_damaged_input_chunk_fails_its_partition_at_once_naming_it(cluster: Cluster, data):
    """A chunk its codec cannot decode is damaged input: its blocks are recorded in the
    failure ledger, the partition's other blocks are done, the pod exits 3 and the index
    fails without retries; the ThresholdJob names the region and says how to go on."""
    container, _ = data
    (container / "raw" / "c" / "1" / "1" / "0").write_bytes(b"not zstd")
    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create("damaged", spec_for(container, retries={"perPartition": 3}))
        status = cluster.wait_phase("damaged", "Failed", "Succeeded")
    assert status["phase"] == "Failed", status
    assert status["message"].startswith(
        "partition 2 (blocks 6-8) failed: 1 block failed and is recorded in the failure ledger"
    )
    assert "raw/c/1/1/0 cannot be decoded" in status["message"]
    assert "`threshold-worker status`" not in status["message"]  # the CLI's remedy, not ours
    assert status["message"].endswith(
        "(exit code 3: the partition's other blocks are done); fix the cause, then bump "
        "spec.retry to rerun only what did not complete"
    )
    assert sim.pods_started.count(("damaged-work", 2)) == 1


def test_a_failed_partition_fixed_and_retried_in_place_runs_only_what_failed(
    cluster: Cluster, data
):
    """Partition 2 fails for good (a damaged input chunk: exit 2); the chunk is repaired and
    spec.retry bumped: the same ThresholdJob goes Failed -> Running -> Succeeded through a
    second work Job that runs partition 2 alone, and the blocks done before are left alone."""
    container, values = data
    chunk = container / "raw" / "c" / "1" / "1" / "0"
    good = chunk.read_bytes()
    chunk.write_bytes(b"not zstd")
    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create("fixme", spec_for(container))
        failed = cluster.wait_phase("fixme", "Failed", "Succeeded")
        done_before = {p: p.stat().st_mtime_ns for p in (container / "mask").rglob("c/*/*/*")}
        chunk.write_bytes(good)
        cluster.patch_spec("fixme", {"retry": 1})
        status = cluster.wait_phase("fixme", "Succeeded", timeout=120)
        reasons = [e["reason"] for e in cluster.events("fixme")]
    assert not sim.errors, sim.errors
    assert failed["phase"] == "Failed" and failed["message"].endswith(
        "fix the cause, then bump spec.retry to rerun only what did not complete"
    )
    (region,) = failed["failures"]["regions"]
    # The pod's report names the one block of partition 2 that failed (its other blocks,
    # 7 and 8, are done): block 6 of the 3x2x2 grid, in world units (voxel size 8, 4, 4).
    assert failed["failures"]["partitions"] == 1 and failed["failures"]["blocks"] == 1
    assert (region["partition"], region["blocks"], region["exitCode"]) == (2, "6", 2)
    assert region["error"].startswith("spec.inputDataset: raw/c/1/1/0 cannot be decoded")
    assert region["rois"] == [{"offset": [128.0, 128.0, 0.0], "shape": [128.0, 128.0, 128.0]}]
    assert failed["usage"]["pods"] == 4 and failed["usage"]["podSeconds"] >= 0
    assert sim.pods_started.count(("fixme-work", 2)) == 1  # exit 3: no retry of the pod
    assert [i for n, i in sim.pods_started if n == "fixme-work-2"] == [0]  # one pod: partition 2
    retry = cluster.job("fixme-work-2")
    assert retry["spec"]["completions"] == 1
    assert retry["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == [
        "--partition-list",
        "2",
    ]
    assert status["attempt"] == {"number": 2, "retry": 1, "partitions": "2"}
    assert status["blocks"] == {"total": 12, "done": 12, "failed": 0}
    assert status["jobs"]["work"] == "fixme-work-2" and "failures" not in status
    assert status["usage"]["pods"] == 5
    assert reasons.index("Failed") < reasons.index("Retrying") < reasons.index("Succeeded")
    assert_thresholded(container, "mask", values, 0.5)
    after = {p: p.stat().st_mtime_ns for p in done_before}
    assert after == done_before  # chunks written before the retry were not written again


def test_operator_restarts_create_no_duplicates(cluster: Cluster, data):
    container, values = data
    with JobSimulator(cluster.api) as sim:
        with running_operator():
            cluster.create("restart", spec_for(container, parallelism=1))
            wait_for(lambda: cluster.job("restart-prepare"), what="the prepare Job")
        with running_operator():  # restarted while preparing
            wait_for(lambda: cluster.job("restart-work"), what="the work Job")
        with running_operator():  # restarted while running
            status = cluster.wait_phase("restart", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status
    assert sorted(j["metadata"]["name"] for j in cluster.jobs()) == [
        "restart-prepare",
        "restart-work",
    ]
    assert [n for n, _ in sim.pods_started].count("restart-prepare") == 1  # planned once
    assert sorted(i for n, i in sim.pods_started if n == "restart-work") == [0, 1, 2, 3]
    assert_thresholded(container, "mask", values, 0.5)


def test_suspend_resume_and_parallelism(cluster: Cluster, data):
    """Created suspended, nothing runs, not even the prepare pod (with overwrite it would
    replace another job's output); resumed, it plans and runs; suspended while running, its
    work Job is suspended, and takes a new parallelism."""
    container, values = data
    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create("pause", spec_for(container, suspend=True, overwrite=True))
        status = cluster.wait_phase("pause", "Suspended")
        assert status["blocks"]["done"] == 0 and "spec.suspend=false" in status["message"]
        assert cluster.job("pause-prepare")["spec"]["suspend"] is True
        assert sim.pods_started == [] and cluster.pods() == [] and cluster.job("pause-work") is None
        assert not (container / "mask").exists()
        sim.held.add("pause-work")  # its pods wait, as for room on a node
        cluster.patch_spec("pause", {"suspend": False})
        wait_for(lambda: cluster.job("pause-work"), what="the work Job")
        assert cluster.wait_phase("pause", "Running")["message"].endswith("0 running")
        cluster.patch_spec("pause", {"suspend": True, "parallelism": 3})
        status = cluster.wait_phase("pause", "Suspended")
        work = cluster.job("pause-work")["spec"]
        assert work["suspend"] is True and work["parallelism"] == 3
        sim.held.clear()
        cluster.patch_spec("pause", {"suspend": False})
        status = cluster.wait_phase("pause", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded"
    assert status["observedGeneration"] == cluster.get("pause")["metadata"]["generation"]
    assert [n for n, _ in sim.pods_started].count("pause-prepare") == 1
    assert_thresholded(container, "mask", values, 0.5)


def test_deletion_collects_jobs_and_pods_and_leaves_the_data(cluster: Cluster, data):
    """The garbage collector follows owner references: ThresholdJob -> Jobs -> Pods."""
    container, values = data
    with JobSimulator(cluster.api), running_operator():
        created = cluster.create("gone", spec_for(container))
        cluster.wait_phase("gone", "Succeeded")
        for job in cluster.jobs():
            (owner,) = job["metadata"]["ownerReferences"]
            assert owner["uid"] == created["metadata"]["uid"] and owner["controller"] is True
            assert owner["kind"] == "ThresholdJob" and owner["blockOwnerDeletion"] is True
        assert len(cluster.jobs()) == 2 and len(cluster.pods()) == 5
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "gone")
        wait_for(
            lambda: (
                not cluster.custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)[
                    "items"
                ]
            ),
            what="deletion (no finalizer may block it)",
        )
        wait_for(lambda: not cluster.jobs() and not cluster.pods(), what="Jobs and pods to go")
    assert_thresholded(container, "mask", values, 0.5)
    assert (container / "raw" / "zarr.json").exists()


def dacapo_prediction(tmp_path: Path, seed: int) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """A 32^3 prediction where DaCapo's LocalArrayStore puts run1's iteration 100 on val,
    and the spec's arrayStore that names it."""
    from threshold_worker.store import LocalArrayStore

    store = LocalArrayStore(tmp_path / "runs")
    pred = store.validation_prediction_array("run1", 100, "val")
    values = blobs((32, 32, 32), seed=seed)
    write_array(pred.container.path, pred.dataset, values, (16, 16, 16), voxel_size=(4, 4, 4))
    ref = {"basedir": str(tmp_path / "runs"), "run": "run1", "iteration": 100, "dataset": "val"}
    return store, values, ref


def test_array_store_and_gpu_context(cluster: Cluster, tmp_path):
    store, values, ref = dacapo_prediction(tmp_path, seed=42)
    spec = {
        "arrayStore": {**ref, "parameters": "threshold_0.3"},
        "threshold": 0.3,
        "pool": "gpu",
        "parallelism": 1,
    }
    with JobSimulator(cluster.api), running_operator():
        cluster.create("store", spec)
        status = cluster.wait_phase("store", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status
    out = store.validation_output_array("run1", 100, "threshold_0.3", "val")
    assert_thresholded(out.container.path, out.dataset, values, 0.3)
    pod = cluster.job("store-work")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert status["pool"] == "gpu"
    prepare = cluster.job("store-prepare")["spec"]["template"]["spec"]
    assert "nodeSelector" not in prepare and "tolerations" not in prepare
    assert prepare["containers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }


def test_a_sweep_through_the_array_store_writes_dacapos_outputs(cluster: Cluster, tmp_path):
    """thresholds with arrayStore and no parameters: one output per threshold, named as
    DaCapo's validation names them (threshold_0.3, ...), every one from a single pass."""
    store, values, ref = dacapo_prediction(tmp_path, seed=43)
    sweep = [0.3, 0.5, 0.7]
    spec = {
        "arrayStore": ref,
        "thresholds": sweep,
        "blockShape": [16, 16, 16],
        "partitions": 2,
        "parallelism": 2,
        "volumes": [{"claimName": "runs", "mountPath": str(tmp_path / "runs")}],
    }
    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create("sweep", spec)
        status = cluster.wait_phase("sweep", "Succeeded", "Failed")
    assert not sim.errors, sim.errors
    assert status["phase"] == "Succeeded", status
    assert status["blocks"]["total"] == 8 and status["blocks"]["done"] == 8
    for t in sweep:
        out = store.validation_output_array("run1", 100, f"threshold_{t!r}", "val")
        assert_thresholded(out.container.path, out.dataset, values, t)
    args = cluster.job("sweep-work")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--thresholds" in args and "0.3,0.5,0.7" in args and "--threshold" not in args
    assert any(a.endswith("/output/threshold_{threshold}") for a in args)


@pytest.mark.parametrize(
    ("extra", "refused", "message"),
    [
        (
            {"threshold": 0.5},
            True,
            'spec: Invalid value: "object": threshold and thresholds: give one of them, not both',
        ),
        (
            {"outputDataset": "mask"},
            True,
            'spec.outputDataset: Invalid value: "object": must name each threshold\'s output '
            "with {threshold}, e.g. threshold_{threshold}",
        ),
        ({"thresholds": [0.3, 0.3]}, True, "spec.thresholds[1]: Duplicate value: 0.3"),  # a set
        ({"thresholds": [1, 1.0]}, False, "spec.thresholds: [1.0, 1.0] name 1.0 twice"),
    ],
)
def test_a_bad_sweep_is_refused_or_fails_naming_the_field(
    cluster: Cluster, data, extra, refused, message
):
    """The API server refuses what its schema and CEL rules can see (422 Invalid, in kube's
    words); the rest (1 and 1.0, an int64 and a float64, two items of a set to Go)
    is admitted and fails the ThresholdJob with the model's one-line message, before any pod
    writes."""
    from kubernetes.client.exceptions import ApiException

    container, _ = data
    spec = {**spec_for(container, thresholds=[0.3, 0.4]), **extra}
    if "threshold" not in extra:
        del spec["threshold"]
    if "outputDataset" not in extra:
        spec["outputDataset"] = "mask_{threshold}"
    with JobSimulator(cluster.api), running_operator():
        if refused:
            with pytest.raises(ApiException) as refusal:
                cluster.create("badsweep", spec)
            answer = json.loads(refusal.value.body)
            assert (refusal.value.status, answer["reason"]) == (422, "Invalid"), answer
            assert (
                answer["message"] == f'ThresholdJob.blockwise.dev "badsweep" is invalid: {message}'
            )
            operator = cluster.emulated.operator_user.name
            wait_for(  # the fixture checks, at the end, that the operator ran
                lambda: any(c.user == operator for c in cluster.emulated.calls),
                what="the operator's first request",
            )
        else:
            cluster.create("badsweep", spec)
            status = cluster.wait_phase("badsweep", "Failed", "Succeeded")
            warnings = wait_for(
                lambda: [e for e in cluster.events("badsweep") if e["type"] == "Warning"],
                what="the Warning Event",
            )
            assert (status["phase"], status["message"]) == ("Failed", message), status
            assert warnings[0]["message"] == message, warnings
    assert not list(container.glob("mask*"))


def test_spawn_worker_on_the_kubernetes_context(cluster: Cluster, data, tmp_path, monkeypatch):
    """DaCapo's spawn_worker with a Kubernetes compute context: the data on a mounted
    PersistentVolumeClaim, credentials from a Secret, as a ThresholdJob would have them."""
    from kubernetes import client

    from threshold_operator import compute
    from threshold_operator.compute import ThresholdJobFailed
    from threshold_worker import LocalArrayIdentifier, spawn_worker

    container, values = data
    # The user's own credentials (KUBECONFIG here is the operator's, which may not create).
    monkeypatch.setattr(compute, "_api", lambda: client.CustomObjectsApi(cluster.api))
    options = tmp_path / "threshold.yaml"
    options.write_text(
        "compute_context:\n  type: Kubernetes\n  config:\n"
        "    namespace: default\n    poll_seconds: 0.1\n"
        f"    volumes: [{{claimName: lab-data, mountPath: '{container.parent}'}}]\n"
        "    envFrom: [{secretRef: {name: s3-credentials}}]\n"
    )
    monkeypatch.setenv("THRESHOLD_OPTIONS_FILE", str(options))
    with JobSimulator(cluster.api), running_operator():
        run = spawn_worker(
            LocalArrayIdentifier(container, "raw"),
            LocalArrayIdentifier(container, "mask"),
            0.7,
            block_shape=[16, 32, 32],
        )
        status = run()
        assert status["phase"] == "Succeeded"
        assert_thresholded(container, "mask", values, 0.7)
        spec = cluster.get(run.thresholdjob)["spec"]
        assert [(v["claimName"], v["mountPath"]) for v in spec["volumes"]] == [
            ("lab-data", str(container.parent))
        ]
        assert spec["blockShape"] == [16, 32, 32] and spec["threshold"] == 0.7
        pod = cluster.job(status["jobs"]["work"])["spec"]["template"]["spec"]
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
        assert {"name": "data-0", "mountPath": str(container.parent), "readOnly": False} in pod[
            "containers"
        ][0]["volumeMounts"]
        bad = spawn_worker(
            LocalArrayIdentifier(container, "nope"), LocalArrayIdentifier(container, "m2"), 0.7
        )
        with pytest.raises(ThresholdJobFailed, match=r"spec\.inputDataset: no array 'nope'"):
            bad()


def admit(cluster: Cluster, job: str) -> None:
    """What Kueue does when it admits a queued Job: unsuspend it."""
    cluster.batch.patch_namespaced_job(job, "default", {"spec": {"suspend": False}})


def test_kueue_admission_is_left_to_the_queue(cluster: Cluster, data):
    """Both Jobs go through the queue: each is created suspended with the queue label, and
    the ThresholdJob says which one waits; when "Kueue" (the test) admits one, the operator
    does not suspend it again. Suspending it later is Kueue's to do: the CRD refuses it."""
    from kubernetes.client.rest import ApiException

    container, values = data
    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create("queued", spec_for(container, queueName="lab-queue"))
        status = cluster.wait_phase("queued", "Pending")
        assert status["message"] == (
            "waiting for admission by Kueue queue 'lab-queue' (the prepare Job)"
        )
        prepare = cluster.job("queued-prepare")
        assert prepare["spec"]["suspend"] is True and sim.pods_started == []
        assert prepare["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "lab-queue"
        admit(cluster, "queued-prepare")
        wait_for(lambda: cluster.job("queued-work"), what="the work Job")
        wait_for(
            lambda: (
                cluster.status("queued").get("message")
                == "waiting for admission by Kueue queue 'lab-queue' (the work Job)"
            ),
            what="the Kueue message of the work Job",
        )
        work = cluster.job("queued-work")
        assert work["spec"]["suspend"] is True
        assert work["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "lab-queue"
        with pytest.raises(ApiException) as refused:
            cluster.patch_spec("queued", {"suspend": True})
        assert refused.value.status == 422 and "stop its Workload instead" in refused.value.body
        admit(cluster, "queued-work")
        status = cluster.wait_phase("queued", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status
    assert_thresholded(container, "mask", values, 0.5)


def test_a_queued_threshold_job_created_suspended_queues_nothing(cluster: Cluster, data):
    """With a queue, `suspend: true` holds the ThresholdJob back before anything enters
    the queue (Kueue would admit what is there); set to false, it is queued."""
    container, _ = data
    with JobSimulator(cluster.api), running_operator():
        cluster.create("held", spec_for(container, queueName="lab-queue", suspend=True))
        status = cluster.wait_phase("held", "Suspended")
        assert "set spec.suspend=false to queue it" in status["message"]
        assert cluster.jobs() == []
        cluster.patch_spec("held", {"suspend": False})
        status = cluster.wait_phase("held", "Pending")
    assert status["message"].startswith("waiting for admission by Kueue queue 'lab-queue'")
    assert [j["metadata"]["name"] for j in cluster.jobs()] == ["held-prepare"]


def tiny(tmp_path: Path, **extra: Any) -> tuple[Path, np.ndarray, dict[str, Any]]:
    """One block, one partition: the fastest job that still runs both phases."""
    values = blobs((8, 16, 16), seed=7)
    container = tmp_path / "data" / "tiny.zarr"
    write_array(container, "raw", values, (8, 16, 16), voxel_size=(1, 1, 1))
    spec = spec_for(container, blockShape=[8, 16, 16], partitions=1, parallelism=1, **extra)
    return container, values, spec


def test_a_finished_threshold_job_costs_no_requests(cluster: Cluster, tmp_path):
    """Once Succeeded, a ThresholdJob is not looked at again until it or a Job of it changes:
    while one whose prepare Job has no pod yet (looked at every interval: its pods may never
    start) is passed over ten times, the operator makes no request about the finished one.
    kopf keeps no annotation and no finalizer on it either."""
    container, values, spec = tiny(tmp_path)
    held = spec_for(container, outputDataset="other")
    user = cluster.emulated.operator_user.name

    def requests() -> list[Any]:
        return [c for c in cluster.emulated.calls if c.user == user and c.verb != "watch"]

    def passes_over_held(since: int) -> int:
        return sum(c.name == "held" and c.verb == "get" for c in requests()[since:])

    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create("quiet", spec)
        cluster.wait_phase("quiet", "Succeeded", "Failed")
        sim.held.add("held-prepare")  # as if no node had room for its pod
        cluster.create("held", held)
        cluster.wait_phase("held", "Preparing")
        settle = len(requests())  # the pass that follows the Succeeded write, if not done yet
        wait_for(lambda: passes_over_held(settle) >= 3, what="three passes over held")
        mark = len(requests())
        wait_for(lambda: passes_over_held(mark) >= 10, what="ten passes over held")
        window = requests()[mark:]
    assert cluster.status("quiet")["phase"] == "Succeeded"
    assert {c.name for c in window if c.verb != "list"} <= {"held", "held-prepare"}, window
    assert {c.resource for c in window if c.verb == "list"} <= {"events"}  # held-prepare's
    assert sum(c.name == "held" for c in window) >= 10
    meta = cluster.get("quiet")["metadata"]
    assert not meta.get("finalizers")
    assert not [a for a in meta.get("annotations") or {} if "kopf" in a]
    assert_thresholded(container, "mask", values, 0.5)


NAMES = [
    "a",
    *[("mito-" + "x" * 64)[:n] for n in range(52, 65)],
    ("run1.iter100000.val." * 13)[:253],
    "run1.iter100000.val",
]


@pytest.mark.parametrize("name", NAMES, ids=lambda n: f"{len(n)}{'-dots' if '.' in n else ''}")
def test_any_valid_name_runs_to_succeeded(cluster: Cluster, tmp_path, name):
    container, values, spec = tiny(tmp_path)
    with JobSimulator(cluster.api) as sim, running_operator():
        cluster.create(name, spec)
        status = cluster.wait_phase(name, "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status
    assert not sim.errors, sim.errors
    assert_thresholded(container, "mask", values, 0.5)
    jobs = cluster.jobs(status["selector"])  # the selector users copy from the status
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(status["jobs"].values())
    pods = cluster.pods(status["selector"])
    assert len(pods) == 2
    for obj in [*jobs, *pods]:
        assert obj["metadata"]["annotations"][ANNOTATION_NAME] == name
        assert len(obj["metadata"]["labels"]["blockwise.dev/threshold-job"]) <= MAX_LABEL
    (work,) = [p for p in pods if "hostname" in p["spec"]]
    assert dns_label(work["spec"]["hostname"]) == []


def require_deadline(request: AdmissionRequest) -> None:
    """A cluster policy, as a ValidatingAdmissionPolicy would enforce it (422 Invalid)."""
    if request.operation == "CREATE" and "activeDeadlineSeconds" not in request.object["spec"]:
        raise kube_status.invalid(
            "Job",
            "batch",
            request.name,
            [
                kube_status.Cause(
                    "spec.activeDeadlineSeconds",
                    "Required value: jobs in this namespace need a deadline",
                    "FieldValueRequired",
                )
            ],
        )


REFUSALS = {
    "422-invalid": (
        "422 Invalid",
        'Job.batch "refused-prepare" is invalid: spec.activeDeadlineSeconds: Required value: '
        "jobs in this namespace need a deadline",
    ),
    "403-quota": (
        "403 Forbidden",
        'jobs.batch "refused-prepare" is forbidden: exceeded quota: jobs, requested: '
        "count/jobs.batch=1, used: count/jobs.batch=10, limited: count/jobs.batch=10",
    ),
}


def reconciles() -> float:
    return REGISTRY.get_sample_value("threshold_operator_reconciles_total") or 0.0


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refusal_fails_the_threshold_job_once_with_the_servers_message(tmp_path, data, refusal):
    container, _ = data
    code, server_message = REFUSALS[refusal]
    policy = {
        **DEFAULT_ADMISSION,
        "batch/v1/jobs": [*DEFAULT_ADMISSION["batch/v1/jobs"], require_deadline],
    }
    admission = policy if refusal == "422-invalid" else None
    with emulated_cluster(tmp_path, admission=admission) as cluster:
        if refusal == "403-quota":
            quota = kube_status.forbidden(
                "jobs", "batch", "refused-prepare", server_message.split("forbidden: ", 1)[1]
            )
            cluster.emulated.inject("create", "jobs", quota, times=None)
        with running_operator():
            cluster.create("refused", spec_for(container))
            status = cluster.wait_phase("refused", "Failed", "Succeeded")
            for touch in range(3):  # each change of the ThresholdJob is a pass over it
                passes = reconciles()
                annotation = {"metadata": {"annotations": {"touched": str(touch)}}}
                cluster.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, "default", PLURAL, "refused", annotation
                )
                wait_for(lambda p=passes: reconciles() > p, what="another reconcile pass")
        message = f"the API server refused to create Job default/refused-prepare ({code}): "
        assert status["message"] == message + server_message
        assert {c["type"]: c["reason"] for c in status["conditions"]}["Failed"] == "APIRejected"
        warnings = [e for e in cluster.events("refused") if e["type"] == "Warning"]
        assert [(e["reason"], e["message"]) for e in warnings] == [("Failed", status["message"])]
        assert len(cluster.operator_calls("create", "jobs")) == 1  # never retried
        assert cluster.jobs() == []


TRANSIENT = {
    "500-on-create": ("create", "jobs", 500, 2),
    "503-on-read": ("get", "jobs", 503, 2),
    "429-on-create": ("create", "jobs", 429, 1),
    "dropped-on-create": ("create", "jobs", "drop", 1),
    "503-on-status-by-kopf": ("patch", "thresholdjobs/status", 503, 1),
}


@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_api_errors_are_retried_with_back_off(cluster: Cluster, tmp_path, fault, caplog):
    verb, resource, answer, times = TRANSIENT[fault]
    container, values, spec = tiny(tmp_path)
    injected = cluster.emulated.inject(verb, resource, answer, times=times)
    with JobSimulator(cluster.api), running_operator():
        cluster.create("flaky", spec)
        status = cluster.wait_phase("flaky", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status
    assert_thresholded(container, "mask", values, 0.5)
    assert injected.hits == times
    calls = cluster.operator_calls(verb, resource)
    assert [c.code for c in calls[:times]] == [0 if answer == "drop" else answer] * times
    assert calls[times].code in (200, 201, 404) and not calls[times].injected
    if resource == "jobs":  # ours: logged with the attempt and the delay, then retried
        logged = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
        assert len(logged) >= times, logged
        action = {"get": "read", "create": "create"}[verb]
        assert f"could not {action} Job default/flaky-prepare: " in logged[0]
        assert logged[0].endswith("(attempt 1)")
    assert len(cluster.jobs()) == 2


def test_a_child_name_held_by_another_job_fails_cleanly(cluster: Cluster, data):
    container, _ = data
    cluster.batch.create_namespaced_job(
        "default",
        {
            "metadata": {"name": "clash-prepare"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "c", "image": "busybox"}],
                        "restartPolicy": "Never",
                    }
                }
            },
        },
    )
    with running_operator():
        cluster.create("clash", spec_for(container))
        status = cluster.wait_phase("clash", "Failed", "Succeeded")
    assert status["message"] == (
        "Job default/clash-prepare already exists and is not this ThresholdJob's"
    )
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Failed"] == "JobNameTaken"


def test_namespaced_mode_runs_on_the_namespaces_roles_alone(tmp_path, data):
    """The chart with watchNamespaces: Roles in lab-a and lab-b, nothing cluster-wide."""
    container, values = data
    with emulated_cluster(tmp_path, ("lab-a", "lab-b"), namespace="lab-a") as cluster:
        elsewhere = Cluster(cluster.emulated, cluster.api, tmp_path, "default")
        with (
            JobSimulator(cluster.api, namespace="lab-a"),
            running_operator(namespaces=("lab-a", "lab-b")),
        ):
            elsewhere.create("elsewhere", spec_for(container))
            cluster.create("lab", spec_for(container))
            status = cluster.wait_phase("lab", "Succeeded", "Failed")
        assert status["phase"] == "Succeeded", status
        assert_thresholded(container, "mask", values, 0.5)
        assert elsewhere.status("elsewhere") == {} and elsewhere.jobs() == []
        scopes = {
            c.namespace
            for c in cluster.emulated.calls
            if c.user == cluster.emulated.operator_user.name and not c.resource.startswith("/")
        }
        assert scopes == {"lab-a", "lab-b"}  # watched both, touched nothing cluster-wide
