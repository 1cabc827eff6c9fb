"""The test API server answers as kube-apiserver does, seen through the kubernetes client:
Status bodies and codes, RBAC, admission on create and patch, faults, garbage collection."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from k8s_harness import EmulatedCluster, create_threshold_job
from threshold_operator.api import GROUP, PLURAL, VERSION

OPERATOR = "system:serviceaccount:threshold-system:tops-threshold-operator"


class Clients:
    def __init__(self, cluster: EmulatedCluster, tmp: Path, user: str) -> None:
        self.api = config.new_client_from_config(str(cluster.kubeconfig(tmp / user, user=user)))
        self.batch = client.BatchV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)


def job(name: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, **meta},
        "spec": {
            "parallelism": 1,
            "template": {
                "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}
            },
        },
    }


def owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
    }


def refusal(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ApiException) as e:
        call()
    return e.value.status, json.loads(e.value.body)


def raw(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


SPEC = {
    "inputContainer": "/d/a.zarr",
    "inputDataset": "raw",
    "outputContainer": "/d/a.zarr",
    "outputDataset": "mask",
    "threshold": 0.5,
}
POD_SPEC = {"containers": [{"name": "c", "image": "i"}]}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[EmulatedCluster, Clients, Clients]]:
    with EmulatedCluster() as emulated:
        yield (
            emulated,
            Clients(emulated, tmp_path, "admin"),
            Clients(emulated, tmp_path, "operator"),
        )


def test_errors_are_metav1_status_bodies(cluster):
    _, admin, _ = cluster
    admin.batch.create_namespaced_job("default", job("a"))
    code, body = refusal(lambda: admin.batch.create_namespaced_job("default", job("a")))
    assert code == 409 and body["reason"] == "AlreadyExists"
    assert body["message"] == 'jobs.batch "a" already exists'
    assert body["details"] == {"name": "a", "group": "batch", "kind": "jobs"}
    code, body = refusal(lambda: admin.batch.read_namespaced_job("nope", "default"))
    assert (code, body["reason"], body["message"]) == (
        404,
        "NotFound",
        'jobs.batch "nope" not found',
    )
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == 404
    code, body = refusal(lambda: admin.batch.create_namespaced_job("lab-z", job("b")))
    assert (code, body["message"]) == (404, 'namespaces "lab-z" not found')
    code, body = refusal(
        lambda: admin.batch.create_namespaced_job("default", job("c", namespace="other"))
    )
    assert code == 400 and body["reason"] == "BadRequest"
    code, body = refusal(
        lambda: admin.batch.patch_namespaced_job(
            "a", "default", {"metadata": {"resourceVersion": "999"}, "spec": {"parallelism": 2}}
        )
    )
    assert code == 409 and body["reason"] == "Conflict"
    assert body["message"].startswith('Operation cannot be fulfilled on jobs.batch "a": ')


def test_rbac_refuses_the_operator_what_the_chart_does_not_grant(cluster):
    emulated, admin, operator = cluster
    admin.batch.create_namespaced_job("default", job("a"))
    operator.batch.read_namespaced_job("a", "default")  # granted
    code, body = refusal(lambda: operator.batch.delete_namespaced_job("a", "default"))
    assert (code, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        f'jobs.batch "a" is forbidden: User "{OPERATOR}" cannot delete resource "jobs" in API '
        'group "batch" in the namespace "default"'
    )
    code, body = refusal(lambda: create_threshold_job(operator.api, "x", SPEC))
    assert code == 403 and 'cannot create resource "thresholdjobs"' in body["message"]
    code, _ = refusal(lambda: operator.core.list_namespaced_secret("default"))
    assert code == 403
    forbidden = [c for c in emulated.calls if c.code == 403]
    assert [(c.user, c.verb, c.resource) for c in forbidden] == [
        (OPERATOR, "delete", "jobs"),
        (OPERATOR, "create", "thresholdjobs"),
        (OPERATOR, "list", "secrets"),
    ]


def test_unknown_tokens_are_unauthorized(cluster, tmp_path):
    emulated, _, _ = cluster
    path = emulated.kubeconfig(tmp_path / "bad", user="admin")
    path.write_text(path.read_text().replace(emulated._tokens["admin"], "forged"))
    code, body = refusal(
        lambda: client.BatchV1Api(config.new_client_from_config(str(path))).list_namespaced_job(
            "default"
        )
    )
    assert (code, body["reason"]) == (401, "Unauthorized")


def test_admission_sees_creates_and_merged_patches_and_may_refuse(cluster):
    """By default the committed CRD admits ThresholdJobs: defaults, then CEL on every patch."""
    _, admin, _ = cluster
    created = create_threshold_job(admin.api, "tj", SPEC)
    assert created["spec"]["parallelism"] == 4  # the CRD's default
    patch = admin.custom.patch_namespaced_custom_object
    patch(GROUP, VERSION, "default", PLURAL, "tj", {"spec": {"parallelism": 2}})
    code, body = refusal(
        lambda: patch(GROUP, VERSION, "default", PLURAL, "tj", {"spec": {"threshold": 0.7}})
    )
    assert code == 422 and body["reason"] == "Invalid"
    immutable = (
        "spec.threshold is immutable: it defines the plan; create a new ThresholdJob (only "
        "parallelism, suspend, retry may change)"
    )
    assert body["message"] == (
        f'ThresholdJob.blockwise.dev "tj" is invalid: spec: Invalid value: "object": {immutable}'
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": f'Invalid value: "object": {immutable}',
            "field": "spec",
        }
    ]
    json_patch = [{"op": "replace", "path": "/spec/threshold", "value": 0.9}]
    code, _ = refusal(
        lambda: patch(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            "tj",
            json_patch,
            _content_type="application/json-patch+json",
        )
    )
    assert code == 422
    patch(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "tj",
        [{"op": "replace", "path": "/spec/parallelism", "value": 3}],
        _content_type="application/json-patch+json",
    )
    stored = admin.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "tj")
    assert stored["spec"]["threshold"] == 0.5 and stored["spec"]["parallelism"] == 3
    assert stored["metadata"]["generation"] == 3


def test_put_replaces_with_optimistic_concurrency(cluster):
    _, admin, _ = cluster
    created = raw(admin.batch.create_namespaced_job("default", job("a"), _preload_content=False))
    created["spec"]["parallelism"] = 3
    replaced = raw(
        admin.batch.replace_namespaced_job("a", "default", created, _preload_content=False)
    )
    assert replaced["spec"]["parallelism"] == 3
    assert replaced["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    code, body = refusal(lambda: admin.batch.replace_namespaced_job("a", "default", created))
    assert (code, body["reason"]) == (409, "Conflict")  # created's resourceVersion is stale


def test_status_is_a_separate_subresource(cluster):
    _, admin, _ = cluster
    created = admin.batch.create_namespaced_job("default", {**job("a"), "status": {"active": 9}})
    assert created.status is None or created.status.active is None  # create drops status
    admin.batch.patch_namespaced_job_status(
        "a", "default", {"status": {"active": 1}, "spec": {"parallelism": 5}}
    )
    admin.batch.patch_namespaced_job("a", "default", {"status": {"active": 7}})
    stored = raw(admin.batch.read_namespaced_job("a", "default", _preload_content=False))
    assert stored["status"] == {"active": 1} and stored["spec"]["parallelism"] == 1
    assert stored["metadata"]["generation"] == 1  # nothing outside status and metadata changed
    code, _ = refusal(
        lambda: admin.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", PLURAL, "missing", {"status": {}}
        )
    )
    assert code == 404


VOLUME = {"claimName": "lab-data", "mountPath": "/data"}
#: kubectl apply of manifests that cannot run (issue 10, must-show 6): (spec change, field).
CANNOT_RUN = {
    "queue-name-pattern": ({"queueName": "lab queue"}, "spec.queueName"),
    "queue-name-length": ({"queueName": "q" * 64}, "spec.queueName"),
    "block-shape-zero": ({"blockShape": [0, 64, 64]}, "spec.blockShape[0]"),
    "roi-shape-zero": ({"roiOffset": [0, 0], "roiShape": [8, 0]}, "spec.roiShape[1]"),
    "mount-path-twice": ({"volumes": [VOLUME, {**VOLUME, "claimName": "b"}]}, "spec.volumes[1]"),
    "env-name": ({"env": [{"name": "1ST", "value": "x"}]}, "spec.env[0].name"),
    "two-sources": ({"arrayStore": {"basedir": "/s", "run": "r", "iteration": 1, "dataset": "d", "parameters": "p"}}, "spec"),
}  # fmt: skip


@pytest.mark.parametrize("change", CANNOT_RUN)
def test_apply_refuses_what_cannot_run_naming_the_field(cluster, change):
    _, admin, _ = cluster
    spec, field = CANNOT_RUN[change]
    code, body = refusal(lambda: create_threshold_job(admin.api, "tj", {**SPEC, **spec}))
    assert (code, body["reason"]) == (422, "Invalid")
    assert field in [c["field"] for c in body["details"]["causes"]]
    assert body["message"].startswith('ThresholdJob.blockwise.dev "tj" is invalid: ')
    assert f"{field}: " in body["message"]
    assert (
        admin.custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"] == []
    )


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -math.inf])
def test_apply_refuses_a_non_finite_threshold_as_kubes_json_decoder_does(cluster, threshold):
    """The kubernetes client writes NaN and Infinity into the body; no JSON decoder takes them."""
    _, admin, _ = cluster
    code, body = refusal(
        lambda: create_threshold_job(admin.api, "tj", {**SPEC, "threshold": threshold})
    )
    assert (code, body["reason"]) == (400, "BadRequest")
    assert body["message"].startswith(
        "the object provided is unrecognized (must be of type ThresholdJob): invalid character"
    )
    patch = admin.custom.patch_namespaced_custom_object
    create_threshold_job(admin.api, "tj", SPEC)
    code, body = refusal(
        lambda: patch(GROUP, VERSION, "default", PLURAL, "tj", {"spec": {"threshold": threshold}})
    )
    assert (code, body["reason"]) == (400, "BadRequest")


def test_strategic_merge_patches_are_refused_for_custom_resources(cluster):
    _, admin, _ = cluster
    create_threshold_job(admin.api, "tj", SPEC)
    code, body = refusal(
        lambda: admin.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            "tj",
            {"spec": {"parallelism": 2}},
            _content_type="application/strategic-merge-patch+json",
        )
    )
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")


@pytest.mark.parametrize("answer", [429, 500, 503])
def test_injected_faults_answer_the_next_matching_requests(cluster, answer):
    emulated, admin, _ = cluster
    fault = emulated.inject("create", "jobs", answer, times=2, retry_after=3)
    admin.batch.list_namespaced_job("default")  # another verb: untouched
    for _ in range(2):
        with pytest.raises(ApiException) as e:
            admin.batch.create_namespaced_job("default", job("a"))
        assert e.value.status == answer
        assert json.loads(e.value.body)["code"] == answer
    if answer == 429:
        assert e.value.headers["Retry-After"] == "3"
        assert json.loads(e.value.body)["details"] == {"retryAfterSeconds": 3}
    admin.batch.create_namespaced_job("default", job("a"))
    assert fault.hits == 2
    assert [c.code for c in emulated.calls if c.verb == "create"] == [answer, answer, 201]


def test_a_dropped_connection_gets_no_answer(cluster):
    emulated, admin, _ = cluster
    emulated.inject("create", "jobs", "drop")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        admin.batch.create_namespaced_job("default", job("a"))
    assert admin.batch.list_namespaced_job("default").items == []  # nothing was created
    admin.batch.create_namespaced_job("default", job("a"))


def test_garbage_collection_follows_owner_references(cluster):
    _, admin, _ = cluster
    tj = create_threshold_job(admin.api, "tj", SPEC)
    parent = raw(
        admin.batch.create_namespaced_job(
            "default", job("a", ownerReferences=[owner(tj)]), _preload_content=False
        )
    )
    kept = raw(admin.batch.create_namespaced_job("default", job("kept"), _preload_content=False))
    pod = {
        "metadata": {"name": "p", "ownerReferences": [owner(parent)]},
        "spec": POD_SPEC,
    }
    admin.core.create_namespaced_pod("default", pod)
    second = {**owner(kept), "controller": False}  # one controller at most
    shared = {"metadata": {"name": "s", "ownerReferences": [owner(parent), second]}}
    admin.core.create_namespaced_pod("default", {**shared, "spec": POD_SPEC})
    admin.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "tj")
    assert [j.metadata.name for j in admin.batch.list_namespaced_job("default").items] == ["kept"]
    (survivor,) = admin.core.list_namespaced_pod("default").items
    assert survivor.metadata.name == "s"  # another owner is alive: only the dangling ref goes
    assert [r.name for r in survivor.metadata.owner_references] == ["kept"]


def test_finalizers_hold_a_dependent_until_they_are_removed(cluster):
    _, admin, _ = cluster
    tj = create_threshold_job(admin.api, "tj", SPEC)
    admin.batch.create_namespaced_job(
        "default", job("a", ownerReferences=[owner(tj)], finalizers=["example.com/hold"])
    )
    admin.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "tj")
    held = admin.batch.read_namespaced_job("a", "default")
    assert held.metadata.deletion_timestamp is not None
    admin.batch.patch_namespaced_job("a", "default", {"metadata": {"finalizers": None}})
    assert admin.batch.list_namespaced_job("default").items == []


@pytest.mark.parametrize(("policy", "left"), [(None, 1), ("Orphan", 1), ("Background", 0)])
def test_deleting_a_job_orphans_its_pods_unless_told_otherwise(cluster, policy, left):
    _, admin, _ = cluster
    parent = raw(admin.batch.create_namespaced_job("default", job("a"), _preload_content=False))
    pod = {"metadata": {"name": "p", "ownerReferences": [owner(parent)]}, "spec": POD_SPEC}
    admin.core.create_namespaced_pod("default", pod)
    admin.batch.delete_namespaced_job("a", "default", propagation_policy=policy)
    pods = admin.core.list_namespaced_pod("default").items
    assert len(pods) == left
    if pods:
        assert not pods[0].metadata.owner_references


def watched(clients: Clients, **params: Any) -> list[tuple[str, str]]:
    """(type, name) of the Job events a watch sends until it is quiet for a second."""
    response = clients.batch.list_namespaced_job(
        "default", watch=True, _preload_content=False, _request_timeout=(5, 1), **params
    )
    events: list[tuple[str, str]] = []
    try:
        for line in response.stream():
            for text in line.decode().splitlines():
                if text.strip():
                    event = json.loads(text)
                    events.append((event["type"], event["object"]["metadata"]["name"]))
    except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
        pass
    finally:
        response.release_conn()
    return events


def test_a_watch_from_a_resource_version_sends_only_what_changed_since(cluster):
    """As kube resumes a watch (kopf's after its listing, and each reconnection): objects
    changed after the resourceVersion, not every object again; without one, all of them."""
    _, admin, _ = cluster
    for name in ("a", "b"):
        admin.batch.create_namespaced_job("default", job(name))
    listed = raw(admin.batch.list_namespaced_job("default", _preload_content=False))
    admin.batch.patch_namespaced_job("b", "default", {"metadata": {"labels": {"x": "y"}}})
    assert watched(admin, resource_version=listed["metadata"]["resourceVersion"]) == [
        ("MODIFIED", "b")
    ]
    assert sorted(watched(admin)) == [("ADDED", "a"), ("ADDED", "b")]
