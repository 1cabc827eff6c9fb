"""The operator's Kubernetes calls, through the official client, as plain dicts.

Each method declares its RBAC verb (`rbac.uses`); nothing else in the package talks to the
API server but kopf's watches (`rbac.KOPF_CALLS`), so the chart's permissions are exactly
these. Errors come out sorted: a 4xx answer other than 409 and 429 is `ApiRejected` (the
ThresholdJob fails with the server's message); 429, 5xx and lost connections are
`ApiUnavailable`, 409 `Conflict` (the pass is retried with back-off).
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from .api import GROUP, PLURAL, VERSION


class Transient(Exception):
    """Worth another pass later; `retry_after` is the server's wish, in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ApiUnavailable(Transient):
    """429, 5xx, or no answer at all."""


class Conflict(Transient):
    """409: the object changed (or vanished and came back) since it was read."""


class ApiRejected(Exception):
    """A 4xx answer other than 409 and 429: the same request would be refused again."""

    def __init__(self, action: str, code: int, reason: str, message: str) -> None:
        super().__init__(f"the API server refused to {action} ({code} {reason}): {message}")
        self.code = code


def _status(e: ApiException) -> tuple[str, str]:
    """(reason, message) of the metav1.Status an error answer carries."""
    try:
        body = json.loads(e.body or "{}")
    except (TypeError, ValueError):
        body = {}
    body = body if isinstance(body, dict) else {}
    return body.get("reason") or str(e.reason or ""), body.get("message") or str(e.body or "")


def _retry_after(e: ApiException) -> float | None:
    value = (e.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@contextlib.contextmanager
def _answers(action: str) -> Iterator[None]:
    """Sort the API server's answers into permanent (ApiRejected) and transient ones."""
    try:
        yield
    except ApiException as e:
        reason, message = _status(e)
        if e.status == 409:
            raise Conflict(f"could not {action}: 409 {reason}: {message}") from e
        if e.status == 429 or (e.status or 0) >= 500 or not e.status:
            raise ApiUnavailable(
                f"could not {action}: {e.status} {reason}: {message}", _retry_after(e)
            ) from e
        raise ApiRejected(action, e.status, reason, message) from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise ApiUnavailable(f"could not {action}: no answer from the API server ({e})") from e


F = TypeVar("F", bound=Callable[..., Any])

#: (apiGroup, resource) -> verbs: every call a method below makes (rbac.rules reads it).
CALLS: dict[tuple[str, str], set[str]] = defaultdict(set)


def uses(group: str, resource: str, verb: str) -> Callable[[F], F]:
    """Mark a method as making this API call."""
    CALLS[(group, resource)].add(verb)

    def mark(fn: F) -> F:
        return fn

    return mark


def load_config() -> client.ApiClient:
    """How the operator and `spawn_worker` reach the API server: in a pod, its service
    account; elsewhere, the kubeconfig."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def _raw(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


class Kube:
    """Every call either answers, or raises ApiRejected (permanent) or ApiUnavailable."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api = api_client or client.ApiClient()
        self.batch = client.BatchV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    @uses("batch", "jobs", "get")
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        with _answers(f"read Job {namespace}/{name}"):
            try:
                return _raw(self.batch.read_namespaced_job(name, namespace, _preload_content=False))
            except ApiException as e:
                if e.status == 404:
                    return None
                raise

    @uses("batch", "jobs", "create")
    def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create, or return the existing Job of that name (a restart may race a create)."""
        name = manifest["metadata"]["name"]
        with _answers(f"create Job {namespace}/{name}"):
            try:
                return _raw(
                    self.batch.create_namespaced_job(namespace, manifest, _preload_content=False)
                )
            except ApiException as e:
                if e.status != 409:
                    raise
        existing = self.get_job(namespace, name)
        if existing is None:
            raise Transient(f"Job {namespace}/{name} conflicts but cannot be read yet")
        return existing

    @uses("batch", "jobs", "patch")
    def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """The patched Job. A 404 means it vanished since it was read (deleted by someone,
        or by its TTL): the pass is retried, and sees it gone."""
        action = f"patch Job {namespace}/{name}"
        with _answers(action):
            try:
                return _raw(
                    self.batch.patch_namespaced_job(name, namespace, patch, _preload_content=False)
                )
            except ApiException as e:
                if e.status == 404:
                    raise Transient(f"could not {action}: it was deleted since it was read") from e
                raise

    @uses(GROUP, PLURAL, "get")
    def get_threshold_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ThresholdJob as stored now (each pass reads it afresh), None when gone."""
        with _answers(f"read ThresholdJob {namespace}/{name}"):
            try:
                return _raw(
                    self.custom.get_namespaced_custom_object(
                        GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                    )
                )
            except ApiException as e:
                if e.status == 404:
                    return None
                raise

    @uses(GROUP, f"{PLURAL}/status", "patch")
    def patch_status(
        self, namespace: str, name: str, resource_version: str, status: dict[str, Any]
    ) -> None:
        """Replace the status (a merge patch whose nulls remove fields), only if the
        ThresholdJob is still at `resource_version`: a 409 means it changed since the pass
        read it, and the pass is done again on what it is now."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        with _answers(f"write the status of ThresholdJob {namespace}/{name}"):
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, body, _preload_content=False
            )

    @uses("", "events", "create")
    def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        """Post an Event; one of that name already there (a repeated post) is left as is."""
        with _answers(f"post Event {namespace}/{event['metadata']['name']}"):
            try:
                self.core.create_namespaced_event(namespace, event, _preload_content=False)
            except ApiException as e:
                if e.status != 409:
                    raise

    @uses("", "events", "list")
    def job_events(self, namespace: str, job: dict[str, Any], reason: str) -> list[dict[str, Any]]:
        """The Job controller's Events of this reason about the Job (e.g. FailedCreate),
        newest last."""
        uid = job["metadata"]["uid"]
        with _answers(f"list the Events of Job {namespace}/{job['metadata']['name']}"):
            items = _raw(
                self.core.list_namespaced_event(
                    namespace,
                    field_selector=f"involvedObject.uid={uid},reason={reason}",
                    _preload_content=False,
                )
            )
        return sorted(items.get("items", []), key=_event_time)

    @uses("", "pods", "list")
    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """Pods of a Job, oldest first."""
        with _answers(f"list the pods of Job {namespace}/{job}"):
            items = _raw(
                self.core.list_namespaced_pod(
                    namespace, label_selector=f"job-name={job}", _preload_content=False
                )
            )
        return sorted(
            items.get("items", []), key=lambda p: p["metadata"].get("creationTimestamp") or ""
        )


def _event_time(event: dict[str, Any]) -> str:
    return event.get("lastTimestamp") or event.get("eventTime") or ""


def terminations(pods: list[dict[str, Any]]) -> list[tuple[int | None, str]]:
    """(exit code, termination message) of the terminated ones of `pods` (oldest first, as
    `Kube.job_pods` lists them), newest first."""
    return [(code, message) for code, message in map(termination, reversed(pods)) if message]


def termination(pod: dict[str, Any]) -> tuple[int | None, str]:
    """(exit code, termination message) of a pod's worker container, if it terminated."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        term = state.get("terminated") or (status.get("lastState") or {}).get("terminated")
        if term:
            return term.get("exitCode"), (term.get("message") or "").strip()
    return None, ""
