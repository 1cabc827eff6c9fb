"""The operator tier: the real kopf runtime and kubernetes client, over HTTP, against an
emulated API server (kmock), with a test-side Job controller running the real worker on
real zarr data. See k8s_harness.py for what is emulated and why."""

from __future__ import annotations

import os

os.environ.setdefault("THRESHOLD_OPERATOR_INTERVAL", "0.2")

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from kopf.testing import KopfRunner

from conftest import blobs, expected, write_array
from k8s_harness import EmulatedCluster, JobSimulator, operator_env, wait_for
from threshold_operator.api import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
OPERATOR = ["run", "--standalone", "--all-namespaces", "-m", "threshold_operator.handlers"]


class Cluster:
    def __init__(self, emulated: EmulatedCluster, api: Any, tmp: Path) -> None:
        from kubernetes import client

        self.emulated = emulated
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.tmp = tmp

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ThresholdJob",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, name, {"spec": spec}
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
                self.batch.read_namespaced_job(name, "default", _preload_content=False).data
            )
        except Exception:
            return None

    def jobs(self) -> list[dict[str, Any]]:
        return json.loads(self.batch.list_namespaced_job("default", _preload_content=False).data)[
            "items"
        ]

    def events(self, name: str) -> list[dict[str, Any]]:
        items = json.loads(self.core.list_namespaced_event("default", _preload_content=False).data)[
            "items"
        ]
        return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]

    def job_creations(self) -> int:
        return sum(
            1
            for r in self.emulated.emulator.requests
            if r.method == "POST" and r.resource is not None and r.resource.plural == "jobs"
        )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    from kubernetes import config

    with EmulatedCluster() as emulated:
        kubeconfig = emulated.kubeconfig(tmp_path / "kubeconfig")
        with operator_env(kubeconfig):
            api = config.new_client_from_config(str(kubeconfig))
            yield Cluster(emulated, api, tmp_path)


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, np.ndarray]:
    values = blobs((48, 64, 64), seed=41)
    container = tmp_path / "data" / "pred.zarr"
    write_array(container, "raw", values, (16, 32, 32), voxel_size=(8, 4, 4))
    return container, values


def spec_for(container: Path, **extra: Any) -> dict[str, Any]:
    return {
        "input": {"container": str(container), "dataset": "raw"},
        "output": {"container": str(container), "dataset": "mask"},
        "threshold": 0.5,
        "blockShape": [16, 32, 32],  # 3 x 2 x 2 = 12 blocks
        "parallelism": 2,
        "shards": 4,
        "volumes": [{"claimName": "lab-data", "mountPath": str(container.parent)}],
        **extra,
    }


def test_happy_path(cluster: Cluster, data):
    container, values = data
    with JobSimulator(cluster.api) as sim, KopfRunner(OPERATOR, timeout=60) as runner:
        cluster.create("tj1", spec_for(container))
        status = cluster.wait_phase("tj1", "Succeeded", "Failed")
    assert runner.exit_code == 0, runner.output
    assert not sim.errors, sim.errors
    assert status["phase"] == "Succeeded", status
    assert status["blocks"] == {"total": 12, "done": 12, "failed": 0}
    assert status["shards"]["completed"] == 4 and status["shards"]["completedIndexes"] == "0-3"
    assert status["progress"] == "12/12"
    assert status["plan"]["totalBlocks"] == 12 and len(status["plan"]["fingerprint"]) == 16
    assert {c["type"]: c["status"] for c in status["conditions"]}["Succeeded"] == "True"
    np.testing.assert_array_equal(
        zarr.open_array(str(container), path="mask")[...], expected(values, 0.5)
    )
    reasons = [e["reason"] for e in cluster.events("tj1")]
    assert "Planned" in reasons and "Succeeded" in reasons
