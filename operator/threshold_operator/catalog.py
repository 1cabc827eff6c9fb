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
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_validator

from threshold_worker.errors import first_error

from .api import DNS_SUBDOMAIN, LABEL_VALUE, Model
from .quantity import parse_quantity

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_REQUESTS = {"cpu": "1", "memory": "2Gi"}
#: The prepare pod reads metadata and plans: a little CPU, enough memory for the imports.
PREPARE_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
#: A qualified name (label keys, toleration keys, resource names): an optional DNS-subdomain
#: prefix and a name of at most 63 characters (k8s.io/apimachinery IsQualifiedName).
QUALIFIED_NAME = r"^(" + DNS_SUBDOMAIN[1:-1] + r"/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
#: Resources kube lets a container ask for more of than it requests (everything else, e.g.
#: nvidia.com/gpu, is an extended resource: whole numbers, requests equal to limits).
OVERCOMMITTABLE = ("cpu", "memory", "ephemeral-storage")


def _quantity(value: Any) -> str:
    """A quantity as YAML may give it (a number too); checked, kept as written."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a quantity, e.g. 500m, 2, 4Gi")
    parse_quantity(value)
    return str(value)


Quantity = Annotated[str, BeforeValidator(_quantity)]
ResourceName = Annotated[str, Field(pattern=QUALIFIED_NAME, max_length=316)]


class Toleration(Model):
    """A pod toleration, checked as kube-apiserver checks it (ValidateTolerations)."""

    key: str = Field(default="", max_length=316, pattern=r"^$|" + QUALIFIED_NAME)
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = Field(default="", max_length=63, pattern=LABEL_VALUE)
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    toleration_seconds: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if not self.key and self.operator != "Exists":
            raise ValueError("operator must be Exists when key is empty (it matches every taint)")
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("effect must be NoExecute when tolerationSeconds is set")
        return self


class Resources(Model):
    requests: dict[ResourceName, Quantity] = Field(default_factory=dict)
    limits: dict[ResourceName, Quantity] = Field(default_factory=dict)


class PoolSpec(Model):
    """How the pods of one node pool are scheduled and sized."""

    node_selector: dict[
        Annotated[str, Field(max_length=316, pattern=QUALIFIED_NAME)],
        Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)],
    ] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    runtime_class_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN)
    priority_class_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN)
    gpu: bool = Field(default=False, description="Apply the NVIDIA GPU defaults")

    @model_validator(mode="after")
    def _requests_within_limits(self) -> PoolSpec:
        """What kube-apiserver would refuse in every work Job, refused when the catalog is
        read: a request above its limit, an extended resource that is fractional or whose
        request is not its limit."""
        resources = self.container_resources()
        limits = resources.get("limits", {})
        for name, request in resources["requests"].items():
            limit = limits.get(name)
            if name not in OVERCOMMITTABLE:
                if parse_quantity(request).denominator != 1:
                    raise ValueError(f"resources: {name} {request} must be a whole number")
                if limit is None or parse_quantity(request) != parse_quantity(limit):
                    raise ValueError(
                        f"resources: {name} cannot be overcommitted: its request ({request}) "
                        f"and limit ({limit or 'none'}) must be equal"
                    )
            elif limit is not None and parse_quantity(request) > parse_quantity(limit):
                raise ValueError(
                    f"resources: requests.{name} ({request}) exceeds limits.{name} ({limit})"
                )
        return self

    def pod_fields(self) -> dict[str, Any]:
        """nodeSelector, tolerations, runtimeClassName, priorityClassName of a pod spec."""
        selector = dict(self.node_selector)
        tolerations = [t.model_dump(by_alias=True, exclude_defaults=True) for t in self.tolerations]
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
        return self.gpu or any(
            "/" in r for part in (self.resources.requests, self.resources.limits) for r in part
        )

    def prepare_pod_fields(self) -> dict[str, Any]:
        """Scheduling of the prepare pod: an accelerator pool's node selector, tolerations and
        runtime class would only tie a metadata read to a GPU node, so it gets none of them."""
        if not self.accelerated:
            return self.pod_fields()
        return {"priorityClassName": self.priority_class_name} if self.priority_class_name else {}

    def container_resources(self) -> dict[str, dict[str, str]]:
        """Always with requests (the scheduler needs them); a GPU in limits for GPU pools.
        A resource with a limit and no request requests its limit (as kube defaults it), never
        the default request, which may be above the limit."""
        limits = dict(self.resources.limits)
        defaults = {k: v for k, v in DEFAULT_REQUESTS.items() if k not in limits}
        requests = {**defaults, **limits, **self.resources.requests}
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
