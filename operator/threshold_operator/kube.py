"""The operator's Kubernetes calls, through the official client, as plain dicts.

Each method declares its RBAC verb (`rbac.uses`); nothing else in the package talks to the
API server, so the chart's permissions are exactly these.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from .rbac import uses


def _raw(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api = api_client or client.ApiClient()
        self.batch = client.BatchV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    @uses("batch", "jobs", "get")
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _raw(self.batch.read_namespaced_job(name, namespace, _preload_content=False))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    @uses("batch", "jobs", "create")
    def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create, or return the existing Job of that name (a restart may race a create)."""
        try:
            return _raw(
                self.batch.create_namespaced_job(namespace, manifest, _preload_content=False)
            )
        except ApiException as e:
            if e.status != 409:
                raise
        existing = self.get_job(namespace, manifest["metadata"]["name"])
        if existing is None:
            raise RuntimeError(f"job {manifest['metadata']['name']} conflicts but cannot be read")
        return existing

    @uses("batch", "jobs", "patch")
    def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.batch.patch_namespaced_job(name, namespace, patch, _preload_content=False)

    @uses("", "pods", "list")
    def job_pods(self, namespace: str, job: str, index: int | None = None) -> list[dict[str, Any]]:
        """Pods of a Job (of one completion index), oldest first."""
        selector = f"job-name={job}"
        if index is not None:
            selector += f",batch.kubernetes.io/job-completion-index={index}"
        items = _raw(
            self.core.list_namespaced_pod(
                namespace, label_selector=selector, _preload_content=False
            )
        )
        return sorted(
            items.get("items", []), key=lambda p: p["metadata"].get("creationTimestamp") or ""
        )


def terminations(
    kube: Kube, namespace: str, job: str, index: int | None = None
) -> Iterator[tuple[int | None, str]]:
    """(exit code, termination message) of the Job's terminated pods, newest first."""
    for pod in reversed(kube.job_pods(namespace, job, index)):
        code, message = termination(pod)
        if message:
            yield code, message


def termination(pod: dict[str, Any]) -> tuple[int | None, str]:
    """(exit code, termination message) of a pod's worker container, if it terminated."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        term = state.get("terminated") or (status.get("lastState") or {}).get("terminated")
        if term:
            return term.get("exitCode"), (term.get("message") or "").strip()
    return None, ""
