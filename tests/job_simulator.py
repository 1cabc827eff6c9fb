"""A Job controller and kubelet for the operator tier: runs the real worker for each pod.

No kube-controller-manager can run here, so `JobSimulator` plays it. It runs each pod's
container command as a real `threshold-worker` process on real zarr data (volume mount paths
are host paths in these tests), creates the Pod and then writes its status through the status
subresource (as the kubelet does), and writes Job status through /status the way the Job
controller of Kubernetes 1.31-1.33 does: startTime first, completedIndexes and failedIndexes,
SuccessCriteriaMet before Complete (with completionTime), FailureTarget before Failed, with
the controller's reasons and messages, and Suspended (True, then False once resumed). It
honours parallelism, suspend, backoffLimitPerIndex, maxFailedIndexes and podFailurePolicy exit
codes, and acts as a cluster admin (its own kubeconfig identity), never as the operator.

Not emulated: pod scheduling, resource quotas, activeDeadlineSeconds, backoff delays between
pod retries, podReplacementPolicy (pods run to completion at once), pod conditions, the pod
tracking finalizer, uncountedTerminatedPods, ready and terminating counts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from threshold_worker.intervals import format_runs, parse_runs, runs

BIN = Path(sys.executable).parent
#: (reason, message) of the Job controller's terminal conditions (pkg/controller/job).
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
MAX_FAILED_INDEXES = (
    "MaxFailedIndexesExceeded",
    "Job has exceeded the specified maximal number of failed indexes",
)
FAILED_INDEXES = ("FailedIndexes", "Job has failed indexes")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def intervals(indexes: set[int]) -> str:
    """Kubernetes' interval string: {0,1,2,5} -> "0-2,5"."""
    return format_runs(runs(indexes))


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

    def _patch_status(self, job: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of /status; returns the stored Job (the next patch builds on it)."""
        answer = self.batch.patch_namespaced_job_status(
            job["metadata"]["name"], self.namespace, {"status": status}, _preload_content=False
        )
        return json.loads(answer.data)

    def _condition(
        self, job: dict[str, Any], kind: str, reason: str, message: str, status: str = "True"
    ) -> dict[str, Any]:
        """The Job's conditions with `kind` set (a merge patch replaces the whole list)."""
        conditions = [
            c for c in (job.get("status") or {}).get("conditions") or [] if c["type"] != kind
        ]
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastProbeTime": now(),
                "lastTransitionTime": now(),
            }
        )
        return {"conditions": conditions}

    def _finish(self, job: dict[str, Any], failed: bool, reason: str, message: str) -> None:
        """As the controller does since 1.31: SuccessCriteriaMet (or FailureTarget) first, then,
        once no pod is left, Complete with completionTime (or Failed), same reason and message."""
        first, last = ("FailureTarget", "Failed") if failed else ("SuccessCriteriaMet", "Complete")
        job = self._patch_status(job, {"active": 0, **self._condition(job, first, reason, message)})
        done = {} if failed else {"completionTime": now()}
        self._patch_status(job, {**done, **self._condition(job, last, reason, message)})

    def _suspended(self, job: dict[str, Any]) -> bool:
        """Suspended=True when spec.suspend is set, False (JobResumed) once it is cleared."""
        conditions = (job.get("status") or {}).get("conditions") or []
        shown = any(c["type"] == "Suspended" and c["status"] == "True" for c in conditions)
        if job["spec"].get("suspend") and not shown:
            self._patch_status(
                job,
                {"active": 0, **self._condition(job, "Suspended", "JobSuspended", "Job suspended")},
            )
        elif not job["spec"].get("suspend") and shown:
            self._patch_status(
                job, self._condition(job, "Suspended", "JobResumed", "Job resumed", "False")
            )
        return bool(job["spec"].get("suspend"))

    def _advance(self, job: dict[str, Any]) -> None:
        if self._finished(job) or self._suspended(job):
            return
        if job["spec"].get("completionMode") == "Indexed":
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
        template = job["spec"]["template"]
        labels = {
            **(template["metadata"].get("labels") or {}),
            "job-name": name,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": job["metadata"]["uid"],
            "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
        }
        annotations = dict(template["metadata"].get("annotations") or {})
        spec = dict(template["spec"])
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
            spec["hostname"] = f"{name}-{index}"
        created = self.core.create_namespaced_pod(
            self.namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": f"{name}-{'' if index is None else f'{index}-'}",
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": name,
                            "uid": job["metadata"]["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": spec,
            },
            _preload_content=False,
        )
        status = {
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
        }
        self.core.patch_namespaced_pod_status(
            json.loads(created.data)["metadata"]["name"],
            self.namespace,
            {"status": status},
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
        job = self._patch_status(
            job, {"active": 1, "startTime": job.get("status", {}).get("startTime") or now()}
        )
        code, _ = self._run_pod(job, None)
        if code == 0:
            job = self._patch_status(job, {"succeeded": 1})
            return self._finish(job, False, *COMPLETIONS_REACHED)
        failures += 1
        if self._policy_action(job, code) == "FailJob":
            reason, message = "PodFailurePolicy", f"Container worker exited with code {code}"
        elif failures > job["spec"].get("backoffLimit", 6):
            reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        else:
            self._patch_status(job, {"active": 0, "failed": failures})
            return None
        job = self._patch_status(job, {"failed": failures})
        return self._finish(job, True, reason, message)

    def _advance_indexed(self, job: dict[str, Any]) -> None:
        spec, status = job["spec"], job.get("status") or {}
        done = set(_expand(status.get("completedIndexes")))
        failed = set(_expand(status.get("failedIndexes")))
        todo = [i for i in range(spec["completions"]) if i not in done | failed]
        batch = todo[: max(0, spec.get("parallelism", 1))]
        pod_failures = status.get("failed") or 0
        if batch:
            job = self._patch_status(
                job, {"active": len(batch), "startTime": status.get("startTime") or now()}
            )
            with ThreadPoolExecutor(len(batch)) as pool:
                results = list(pool.map(lambda i: (i, self._run_pod(job, i)[0]), batch))
            limit = spec.get("backoffLimitPerIndex", 0)
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
        counts: dict[str, Any] = {
            "succeeded": len(done),
            "failed": pod_failures,
            "completedIndexes": intervals(done),
            "failedIndexes": intervals(failed) if "backoffLimitPerIndex" in spec else None,
        }
        max_failed = spec.get("maxFailedIndexes")
        if max_failed is not None and len(failed) > max_failed:
            job = self._patch_status(job, counts)
            self._finish(job, True, *MAX_FAILED_INDEXES)
        elif len(done | failed) < spec["completions"]:
            self._patch_status(job, {"active": 0, **counts})
        elif failed:
            self._finish(self._patch_status(job, counts), True, *FAILED_INDEXES)
        else:
            self._finish(self._patch_status(job, counts), False, *COMPLETIONS_REACHED)


def _expand(text: str | None) -> Iterator[int]:
    for first, last in parse_runs(text):
        yield from range(first, last + 1)
