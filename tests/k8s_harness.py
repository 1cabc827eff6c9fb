"""An emulated Kubernetes API for the operator tier, and a Job controller that runs the
real worker.

The API server: kmock's KubernetesEmulator (in-memory, over real HTTP), with what the
kopf runtime and the kubernetes client need that it lacks: uid, resourceVersion,
generation, creationTimestamp and generateName on create, with 201 Created; resourceVersion and
generation bumps on patch; kind/apiVersion in lists; label selectors on lists. It has no
schema validation, defaulting or garbage collection, so tests check owner references
instead of cascading deletion.

The Job controller: no kube-controller-manager can run here, so `JobSimulator` plays it.
It runs each pod's container command as a real `threshold-worker` process on real zarr
data (volume mount paths are host paths in these tests), writes Pod objects with
termination messages, and Job status (completedIndexes, failedIndexes, conditions) the
way Kubernetes does, honouring parallelism, suspend, backoffLimitPerIndex,
maxFailedIndexes and podFailurePolicy exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kmock
from kmock._internal import enums, rendering

BIN = Path(sys.executable).parent
RESOURCES = {
    "blockwise.dev/v1alpha1/thresholdjobs": kmock.ResourceInfo(
        kind="ThresholdJob",
        namespaced=True,
        singular="thresholdjob",
        shortnames={"tj"},
        categories={"blockwise"},
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
    ),
    "batch/v1/jobs": kmock.ResourceInfo(
        kind="Job",
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "delete"},
    ),
    "v1/pods": kmock.ResourceInfo(
        kind="Pod", namespaced=True, verbs={"get", "list", "watch", "create", "patch"}
    ),
    "v1/events": kmock.ResourceInfo(kind="Event", namespaced=True, verbs={"create", "list", "get"}),
    "v1/namespaces": kmock.ResourceInfo(
        kind="Namespace", namespaced=False, verbs={"get", "list", "watch"}
    ),
}


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Emulator(kmock.KubernetesEmulator):
    _counter = itertools.count(1)

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.action == enums.action.CREATE:
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                if request.namespace:
                    meta.setdefault("namespace", request.namespace)
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = now()
                meta["generation"] = 1
                meta["resourceVersion"] = str(next(self._counter))
            elif request.action == enums.action.UPDATE and request.name is not None:
                meta["resourceVersion"] = str(next(self._counter))
                key = (request.resource, request.namespace, request.name)
                if "spec" in request.data and request.subresource is None and key in self.objects:
                    current = self.objects[key]
                    if not current.deleted:
                        meta["generation"] = (
                            int(current.get("metadata", {}).get("generation", 1)) + 1
                        )
        return await super()._handle(request)

    async def _serve_create(self, request: Any) -> Any:
        # Real API servers answer POST with 201 Created; the client reads a body only then.
        return rendering.Response(status=201, payload=await super()._serve_create(request))

    async def _serve_list(self, request: Any) -> Any:
        result = await super()._serve_list(request)
        info = self.resources[request.resource]
        version = request.resource.version
        group = request.resource.group
        result["kind"] = f"{info.kind}List"
        result["apiVersion"] = f"{group}/{version}" if group else version
        selector = request.params.get("labelSelector")
        if selector:
            wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
            result["items"] = [
                item
                for item in result["items"]
                if all(
                    (item.get("metadata", {}).get("labels") or {}).get(k) == v
                    for k, v in wanted.items()
                )
            ]
        return result


class EmulatedCluster:
    """The emulator on a real port, in its own thread and event loop."""

    def __init__(self) -> None:
        self.emulator: Emulator | None = None
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kmock")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with Emulator(strict=False) as emulator, kmock.Server(emulator) as server:
            for key, info in RESOURCES.items():
                emulator.resources[key] = info
            emulator.objects["v1/namespaces", None, "default"] = {"metadata": {"name": "default"}}
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> EmulatedCluster:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the emulated API server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emu",
                    "clusters": [{"name": "emu", "cluster": {"server": self.url}}],
                    "users": [{"name": "emu", "user": {"token": "test"}}],
                    "contexts": [
                        {
                            "name": "emu",
                            "context": {"cluster": "emu", "user": "emu", "namespace": "default"},
                        }
                    ],
                }
            )
        )
        return path


def intervals(indexes: set[int]) -> str:
    """Kubernetes' interval string: {0,1,2,5} -> "0-2,5"."""
    parts = []
    for _, group in itertools.groupby(enumerate(sorted(indexes)), lambda p: p[1] - p[0]):
        run = [i for _, i in group]
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


class JobSimulator:
    """Plays the Job controller and kubelet for Jobs in one namespace (see module doc).

    `fail_once`: indexes whose first pod exits 1 without running (a crashed node);
    `hooks`: called with (job name, index) before each pod starts.
    """

    def __init__(
        self,
        api: Any,
        namespace: str = "default",
        fail_once: set[int] | None = None,
        poll: float = 0.05,
    ) -> None:
        from kubernetes import client

        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.fail_once = set(fail_once or ())
        self.poll = poll
        self.pods_started: list[tuple[str, int | None]] = []
        self._attempts: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="job-simulator")
        self.errors: list[BaseException] = []

    def __enter__(self) -> JobSimulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _jobs(self) -> list[dict[str, Any]]:
        resp = self.batch.list_namespaced_job(self.namespace, _preload_content=False)
        return json.loads(resp.data)["items"]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for job in self._jobs():
                    self._advance(job)
            except BaseException as e:  # surfaced by the tests
                self.errors.append(e)
                if len(self.errors) > 20:
                    return
            time.sleep(self.poll)

    @staticmethod
    def _finished(job: dict[str, Any]) -> bool:
        return any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in (job.get("status") or {}).get("conditions") or []
        )

    def _patch_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        self.batch.patch_namespaced_job_status(
            job["metadata"]["name"], self.namespace, {"status": status}, _preload_content=False
        )

    def _advance(self, job: dict[str, Any]) -> None:
        if self._finished(job):
            return
        spec = job["spec"]
        if spec.get("suspend"):
            self._patch_status(
                job,
                {
                    "active": 0,
                    "conditions": [
                        {
                            "type": "Suspended",
                            "status": "True",
                            "reason": "JobSuspended",
                            "lastTransitionTime": now(),
                        }
                    ],
                },
            )
            return
        if spec.get("completionMode") == "Indexed":
            self._advance_indexed(job)
        else:
            self._advance_single(job)

    def _run_pod(self, job: dict[str, Any], index: int | None) -> tuple[int, str]:
        """Run the pod's container for real; returns (exit code, termination message)."""
        name = job["metadata"]["name"]
        self.pods_started.append((name, index))
        key = (name, -1 if index is None else index)
        self._attempts[key] = self._attempts.get(key, 0) + 1
        container = job["spec"]["template"]["spec"]["containers"][0]
        if index in self.fail_once and self._attempts[key] == 1:
            code, message = 1, "simulated node failure"
        else:
            code, message = self._exec(container, index, job["spec"].get("completions"))
        pod_name = f"{name}-{'' if index is None else f'{index}-'}{uuid.uuid4().hex[:5]}"
        labels = {"job-name": name, **(job["spec"]["template"]["metadata"].get("labels") or {})}
        annotations = {}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
        self.core.create_namespaced_pod(
            self.namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": name,
                            "uid": job["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": job["spec"]["template"]["spec"],
                "status": {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "ready": False,
                            "restartCount": 0,
                            "image": container["image"],
                            "imageID": "",
                            "state": {
                                "terminated": {
                                    "exitCode": code,
                                    "message": message,
                                    "reason": "Completed" if code == 0 else "Error",
                                }
                            },
                        }
                    ],
                },
            },
            _preload_content=False,
        )
        return code, message

    def _exec(
        self, container: dict[str, Any], index: int | None, completions: int | None
    ) -> tuple[int, str]:
        args = list(container["args"])
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "termination-log"
            if container.get("terminationMessagePath") in args:
                args[args.index(container["terminationMessagePath"])] = str(log)
            env = {**os.environ}
            for var in container.get("env") or []:
                if "value" in var:
                    env[var["name"]] = var["value"]
            if index is not None:
                env["JOB_COMPLETION_INDEX"] = str(index)
            proc = subprocess.run(
                [str(BIN / container["command"][0]), *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
            )
            message = log.read_text() if log.exists() else ""
            if (
                not message and proc.returncode != 0
            ):  # terminationMessagePolicy: FallbackToLogsOnError
                message = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return proc.returncode, message

    @staticmethod
    def _policy_action(job: dict[str, Any], code: int) -> str | None:
        for rule in (job["spec"].get("podFailurePolicy") or {}).get("rules") or []:
            on = rule.get("onExitCodes")
            if on and on.get("operator") == "In" and code in on.get("values", []):
                return rule["action"]
        return None

    def _advance_single(self, job: dict[str, Any]) -> None:
        failures = (job.get("status") or {}).get("failed") or 0
        self._patch_status(
            job, {"active": 1, "startTime": job.get("status", {}).get("startTime") or now()}
        )
        code, _ = self._run_pod(job, None)
        if code == 0:
            self._patch_status(
                job,
                {
                    "active": 0,
                    "succeeded": 1,
                    "completionTime": now(),
                    "conditions": [
                        {
                            "type": "Complete",
                            "status": "True",
                            "reason": "Completed",
                            "lastTransitionTime": now(),
                        }
                    ],
                },
            )
            return
        failures += 1
        if self._policy_action(job, code) == "FailJob":
            reason, message = "PodFailurePolicy", f"Container worker exited with code {code}"
        elif failures > job["spec"].get("backoffLimit", 6):
            reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        else:
            self._patch_status(job, {"active": 0, "failed": failures})
            return
        self._patch_status(
            job,
            {
                "active": 0,
                "failed": failures,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": reason,
                        "message": message,
                        "lastTransitionTime": now(),
                    }
                ],
            },
        )

    def _advance_indexed(self, job: dict[str, Any]) -> None:
        spec, status = job["spec"], job.get("status") or {}
        done = set(_expand(status.get("completedIndexes")))
        failed = set(_expand(status.get("failedIndexes")))
        todo = [i for i in range(spec["completions"]) if i not in done | failed]
        batch = todo[: max(0, spec.get("parallelism", 1))]
        if batch:
            self._patch_status(
                job, {"active": len(batch), "startTime": status.get("startTime") or now()}
            )
            with ThreadPoolExecutor(len(batch)) as pool:
                results = list(pool.map(lambda i: (i, self._run_pod(job, i)[0]), batch))
            limit = spec.get("backoffLimitPerIndex", 0)
            pod_failures = status.get("failed") or 0
            for i, code in results:
                if code == 0:
                    done.add(i)
                    continue
                pod_failures += 1
                if (
                    self._policy_action(job, code) == "FailIndex"
                    or self._attempts[(job["metadata"]["name"], i)] > limit
                ):
                    failed.add(i)
        else:
            pod_failures = status.get("failed") or 0
        new: dict[str, Any] = {
            "active": 0,
            "succeeded": len(done),
            "failed": pod_failures,
            "completedIndexes": intervals(done),
            "failedIndexes": intervals(failed) or None,
        }
        max_failed = spec.get("maxFailedIndexes")
        if max_failed is not None and len(failed) > max_failed:
            new["conditions"] = [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "MaxFailedIndexesExceeded",
                    "message": "Job has exceeded the specified maximal number of failed indexes",
                    "lastTransitionTime": now(),
                }
            ]
        elif len(done | failed) == spec["completions"]:
            if failed:
                new["conditions"] = [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "FailedIndexes",
                        "message": "Job has failed indexes",
                        "lastTransitionTime": now(),
                    }
                ]
            else:
                new["conditions"] = [
                    {
                        "type": "Complete",
                        "status": "True",
                        "reason": "Completed",
                        "lastTransitionTime": now(),
                    }
                ]
                new["completionTime"] = now()
        self._patch_status(job, new)


def _expand(text: str | None) -> Iterator[int]:
    for part in (text or "").split(","):
        if part:
            lo, _, hi = part.partition("-")
            yield from range(int(lo), int(hi or lo) + 1)


@contextlib.contextmanager
def operator_env(kubeconfig: Path, **env: str) -> Iterator[None]:
    """KUBECONFIG and operator settings for kopf and the kubernetes client."""
    from kubernetes.config import kube_config

    values = {"KUBECONFIG": str(kubeconfig), **env}
    old = {k: os.environ.get(k) for k in values}
    old_default = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    os.environ.update(values)
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(kubeconfig)
    try:
        yield
    finally:
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = old_default
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def create_threshold_job(
    api: Any, name: str, spec: dict[str, Any], namespace: str = "default"
) -> dict[str, Any]:
    """POST a ThresholdJob through the kubernetes client, as kubectl apply would."""
    from kubernetes import client

    from threshold_operator.api import API_VERSION, GROUP, KIND, PLURAL, VERSION

    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
