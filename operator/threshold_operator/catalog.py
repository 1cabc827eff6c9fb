"""The cluster's node pools: names a ThresholdJob may pick (`spec.pool`), mapped to the
scheduling and sizing of its pods.

The defaults are here, once: `cpu` and `gpu` (`threshold-operator pools` prints them). The
cluster admin adds pools, changes them or removes one (`name: null`) in the Helm values;
the chart mounts those as a file that is merged over the defaults:

    pools:
      a100:
        gpu: true
        nodeSelector: {cloud.google.com/gke-accelerator: nvidia-tesla-a100}
        resources: {limits: {nvidia.com/gpu: "1", memory: 64Gi}}
      gpu: null
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from threshold_worker.errors import first_error

from .api import Model

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_REQUESTS = {"cpu": "1", "memory": "2Gi"}
#: The prepare pod reads metadata and plans: a little CPU, enough memory for the imports.
PREPARE_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


class PoolSpec(Model):
    """How the pods of one node pool are scheduled and sized."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    resources: dict[str, dict[str, str]] = Field(default_factory=dict)
    runtime_class_name: str | None = None
    priority_class_name: str | None = None
    gpu: bool = Field(default=False, description="Apply the NVIDIA GPU defaults")

    def pod_fields(self) -> dict[str, Any]:
        """nodeSelector, tolerations, runtimeClassName, priorityClassName of a pod spec."""
        selector = dict(self.node_selector)
        tolerations = list(self.tolerations)
        if self.gpu:
            selector.setdefault(f"{GPU_RESOURCE}.present", "true")
            if not any(t.get("key") == GPU_RESOURCE for t in tolerations):
                tolerations.append(
                    {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
                )
        fields: dict[str, Any] = {}
        if selector:
            fields["nodeSelector"] = selector
        if tolerations:
            fields["tolerations"] = tolerations
        if self.runtime_class_name:
            fields["runtimeClassName"] = self.runtime_class_name
        if self.priority_class_name:
            fields["priorityClassName"] = self.priority_class_name
        return fields

    @property
    def accelerated(self) -> bool:
        """A GPU (or other accelerator) pool: the GPU defaults, or an extended resource
        (a name with a domain, e.g. nvidia.com/gpu) in requests or limits."""
        return self.gpu or any("/" in r for part in self.resources.values() for r in part)

    def prepare_pod_fields(self) -> dict[str, Any]:
        """Scheduling of the prepare pod: an accelerator pool's node selector, tolerations and
        runtime class would only tie a metadata read to a GPU node, so it gets none of them."""
        if not self.accelerated:
            return self.pod_fields()
        return {"priorityClassName": self.priority_class_name} if self.priority_class_name else {}

    def container_resources(self) -> dict[str, dict[str, str]]:
        """Always with requests (the scheduler needs them); a GPU in limits for GPU pools."""
        requests = {**DEFAULT_REQUESTS, **self.resources.get("requests", {})}
        limits = dict(self.resources.get("limits", {}))
        if self.gpu:
            limits.setdefault(GPU_RESOURCE, "1")
        if GPU_RESOURCE in limits:
            requests[GPU_RESOURCE] = limits[GPU_RESOURCE]  # extended resources: requests == limits
        return {"requests": requests, "limits": limits} if limits else {"requests": requests}


#: The pools every cluster has unless its catalog removes them.
DEFAULT_POOLS: dict[str, dict[str, Any]] = {
    "cpu": {"resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}},
    "gpu": {
        "gpu": True,
        "resources": {
            "requests": {"cpu": "2", "memory": "8Gi"},
            "limits": {"memory": "16Gi", GPU_RESOURCE: "1"},
        },
    },
}


class CatalogError(ValueError):
    pass


def load_catalog(path: str | Path | None) -> dict[str, PoolSpec]:
    """The default pools, with the catalog file's merged over them (`name: null` removes
    one): what `spec.pool` may name."""
    pools: dict[str, Any] = dict(DEFAULT_POOLS)
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise CatalogError(f"node-pool catalog {path}: {e}") from None
        given = data.get("pools") if isinstance(data, dict) else None
        if not isinstance(given, dict):
            raise CatalogError(
                f"node-pool catalog {path}: expected a mapping 'pools: {{name: ...}}'"
            )
        pools.update(given)
    catalog = {}
    for name, spec in pools.items():
        if spec is None:
            continue
        try:
            catalog[str(name)] = PoolSpec.model_validate(spec)
        except ValidationError as e:
            where = f"node-pool catalog {path}: " if path else "default pools: "
            raise CatalogError(f"{where}{first_error(e, str(name))}") from None
    if not catalog:
        raise CatalogError(f"node-pool catalog {path}: it removes every pool; keep at least one")
    return catalog
