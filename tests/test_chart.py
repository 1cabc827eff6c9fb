"""The Helm chart, rendered by Helm's own Go SDK (helm-python-sdk), checked against the
real Kubernetes schemas (kubernetes-validate), the restricted Pod Security Standard, and
the operator's code (RBAC, CRD, catalog)."""

from __future__ import annotations

import helm_python
import kubernetes_validate
import pytest
import yaml

from helm_chart import CHART, by_kind, render
from pss import assert_restricted
from threshold_operator.catalog import load_catalog
from threshold_operator.crd import crd_yaml
from threshold_operator.rbac import rules

KUBE_VERSIONS = ["1.29.0", "1.33.0"]
NOT_BUILT_IN = {"ServiceMonitor"}  # prometheus-operator's CRD: no upstream schema

VALUES = {
    "default": {},
    "gpu-pool": {
        "pools": {
            "cpu": {"resources": {"requests": {"cpu": "2", "memory": "4Gi"}}},
            "gpu": None,  # null removes one of the operator's default pools
            "a100": {
                "gpu": True,
                "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
                "runtimeClassName": "nvidia",
                "priorityClassName": "batch",
                "resources": {"limits": {"nvidia.com/gpu": "2", "memory": "64Gi"}},
            },
        },
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
    "namespaced": {"watchNamespaces": ["lab-a", "lab-b"]},
}


def test_strict_lint():
    for version in KUBE_VERSIONS:
        result = helm_python.lint(str(CHART), strict=True, kube_version=version)
        assert result["errors"] == [], result
        assert not [m for m in result["messages"] if m["severity"] > 1], result["messages"]


@pytest.mark.parametrize("name", VALUES)
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_manifest_validates(name, version):
    docs = render(VALUES[name])
    assert docs
    for doc in docs:
        if doc["kind"] in NOT_BUILT_IN:
            continue
        kubernetes_validate.validate(doc, version, strict=True)
    for crd_file in CHART.glob("crds/*.yaml"):
        kubernetes_validate.validate(yaml.safe_load(crd_file.read_text()), version, strict=True)


@pytest.mark.parametrize("name", VALUES)
def test_deployment_is_restricted_and_probed(name):
    (deploy,) = by_kind(render(VALUES[name]), "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert_restricted(pod)
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["THRESHOLD_WORKER_SERVICE_ACCOUNT"] == "tops-threshold-operator-worker"


def test_rbac_equals_the_calls_the_operator_makes():
    docs = render({})
    (role,) = by_kind(docs, "ClusterRole")
    assert role["rules"] == rules()
    assert yaml.safe_load((CHART / "files" / "rbac-rules.yaml").read_text()) == rules(), (
        "run make chart-files"
    )
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["subjects"][0]["name"] == "tops-threshold-operator"


def test_namespaced_mode_needs_no_cluster_scoped_permission():
    docs = render(VALUES["namespaced"])
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["lab-a", "lab-b"]
    assert all(r["rules"] == rules() for r in roles)
    (deploy,) = by_kind(docs, "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=lab-a" in args and "--namespace=lab-b" in args
    workers = [
        sa for sa in by_kind(docs, "ServiceAccount") if sa["metadata"]["name"].endswith("-worker")
    ]
    assert sorted(sa["metadata"]["namespace"] for sa in workers) == ["lab-a", "lab-b"]


def test_worker_service_account_has_no_token_and_no_binding():
    docs = render({})
    (worker,) = [
        sa for sa in by_kind(docs, "ServiceAccount") if sa["metadata"]["name"].endswith("-worker")
    ]
    assert worker["automountServiceAccountToken"] is False
    bound = [
        s["name"]
        for b in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding")
        for s in b["subjects"]
    ]
    assert worker["metadata"]["name"] not in bound


@pytest.mark.parametrize("name", ["default", "gpu-pool"])
def test_catalog_config_map_is_what_the_operator_loads(name, tmp_path):
    (cm,) = by_kind(render(VALUES[name]), "ConfigMap")
    path = tmp_path / "catalog.yaml"
    path.write_text(cm["data"]["catalog.yaml"])
    catalog = load_catalog(path)
    if name == "default":
        assert sorted(catalog) == ["cpu", "gpu"]
        assert catalog["gpu"].container_resources()["limits"]["nvidia.com/gpu"] == "1"
    else:
        assert sorted(catalog) == ["a100", "cpu"]
        pod = catalog["a100"].pod_fields()
        assert (
            pod["runtimeClassName"] == "nvidia"
            and pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
        )


def test_service_monitor_is_optional():
    assert not by_kind(render({}), "ServiceMonitor")
    (monitor,) = by_kind(render(VALUES["gpu-pool"]), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_chart_crd_is_generated():
    assert (CHART / "crds" / "thresholdjobs.blockwise.dev.yaml").read_text() == crd_yaml()


@pytest.mark.parametrize(
    "bad",
    [
        {"watchNamespaces": "lab-a"},
        {"pools": {"cpu": {"cpus": 2}}},
        {"image": {"repository": ""}},
        {"operator": {"logFormat": "xml"}},
    ],
)
def test_values_schema_rejects_bad_values(bad):
    with pytest.raises(helm_python.HelmError):
        render(bad)
