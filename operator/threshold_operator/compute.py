"""`spawn_worker` on a cluster: the Kubernetes compute context submits a ThresholdJob and
waits for it.

The worker package finds this context through its entry point (`threshold_worker.
compute_contexts`), so the worker never imports the operator. The ThresholdJob's spec is
the job's own parameters plus this context's cluster settings: no field is copied by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from threshold_worker.compute import ComputeContext
from threshold_worker.params import JobParameters

from .api import API_VERSION, GROUP, KIND, PLURAL, VERSION, EnvFrom, EnvVar, VolumeSpec
from .kube import load_config

#: ThresholdJobSpec fields this context sets, beside the job's parameters.
CLUSTER_FIELDS = ("pool", "image", "parallelism", "volumes", "env", "env_from")


class ThresholdJobFailed(RuntimeError):
    """The ThresholdJob ended in phase Failed; the message is its status message."""


class KubernetesComputeContext(ComputeContext):
    """A ThresholdJob on a cluster that runs threshold-operator. `volumes`, `env` and
    `envFrom` are a ThresholdJob's: a PersistentVolumeClaim with the data, object-store
    credentials from a Secret."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    type: Literal["Kubernetes"] = "Kubernetes"
    namespace: str = "default"
    pool: str = Field(default="cpu", description="node pool: a name in the cluster's catalog")
    image: str | None = None
    parallelism: int | None = Field(default=None, ge=1)
    volumes: list[VolumeSpec] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    env_from: list[EnvFrom] = Field(default_factory=list)
    poll_seconds: float = Field(default=5.0, gt=0)
    timeout_seconds: float | None = Field(default=None, gt=0)

    def manifest(self, params: JobParameters) -> dict[str, Any]:
        """The ThresholdJob for `params` (validated against the API model first)."""
        from .api import ThresholdJobSpec

        cluster = {name: getattr(self, name) for name in CLUSTER_FIELDS}
        cluster = {k: v for k, v in cluster.items() if v not in (None, [])}
        # The fields the caller gave: a sweep's threshold is JobParameters' default, which
        # the spec (where threshold and thresholds exclude each other) must not be given.
        spec = ThresholdJobSpec(**params.model_dump(exclude_unset=True), **cluster)
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"generateName": "threshold-", "namespace": self.namespace},
            "spec": spec.model_dump(by_alias=True, exclude_defaults=True, mode="json"),
        }

    def spawn(self, params: JobParameters) -> Callable[[], dict[str, Any]]:
        return spawn_threshold_job(self, params)


def _api() -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(load_config())


def spawn_threshold_job(
    context: KubernetesComputeContext, params: JobParameters, api: Any = None
) -> Callable[[], dict[str, Any]]:
    """Create the ThresholdJob now; the callable waits for it and returns its status."""
    api = api or _api()
    created = api.create_namespaced_custom_object(
        GROUP, VERSION, context.namespace, PLURAL, context.manifest(params)
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
