"""The docker tier: the Dockerfile built by a real Docker engine, the worker and the
operator run in containers as the non-root user on a read-only root file system.

Skipped without an engine unless REQUIRE_DOCKER=1 (CI), which turns that into a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import _free_port, blobs, expected, write_array
from docker_support import IMAGE_TAG, build_image, docker_available
from k8s_harness import EmulatedCluster, create_threshold_job, wait_for
from threshold_operator.api import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.docker
SECURE = [
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--user",
    "10001:10001",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]


@pytest.fixture(scope="module")
def image() -> str:
    reason = docker_available()
    if reason:
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(f"REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)
    return build_image(IMAGE_TAG)


def docker_run(
    image: str,
    *args: str,
    mounts: dict[Path, str] | None = None,
    extra: list[str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    volumes = [f"-v{host}:{inside}" for host, inside in (mounts or {}).items()]
    return subprocess.run(
        ["docker", "run", "--rm", *SECURE, *(extra or []), *volumes, image, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A host folder the container's uid 10001 can write to."""
    folder = tmp_path / "data"
    folder.mkdir()
    yield folder
    subprocess.run(["chmod", "-R", "a+rwX", str(folder)], check=False)


def _open_to_all(folder: Path) -> None:
    subprocess.run(["chmod", "-R", "a+rwX", str(folder)], check=True)


def test_image_metadata(image):
    info = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
        ).stdout
    )[0]
    assert info["Config"]["User"] == "10001:10001"
    labels = info["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "threshold-operator"
    assert labels["org.opencontainers.image.version"]
    assert info["Size"] > 0


def test_worker_in_a_restricted_container_matches_numpy(image, shared):
    data = blobs((40, 48, 56), seed=51)
    write_array(shared / "in.zarr", "raw", data, (16, 16, 16), voxel_size=(8, 4, 4))
    _open_to_all(shared)
    args = [
        "-ic",
        "/data/in.zarr",
        "-id",
        "raw",
        "-oc",
        "/data/out.zarr",
        "-od",
        "mask",
        "-th",
        "0.5",
    ]
    prep = docker_run(
        image, "threshold-worker", "prepare", *args, "--partitions", "2", mounts={shared: "/data"}
    )
    assert prep.returncode == 0, prep.stderr
    for shard in ("0", "1"):
        proc = docker_run(
            image,
            "threshold-worker",
            "start-worker",
            *args,
            "--partitions",
            "2",
            extra=["-e", f"JOB_COMPLETION_INDEX={shard}"],
            mounts={shared: "/data"},
        )
        assert proc.returncode == 0, proc.stderr
    out = zarr.open_array(str(shared / "out.zarr"), path="mask")
    np.testing.assert_array_equal(out[...], expected(data, 0.5))
    assert out.attrs["voxel_size"] == [8, 4, 4]
    run = docker_run(image, "threshold-worker", "run", *args, "-n", "2", mounts={shared: "/data"})
    assert run.returncode == 0, run.stderr
    assert "already done" in run.stdout


def test_bad_input_in_a_container_exits_2(image, shared):
    _open_to_all(shared)
    proc = docker_run(
        image,
        "threshold-worker",
        "start-worker",
        "-ic",
        "/data/none.zarr",
        "-id",
        "raw",
        "-oc",
        "/data/out.zarr",
        "-od",
        "mask",
        mounts={shared: "/data"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: input_container: /data/none.zarr does not exist"


def test_operator_container_creates_the_prepare_job(image, tmp_path):
    from kubernetes import client, config

    liveness = _free_port()
    with EmulatedCluster() as emulated:
        kubeconfig = emulated.kubeconfig(tmp_path / "kubeconfig", user="operator")
        kubeconfig.chmod(0o644)
        admin = emulated.kubeconfig(tmp_path / "admin.kubeconfig", user="admin")
        name = f"threshold-operator-test-{liveness}"
        proc = subprocess.Popen(
            [
                "docker",
                "run",
                "--rm",
                "--name",
                name,
                *SECURE,
                "--network",
                "host",
                "-v",
                f"{kubeconfig}:/config/kubeconfig:ro",
                "-e",
                "KUBECONFIG=/config/kubeconfig",
                "-e",
                "THRESHOLD_OPERATOR_IMAGE=threshold-operator:test",
                image,
                "threshold-operator",
                "run",
                "--interval",
                "0.3",
                "--metrics-port",
                "0",
                "--liveness-port",
                str(liveness),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            api = config.new_client_from_config(str(admin))
            create_threshold_job(
                api,
                "dock",
                {
                    "inputContainer": "/data/a.zarr",
                    "inputDataset": "raw",
                    "outputContainer": "/data/a.zarr",
                    "outputDataset": "mask",
                    "threshold": 0.5,
                },
            )
            batch = client.BatchV1Api(api)

            def prepare_job():
                jobs = json.loads(
                    batch.list_namespaced_job("default", _preload_content=False).data
                )["items"]
                return [j for j in jobs if j["metadata"]["name"] == "dock-prepare"]

            (job,) = wait_for(prepare_job, 120, "the operator container to create the prepare Job")
            container = job["spec"]["template"]["spec"]["containers"][0]
            assert container["image"] == "threshold-operator:test"
            assert container["args"][0] == "prepare"
            custom = client.CustomObjectsApi(api)

            def phase() -> str | None:  # the pass writes the status just after the Job
                body = custom.get_namespaced_custom_object(
                    GROUP, VERSION, "default", PLURAL, "dock"
                )
                return (body.get("status") or {}).get("phase")

            assert wait_for(phase, 60, "the status of the operator container's pass") == (
                "Preparing"
            )
        finally:
            subprocess.run(["docker", "stop", "-t", "5", name], capture_output=True)
            out, _ = proc.communicate(timeout=60)
    assert '"message"' in out  # JSON logs
