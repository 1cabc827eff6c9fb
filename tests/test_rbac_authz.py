"""The test server's RBAC: request attributes resolved as kube-apiserver resolves them, and the
Helm chart's rules applied to them."""

from __future__ import annotations

import pytest

from helm_chart import render
from rbac_authz import (
    ANONYMOUS,
    Authorizer,
    RequestInfo,
    User,
    forbidden_reason,
    request_info,
    service_account,
)

TJ = "/apis/blockwise.dev/v1alpha1"


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/d/pods", {}, ("list", "", "pods", "", "d", "")),
        ("GET", "/api/v1/namespaces/d/pods", {"watch": "true"}, ("watch", "", "pods", "", "d", "")),
        ("GET", "/api/v1/namespaces/d/pods", {"watch": "0"}, ("list", "", "pods", "", "d", "")),
        ("GET", "/api/v1/pods", {"watch": "1"}, ("watch", "", "pods", "", "", "")),
        ("GET", f"{TJ}/thresholdjobs", {}, ("list", "blockwise.dev", "thresholdjobs", "", "", "")),
        ("GET", "/apis/batch/v1/namespaces/d/jobs/x", {}, ("get", "batch", "jobs", "", "d", "x")),
        ("HEAD", "/apis/batch/v1/namespaces/d/jobs/x", {}, ("get", "batch", "jobs", "", "d", "x")),
        ("POST", "/apis/batch/v1/namespaces/d/jobs", {}, ("create", "batch", "jobs", "", "d", "")),
        (
            "PUT",
            "/apis/batch/v1/namespaces/d/jobs/x",
            {},
            ("update", "batch", "jobs", "", "d", "x"),
        ),
        (
            "PATCH",
            f"{TJ}/namespaces/d/thresholdjobs/x/status",
            {},
            ("patch", "blockwise.dev", "thresholdjobs", "status", "d", "x"),
        ),
        ("DELETE", "/api/v1/namespaces/d/pods/p", {}, ("delete", "", "pods", "", "d", "p")),
        ("DELETE", "/api/v1/namespaces/d/pods", {}, ("deletecollection", "", "pods", "", "d", "")),
        ("GET", "/api/v1/namespaces/lab", {}, ("get", "", "namespaces", "", "lab", "lab")),
        (
            "PUT",
            "/api/v1/namespaces/lab/finalize",
            {},
            ("update", "", "namespaces", "finalize", "lab", "lab"),
        ),
        (
            "GET",
            "/api/v1/watch/namespaces/d/pods",
            {},
            ("watch", "", "pods", "", "d", ""),
        ),
        (
            "GET",
            "/api/v1/namespaces/d/pods",
            {"fieldSelector": "metadata.name=p", "watch": "true"},
            ("watch", "", "pods", "", "d", "p"),
        ),
        (
            "GET",
            "/api/v1/namespaces/d/pods",
            {"fieldSelector": "metadata.name!=p"},
            ("list", "", "pods", "", "d", ""),
        ),
    ],
)
def test_resource_requests_resolve_like_the_request_info_factory(method, path, query, expected):
    info = request_info(method, path, query)
    assert info.resource_request
    got = (info.verb, info.api_group, info.resource, info.subresource, info.namespace, info.name)
    assert got == expected


@pytest.mark.parametrize(
    ("method", "path", "verb"),
    [
        ("GET", "/api", "get"),
        ("GET", "/api/v1", "get"),
        ("GET", "/apis", "get"),
        ("GET", f"{TJ}", "get"),
        ("GET", "/version", "get"),
        ("POST", "/healthz", "post"),
        ("GET", "/openapi/v3/apis/batch/v1", "get"),
    ],
)
def test_other_paths_are_non_resource_requests(method, path, verb):
    info = request_info(method, path)
    assert not info.resource_request and info.verb == verb and info.path == path


@pytest.fixture(scope="module")
def cluster_wide() -> tuple[User, Authorizer]:
    return service_account(
        "threshold-system", "tops-threshold-operator"
    ), Authorizer.from_manifests(render({}))


@pytest.fixture(scope="module")
def namespaced() -> tuple[User, Authorizer]:
    return service_account(
        "threshold-system", "tops-threshold-operator"
    ), Authorizer.from_manifests(render({"watchNamespaces": ["lab-a", "lab-b"]}))


def allowed(authz: Authorizer, user: User, method: str, path: str, **query: str) -> bool:
    return authz.allowed(user, request_info(method, path, query))


def test_the_charts_cluster_role_grants_what_the_operator_uses_and_no_more(cluster_wide):
    user, authz = cluster_wide
    for method, path, query in [
        ("GET", f"{TJ}/thresholdjobs", {}),
        ("GET", f"{TJ}/thresholdjobs", {"watch": "true"}),
        ("PATCH", f"{TJ}/namespaces/d/thresholdjobs/x", {}),
        ("PATCH", f"{TJ}/namespaces/d/thresholdjobs/x/status", {}),
        ("POST", "/apis/batch/v1/namespaces/d/jobs", {}),
        ("GET", "/apis/batch/v1/namespaces/d/jobs/x", {}),
        ("PATCH", "/apis/batch/v1/namespaces/d/jobs/x", {}),
        ("GET", "/apis/batch/v1/jobs", {"watch": "true"}),  # kopf follows the Jobs
        ("GET", f"{TJ}/namespaces/d/thresholdjobs/x", {}),  # each pass reads it afresh
        ("GET", "/api/v1/namespaces/d/pods", {"labelSelector": "job-name=x"}),
        ("POST", "/api/v1/namespaces/d/events", {}),
        ("GET", "/api/v1/namespaces/d/events", {"fieldSelector": "reason=FailedCreate"}),
        ("GET", "/apis", {}),
        ("GET", f"{TJ}", {}),
        ("GET", "/version", {}),
    ]:
        assert allowed(authz, user, method, path, **query), (method, path, query)
    for method, path in [
        ("POST", f"{TJ}/namespaces/d/thresholdjobs"),
        ("DELETE", f"{TJ}/namespaces/d/thresholdjobs/x"),
        ("PATCH", "/apis/batch/v1/namespaces/d/jobs/x/status"),
        ("DELETE", "/apis/batch/v1/namespaces/d/jobs/x"),
        ("GET", "/api/v1/namespaces/d/pods/p"),
        ("GET", "/api/v1/namespaces/d/secrets"),
        ("GET", "/api/v1/namespaces"),
        ("GET", "/metrics"),
    ]:
        assert not allowed(authz, user, method, path), (method, path)


def test_namespaced_roles_grant_only_in_their_namespaces(namespaced):
    user, authz = namespaced
    assert allowed(authz, user, "POST", "/apis/batch/v1/namespaces/lab-a/jobs")
    assert allowed(authz, user, "GET", f"{TJ}/namespaces/lab-b/thresholdjobs", watch="true")
    assert not allowed(authz, user, "POST", "/apis/batch/v1/namespaces/default/jobs")
    assert not allowed(authz, user, "GET", f"{TJ}/thresholdjobs", watch="true")  # cluster-wide
    assert allowed(authz, user, "GET", "/api")  # discovery comes from the bootstrap policy
    other = service_account("threshold-system", "someone-else")
    assert not allowed(authz, other, "POST", "/apis/batch/v1/namespaces/lab-a/jobs")


def test_bootstrap_policy():
    authz = Authorizer.from_manifests([])
    admin = User("kubernetes-admin", ("system:masters", "system:authenticated"))
    somebody = User("jane", ("system:authenticated",))
    assert allowed(authz, admin, "DELETE", "/api/v1/namespaces/d/secrets")
    assert allowed(authz, admin, "GET", "/metrics")
    assert allowed(authz, somebody, "GET", "/apis/batch/v1")
    assert allowed(
        authz, somebody, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    )
    assert not allowed(authz, somebody, "GET", "/api/v1/namespaces/d/pods")
    assert not allowed(authz, somebody, "POST", "/api")  # discovery is read-only
    assert allowed(authz, ANONYMOUS, "GET", "/version")
    assert not allowed(authz, ANONYMOUS, "GET", "/api")


def test_rule_matching():
    role = {
        "kind": "ClusterRole",
        "metadata": {"name": "r"},
        "rules": [
            {"apiGroups": [""], "resources": ["*/status"], "verbs": ["get"]},
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["*"], "resourceNames": ["a"]},
            {"nonResourceURLs": ["/logs/*"], "verbs": ["get"]},
        ],
    }
    binding = {
        "kind": "RoleBinding",
        "metadata": {"name": "b", "namespace": "d"},
        "roleRef": {"kind": "ClusterRole", "name": "r"},
        "subjects": [{"kind": "User", "name": "jane"}],
    }
    jane = User("jane", ())
    authz = Authorizer.from_manifests([role, binding])
    assert allowed(authz, jane, "GET", "/api/v1/namespaces/d/pods/p/status")
    assert not allowed(authz, jane, "GET", "/api/v1/namespaces/d/pods/p")
    assert not allowed(authz, jane, "GET", "/api/v1/namespaces/e/pods/p/status")  # other namespace
    assert allowed(authz, jane, "DELETE", "/apis/batch/v1/namespaces/d/jobs/a")
    assert not allowed(authz, jane, "DELETE", "/apis/batch/v1/namespaces/d/jobs/b")
    assert not allowed(authz, jane, "GET", "/apis/batch/v1/namespaces/d/jobs")  # list: no name
    assert not allowed(authz, jane, "GET", "/logs/x")  # a RoleBinding grants no URLs
    cluster = {**binding, "kind": "ClusterRoleBinding", "metadata": {"name": "c"}}
    authz = Authorizer.from_manifests([role, cluster])
    assert allowed(authz, jane, "GET", "/logs/kubelet.log")
    assert allowed(authz, jane, "GET", "/api/v1/namespaces/e/pods/p/status")


def test_forbidden_reasons_read_like_kube_apiservers():
    user = service_account("ops", "op")
    info = request_info("POST", "/apis/batch/v1/namespaces/default/jobs")
    assert forbidden_reason(user, info) == (
        'User "system:serviceaccount:ops:op" cannot create resource "jobs" in API group "batch" '
        'in the namespace "default"'
    )
    info = request_info("GET", f"{TJ}/thresholdjobs", {"watch": "true"})
    assert forbidden_reason(user, info) == (
        'User "system:serviceaccount:ops:op" cannot watch resource "thresholdjobs" in API group '
        '"blockwise.dev" at the cluster scope'
    )
    info = request_info("PATCH", "/api/v1/namespaces/d/pods/p/status")
    assert 'cannot patch resource "pods/status" in API group ""' in forbidden_reason(user, info)
    assert forbidden_reason(user, RequestInfo(path="/metrics", verb="get")) == (
        'User "system:serviceaccount:ops:op" cannot get path "/metrics"'
    )
