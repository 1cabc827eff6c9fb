"""`spawn_worker` on a Kubernetes compute context: submit a ThresholdJob and wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from threshold_worker.compute import KubernetesComputeContext
from threshold_worker.job import JobSpec

from .api import API_VERSION, GROUP, KIND, PLURAL, VERSION


class ThresholdJobFailed(RuntimeError):
    """The ThresholdJob ended in phase Failed; the message is its status message."""


def manifest(context: KubernetesComputeContext, spec: JobSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input": {"container": spec.input_container, "dataset": spec.input_dataset},
        "output": {"container": spec.output_container, "dataset": spec.output_dataset},
        "threshold": spec.threshold,
        "fit": spec.fit,
        "computeContext": context.compute_context,
    }
    if spec.roi_offset is not None and spec.roi_shape is not None:
        body["roi"] = {"offset": list(spec.roi_offset), "shape": list(spec.roi_shape)}
    if spec.block_shape is not None:
        body["blockShape"] = list(spec.block_shape)
    if context.parallelism:
        body["parallelism"] = context.parallelism
    if context.image:
        body["image"] = context.image
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"generateName": "threshold-", "namespace": context.namespace},
        "spec": body,
    }


def _api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def spawn_threshold_job(
    context: KubernetesComputeContext, spec: JobSpec, api: Any = None
) -> Callable[[], dict[str, Any]]:
    """Create the ThresholdJob now; the callable waits for it and returns its status."""
    api = api or _api()
    created = api.create_namespaced_custom_object(
        GROUP, VERSION, context.namespace, PLURAL, manifest(context, spec)
    )
    name = created["metadata"]["name"]

    def wait() -> dict[str, Any]:
        deadline = (
            None if context.timeout_seconds is None else time.monotonic() + context.timeout_seconds
        )
        while True:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, context.namespace, PLURAL, name)
            status = obj.get("status") or {}
            if status.get("phase") == "Succeeded":
                return status
            if status.get("phase") == "Failed":
                raise ThresholdJobFailed(
                    f"ThresholdJob {context.namespace}/{name} failed: {status.get('message')}"
                )
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"ThresholdJob {context.namespace}/{name} still {status.get('phase')}"
                )
            time.sleep(context.poll_seconds)

    wait.thresholdjob = name  # type: ignore[attr-defined]
    return wait
