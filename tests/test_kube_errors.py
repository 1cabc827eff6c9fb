"""The operator's API calls sort the server's answers: 4xx (but 409 and 429) is permanent and
ends the ThresholdJob, the rest is retried with back-off. Real HTTP to the test server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

import kube_status as ks
from k8s_emulator import AdmissionRequest
from k8s_harness import DEFAULT_ADMISSION, EmulatedCluster
from threshold_operator.catalog import load_catalog
from threshold_operator.jobs import Settings
from threshold_operator.kube import ApiRejected, ApiUnavailable, Kube, Transient
from threshold_operator.reconcile import Reconciler

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "a"},
    "spec": {
        "template": {
            "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}
        }
    },
}


def refuse_parallelism(request: AdmissionRequest) -> None:
    if request.object["spec"].get("parallelism") == 13:
        raise ks.invalid(
            "Job", "batch", request.name, [ks.Cause("spec.parallelism", "Invalid value: 13: no")]
        )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    with EmulatedCluster(
        watch_namespaces=("lab-a",),
        namespaces=("default", "lab-a"),
        admission={
            **DEFAULT_ADMISSION,
            "batch/v1/jobs": [*DEFAULT_ADMISSION["batch/v1/jobs"], refuse_parallelism],
        },
    ) as emulated:
        yield emulated


def kube(cluster: EmulatedCluster, tmp_path: Path, user: str = "operator") -> Kube:
    path = cluster.kubeconfig(tmp_path / user, user=user)
    return Kube(config.new_client_from_config(str(path)))


def test_permanent_refusals_carry_the_servers_message(cluster, tmp_path):
    operator = kube(cluster, tmp_path)
    bad = {**JOB, "spec": {**JOB["spec"], "parallelism": 13}}
    with pytest.raises(ApiRejected) as e:
        operator.create_job("lab-a", bad)
    assert e.value.code == 422
    assert str(e.value) == (
        "the API server refused to create Job lab-a/a (422 Invalid): "
        'Job.batch "a" is invalid: spec.parallelism: Invalid value: 13: no'
    )
    with pytest.raises(ApiRejected) as e:  # the chart grants nothing in default
        operator.create_job("default", JOB)
    assert e.value.code == 403 and "cannot create resource" in str(e.value)
    admin = kube(cluster, tmp_path, "admin")
    with pytest.raises(ApiRejected, match=r'\(404 NotFound\): namespaces "lab-z" not found'):
        admin.create_job("lab-z", JOB)
    operator.create_job("lab-a", JOB)
    with pytest.raises(ApiRejected, match=r"^the API server refused to patch Job lab-a/a \(422"):
        operator.patch_job("lab-a", "a", {"spec": {"parallelism": 13}})


def test_a_conflict_returns_the_existing_job_and_absence_is_none(cluster, tmp_path):
    operator = kube(cluster, tmp_path)
    assert operator.get_job("lab-a", "a") is None
    first = operator.create_job("lab-a", JOB)
    assert operator.create_job("lab-a", JOB)["metadata"]["uid"] == first["metadata"]["uid"]


@pytest.mark.parametrize(
    ("verb", "answer", "call"),
    [
        ("create", 429, "create"),
        ("create", 500, "create"),
        ("create", 503, "create"),
        ("create", "drop", "create"),
        ("get", 503, "get"),
        ("patch", 500, "patch"),
        ("list", 503, "pods"),
    ],
)
def test_transient_answers_are_unavailable(cluster, tmp_path, verb, answer, call):
    operator = kube(cluster, tmp_path)
    operator.create_job("lab-a", {**JOB, "metadata": {"name": "b"}})
    cluster.inject(verb, "pods" if call == "pods" else "jobs", answer, retry_after=2)
    with pytest.raises(ApiUnavailable) as e:
        {
            "create": lambda: operator.create_job("lab-a", JOB),
            "get": lambda: operator.get_job("lab-a", "b"),
            "patch": lambda: operator.patch_job("lab-a", "b", {"spec": {"parallelism": 2}}),
            "pods": lambda: operator.job_pods("lab-a", "b"),
        }[call]()
    assert e.value.retry_after == (2 if answer == 429 else None)
    assert str(e.value).startswith("could not ")
    if answer == "drop":
        assert "no answer from the API server" in str(e.value)


def test_back_off_doubles_is_capped_and_honours_retry_after():
    # Imported here: the handlers read their settings from the environment when first
    # imported, and the operator tier sets them while its module is collected.
    from threshold_operator import handlers

    delays = [handlers.retry_delay(n) for n in range(40)]
    assert delays[1] == 2 * delays[0] and delays[2] == 4 * delays[0]
    assert max(delays) == handlers.RETRY_CAP == delays[-1]
    assert handlers.retry_delay(0, retry_after=30) == 30


def test_an_earlier_incarnations_job_is_waited_for(cluster, tmp_path):
    """Deleted and re-created under the same name: the old Jobs are the garbage collector's."""
    admin = kube(cluster, tmp_path, "admin")
    previous = {"apiVersion": "blockwise.dev/v1alpha1", "kind": "ThresholdJob", "name": "tj"}
    admin.create_job(
        "lab-a",
        {
            **JOB,
            "metadata": {
                "name": "tj-prepare",
                "ownerReferences": [{**previous, "uid": "old", "controller": True}],
            },
        },
    )
    reconciler = Reconciler(kube(cluster, tmp_path), load_catalog(None), Settings())
    body = {
        "metadata": {"name": "tj", "namespace": "lab-a", "uid": "new", "generation": 1},
        "spec": {
            "inputContainer": "/d/a.zarr",
            "inputDataset": "raw",
            "outputContainer": "/d/a.zarr",
            "outputDataset": "mask",
        },
    }
    with pytest.raises(Transient, match="of an earlier ThresholdJob of this name is being deleted"):
        reconciler.reconcile(body)
