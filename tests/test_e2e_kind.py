"""The kind tier: a real cluster. Skipped, with the reason, where kind, kubectl or Docker is
missing (no kind binary or node image can be installed on the CI machines).

Creates a kind cluster with a host folder mounted on the node, loads the image, installs
the chart, applies examples/cpu.yaml with kubectl, waits for Succeeded, checks the output
against numpy, deletes the ThresholdJob and checks that its Jobs are garbage-collected
while the data stays.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from conftest import blobs, expected, write_array
from docker_support import IMAGE_TAG, build_image, docker_available

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parent.parent
CLUSTER = "threshold-e2e"


def _missing() -> str | None:
    for tool in ("kind", "kubectl"):
        if shutil.which(tool) is None:
            return (
                f"{tool} is not installed; the kind tier needs kind, kubectl and Docker (make e2e)"
            )
    return docker_available()


def sh(*cmd: str, timeout: float = 600, **kw) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode:
        raise AssertionError(f"{' '.join(cmd)}: {proc.stderr[-2000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def kind_cluster(tmp_path_factory) -> Iterator[tuple[dict[str, str], Path]]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    image = build_image(IMAGE_TAG)
    data = tmp_path_factory.mktemp("kind-data")
    config = tmp_path_factory.mktemp("kind") / "kind.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kind": "Cluster",
                "apiVersion": "kind.x-k8s.io/v1alpha4",
                "nodes": [
                    {
                        "role": "control-plane",
                        "extraMounts": [{"hostPath": str(data), "containerPath": "/data"}],
                    }
                ],
            }
        )
    )
    kubeconfig = config.parent / "kubeconfig"
    sh(
        "kind",
        "create",
        "cluster",
        "--name",
        CLUSTER,
        "--config",
        str(config),
        "--kubeconfig",
        str(kubeconfig),
        "--wait",
        "180s",
    )
    try:
        sh("kind", "load", "docker-image", image, "--name", CLUSTER)
        yield {**os.environ, "KUBECONFIG": str(kubeconfig)}, data
    finally:
        subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER], capture_output=True)


def _install(env: dict[str, str], tmp: Path) -> None:
    import helm_python

    chart = helm_python.Chart.load(str(ROOT / "charts" / "threshold-operator"))
    values = {
        "image": {"repository": "threshold-operator", "tag": "test", "pullPolicy": "Never"},
        "operator": {"interval": 2},
    }
    rendered = chart.render(values, name="tops", namespace="threshold-system", is_install=True)
    manifests = tmp / "chart.yaml"
    manifests.write_text(
        "\n---\n".join(t for p, t in rendered.items() if p.endswith(".yaml") and t.strip())
    )
    sh(
        "kubectl",
        "apply",
        "--server-side",
        "-f",
        str(ROOT / "charts" / "threshold-operator" / "crds"),
        env=env,
    )
    sh("kubectl", "create", "namespace", "threshold-system", env=env)
    sh("kubectl", "apply", "-f", str(manifests), env=env)
    sh(
        "kubectl",
        "-n",
        "threshold-system",
        "rollout",
        "status",
        "deployment/tops-threshold-operator",
        "--timeout=180s",
        env=env,
    )


def _storage(env: dict[str, str], tmp: Path) -> None:
    docs = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "lab-data"},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "hostPath": {"path": "/data", "type": "Directory"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "lab-data", "namespace": "default"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": "lab-data",
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    ]
    path = tmp / "storage.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    sh("kubectl", "apply", "-f", str(path), env=env)


def test_example_threshold_job_on_kind(kind_cluster, tmp_path):
    env, data = kind_cluster
    values = blobs((64, 96, 96), seed=61)
    container = data / "run1" / "validation.zarr"
    write_array(container, "100000/val/prediction", values, (32, 32, 32), voxel_size=(8, 4, 4))
    subprocess.run(["chmod", "-R", "a+rwX", str(data)], check=True)
    _install(env, tmp_path)
    _storage(env, tmp_path)
    sh("kubectl", "apply", "-f", str(ROOT / "examples" / "cpu.yaml"), env=env)
    sh(
        "kubectl",
        "wait",
        "tj/mito-threshold",
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=600s",
        env=env,
    )
    out = zarr.open_array(str(container), path="100000/val/output/threshold_0.5")[...]
    np.testing.assert_array_equal(out, expected(values, 0.5))
    printed = sh("kubectl", "get", "tj", env=env)
    assert "Succeeded" in printed and "mito-threshold" in printed
    sh("kubectl", "delete", "tj/mito-threshold", "--wait=true", env=env)
    deadline = time.monotonic() + 120
    while sh(
        "kubectl",
        "get",
        "jobs",
        "-l",
        "blockwise.dev/threshold-job=mito-threshold",
        "-o",
        "name",
        env=env,
    ).strip():
        assert time.monotonic() < deadline, "the ThresholdJob's Jobs were not garbage-collected"
        time.sleep(2)
    assert (container / "100000" / "val" / "output" / "threshold_0.5" / "zarr.json").exists()
