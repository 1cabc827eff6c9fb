"""The cluster's compute contexts: names a ThresholdJob may pick, mapped to node pools.

The cluster admin defines them in the Helm values; the chart mounts them as a file:

    contexts:
      cpu:
        resources: {requests: {cpu: "1", memory: 2Gi}, limits: {memory: 4Gi}}
      gpu:
        nodeSelector: {nvidia.com/gpu.present: "true"}
        tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
        resources: {limits: {nvidia.com/gpu: "1"}}
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


class ComputeContextSpec(Model):
    """How pods of one compute context are scheduled and sized."""

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


DEFAULT_CATALOG: dict[str, ComputeContextSpec] = {
    "cpu": ComputeContextSpec(),
    "gpu": ComputeContextSpec(gpu=True, resources={"requests": {"cpu": "2", "memory": "8Gi"}}),
}


class CatalogError(ValueError):
    pass


def load_catalog(path: str | Path | None) -> dict[str, ComputeContextSpec]:
    """The catalog file's contexts, or the defaults (`cpu`, `gpu`) without a file."""
    if path is None:
        return dict(DEFAULT_CATALOG)
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise CatalogError(f"compute-context catalog {path}: {e}") from None
    contexts = data.get("contexts", data) if isinstance(data, dict) else None
    if not isinstance(contexts, dict) or not contexts:
        raise CatalogError(
            f"compute-context catalog {path}: expected a mapping 'contexts: {{name: ...}}'"
        )
    catalog = {}
    for name, spec in contexts.items():
        try:
            catalog[str(name)] = ComputeContextSpec.model_validate(spec or {})
        except ValidationError as e:
            raise CatalogError(
                f"compute-context catalog {path}: {first_error(e, str(name))}"
            ) from None
    return catalog
