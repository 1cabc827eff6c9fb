"""A Job controller, kubelet and TTL controller for the operator tier: runs the real worker
for each pod.

No kube-controller-manager can run here, so `JobSimulator` plays it. For each pod it first
creates the Pod (so kube-apiserver's validation of Pods, which is stricter than a Job's
template, applies: a refusal is the Job controller's Warning Event `FailedCreate`,
"Error creating: ...", posted once per Job and message, and the pod is not run), then runs its
container command as a real `threshold-worker` process on real zarr data (volume mount paths
are host paths in these tests) and writes the Pod's status through the status subresource, as
the kubelet does (with the container's startedAt and finishedAt, to the second). Like the
kubelet, it keeps the last 4096 bytes of the termination message
file, and with FallbackToLogsOnError, for a failed container with an empty file, the last 80
lines and 2048 bytes of its output. The environment is the container's `env` values over the
test process's, and for an Indexed Job JOB_COMPLETION_INDEX only when `env` does not set it
(indexed_job_utils.go addCompletionIndexEnvVariable: the user's value wins).

Job status goes through /status the way the Job controller of Kubernetes 1.31-1.33 writes it:
startTime first, active and ready, completedIndexes and failedIndexes, SuccessCriteriaMet
before Complete (with completionTime), FailureTarget before Failed, with the controller's
reasons and messages, and Suspended (True, then False once resumed). It honours parallelism,
suspend, backoffLimitPerIndex, maxFailedIndexes and podFailurePolicy exit codes. Images in
`unpullable` never start: their pods stay Pending, the container waiting in
ImagePullBackOff, counted active and not ready, until the Job is suspended. As the TTL
controller, it deletes a finished Job `ttlSecondsAfterFinished` after its completion (or
failure) time, with its pods. It acts as a cluster admin (its own kubeconfig identity), never
as the operator.

Not emulated: pod scheduling, resource quotas, activeDeadlineSeconds, backoff delays between
pod retries, podReplacementPolicy (pods run to completion at once), pod conditions, the pod
tracking finalizer, uncountedTerminatedPods, the terminating count, and the Event
recorder's aggregation (repeats of a FailedCreate are not posted again).
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
#: What the kubelet keeps (pkg/kubelet/container: MaxContainerTerminationMessageLength,
#: ...LogLength and ...LogLines).
TERMINATION_MESSAGE_BYTES = 4096
LOG_TAIL_BYTES = 2048
LOG_TAIL_LINES = 80
INDEX_ENV = "JOB_COMPLETION_INDEX"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def intervals(indexes: set[int]) -> str:
    """Kubernetes' interval string: {0,1,2,5} -> "0-2,5"."""
    return format_runs(runs(indexes))


class NoWorker:
    """Pods that do not run the worker: each runs `seconds`, then exits 0, so that hundreds of
    ThresholdJobs cost the machine little but the operator. A prepare pod still reports a real
    plan: its arguments are parsed by the worker's own `prepare` command and planned by the
    worker's planning (the input's metadata is read; no output is created or claimed), and its
    termination message is what `prepare --termination-log` writes; input the worker refuses
    ends the pod as the worker would (its exit code, "error: ..."). A work pod writes no
    blocks and no message. Any other command is refused (ValueError): nothing else is emulated.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, container: dict[str, Any]) -> tuple[int, str]:
        from threshold_worker import commands
        from threshold_worker.errors import WorkerError
        from threshold_worker.job import resolve_sweep

        command, *args = container["args"]
        if container["command"] != ["threshold-worker"] or command not in (
            "prepare",
            "start-worker",
        ):
            raise ValueError(f"NoWorker runs no {container['command']} {command}")
        time.sleep(self.seconds)
        if command == "start-worker":
            return 0, ""
        params = commands.prepare_command.make_context("prepare", list(args)).params
        params.pop("termination_log", None)
        try:
            report = commands.plan_report(resolve_sweep(commands.parameters(**params)))
        except WorkerError as e:
            return e.exit_code, f"error: {e}"
        return 0, commands.termination_report(report)[-TERMINATION_MESSAGE_BYTES:]


class JobSimulator:
    """Plays the Job controller and kubelet for Jobs in one namespace (see module doc).

    `fail_once`: indexes whose first pod exits 1 without running (a crashed node);
    `unpullable`: images whose pods never start (ImagePullBackOff);
    `held`: names of Jobs left alone for now, as if no node had room (a test removes a name
    to let its Job go on);
    `no_worker`: pods run for that many seconds and do not run the worker (`NoWorker`), for
    the operator's benchmark with hundreds of ThresholdJobs;
    `workers`: Jobs advanced at once in a round (1: one after another; a round waits for all).
    """

    def __init__(
        self,
        api: Any,
        namespace: str = "default",
        fail_once: set[int] | None = None,
        poll: float = 0.05,
        unpullable: set[str] | None = None,
        no_worker: float | None = None,
        workers: int = 1,
    ) -> None:
        from kubernetes import client

        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.fail_once = set(fail_once or ())
        self.poll = poll
        self.unpullable = set(unpullable or ())
        self.held: set[str] = set()
        self.no_worker = None if no_worker is None else NoWorker(no_worker)
        self.workers = workers
        self.pods_started: list[tuple[str, int | None]] = []
        self.deleted_by_ttl: list[str] = []
        self._attempts: dict[tuple[str, int], int] = {}
        self._waiting: dict[tuple[str, int | None], str] = {}  # (job uid, index) -> pod name
        self._told: set[tuple[str, str]] = set()  # FailedCreate Events posted: (uid, message)
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
                jobs = self._jobs()
                if self.workers > 1 and len(jobs) > 1:
                    with ThreadPoolExecutor(min(self.workers, len(jobs))) as pool:
                        list(pool.map(self._step, jobs))
                else:
                    for job in jobs:
                        self._step(job)
            except BaseException as e:  # surfaced by the tests
                self.errors.append(e)
                if len(self.errors) > 20:
                    return
            time.sleep(self.poll)

    def _step(self, job: dict[str, Any]) -> None:
        if not self._expired(job):
            self._advance(job)

    @staticmethod
    def _finished(job: dict[str, Any]) -> bool:
        return any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in (job.get("status") or {}).get("conditions") or []
        )

    def _patch_status(self, job: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of /status; returns the stored Job (the next patch builds on it).
        Nothing is written when nothing would change, as the controller does."""
        current = job.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return job
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

    def _expired(self, job: dict[str, Any]) -> bool:
        """The TTL controller: delete a finished Job once its ttlSecondsAfterFinished passed
        (pkg/controller/ttlafterfinished: from completionTime, or the finishing condition's
        lastTransitionTime), its pods with it."""
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None or not self._finished(job):
            return False
        status = job.get("status") or {}
        ends = [
            c["lastTransitionTime"]
            for c in status.get("conditions") or []
            if c["type"] in ("Complete", "Failed") and c["status"] == "True"
        ]
        finished = dt.datetime.fromisoformat(
            (status.get("completionTime") or ends[0]).replace("Z", "+00:00")
        )
        if dt.datetime.now(dt.UTC) < finished + dt.timedelta(seconds=ttl):
            return False
        name = job["metadata"]["name"]
        self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Foreground")
        self.deleted_by_ttl.append(name)
        return True

    def _suspended(self, job: dict[str, Any]) -> bool:
        """Suspended=True when spec.suspend is set, False (JobResumed) once it is cleared."""
        conditions = (job.get("status") or {}).get("conditions") or []
        shown = any(c["type"] == "Suspended" and c["status"] == "True" for c in conditions)
        if job["spec"].get("suspend") and not shown:
            for key in [k for k in self._waiting if k[0] == job["metadata"]["uid"]]:
                pod = self._waiting.pop(key)  # a suspended Job's pods are deleted
                self.core.delete_namespaced_pod(pod, self.namespace)
            self._patch_status(
                job,
                {
                    "active": 0,
                    "ready": 0,
                    **self._condition(job, "Suspended", "JobSuspended", "Job suspended"),
                },
            )
        elif not job["spec"].get("suspend") and shown:
            self._patch_status(
                job, self._condition(job, "Suspended", "JobResumed", "Job resumed", "False")
            )
        return bool(job["spec"].get("suspend"))

    def _advance(self, job: dict[str, Any]) -> None:
        if self._finished(job) or self._suspended(job) or job["metadata"]["name"] in self.held:
            return
        if job["spec"].get("completionMode") == "Indexed":
            self._advance_indexed(job)
        else:
            self._advance_single(job)

    def _run_pod(self, job: dict[str, Any], index: int | None) -> int | None:
        """Create the pod, run its container for real and record how it ended; returns the
        exit code, or None when it did not run (refused by the API server, or its image
        cannot be pulled)."""
        name, uid = job["metadata"]["name"], job["metadata"]["uid"]
        container = job["spec"]["template"]["spec"]["containers"][0]
        pod = self._create_pod(job, index)
        if pod is None:
            return None
        if container["image"] in self.unpullable:
            self._waiting[(uid, index)] = pod
            self._patch_pod(
                pod,
                container,
                {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{container["image"]}"',
                    }
                },
                "Pending",
            )
            return None
        self.pods_started.append((name, index))
        key = (name, -1 if index is None else index)
        self._attempts[key] = self._attempts.get(key, 0) + 1
        started = now()
        if index in self.fail_once and self._attempts[key] == 1:
            code, message = 1, "simulated node failure"
        elif self.no_worker is not None:
            code, message = self.no_worker.run(container)
        else:
            code, message = self._exec(container, index)
        terminated = {
            "exitCode": code,
            "message": message,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started,
            "finishedAt": now(),
        }
        self._patch_pod(
            pod, container, {"terminated": terminated}, "Succeeded" if code == 0 else "Failed"
        )
        return code

    def _create_pod(self, job: dict[str, Any], index: int | None) -> str | None:
        """The pod's name, or None when kube-apiserver refused it (then the Job controller's
        FailedCreate Event tells why)."""
        from kubernetes.client.rest import ApiException

        name = job["metadata"]["name"]
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
        try:
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
        except ApiException as e:
            if not 400 <= (e.status or 0) < 500:
                raise
            self._failed_create(job, json.loads(e.body or "{}").get("message") or str(e))
            return None
        return str(json.loads(created.data)["metadata"]["name"])

    def _failed_create(self, job: dict[str, Any], error: str) -> None:
        """The Job controller's Event for a pod the API server refused (once per message)."""
        meta, message = job["metadata"], f"Error creating: {error}"
        if (meta["uid"], message) in self._told:
            return
        self._told.add((meta["uid"], message))
        self.core.create_namespaced_event(
            self.namespace,
            {
                "metadata": {"generateName": f"{meta['name']}."},
                "involvedObject": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "namespace": self.namespace,
                    "uid": meta["uid"],
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "reason": "FailedCreate",
                "message": message,
                "type": "Warning",
                "source": {"component": "job-controller"},
                "firstTimestamp": now(),
                "lastTimestamp": now(),
                "count": 1,
            },
            _preload_content=False,
        )

    def _patch_pod(
        self, pod: str, container: dict[str, Any], state: dict[str, Any], phase: str
    ) -> None:
        status = {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": container["name"],
                    "ready": False,
                    "restartCount": 0,
                    "image": container["image"],
                    "imageID": "",
                    "state": state,
                }
            ],
        }
        self.core.patch_namespaced_pod_status(
            pod, self.namespace, {"status": status}, _preload_content=False
        )

    def _exec(self, container: dict[str, Any], index: int | None) -> tuple[int, str]:
        args = list(container["args"])
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "termination-log"
            if container.get("terminationMessagePath") in args:
                args[args.index(container["terminationMessagePath"])] = str(log)
            env = {k: v for k, v in os.environ.items() if k != INDEX_ENV}
            for var in container.get("env") or []:
                if "value" in var:
                    env[var["name"]] = var["value"]
            given = {var["name"] for var in container.get("env") or []}
            if index is not None and INDEX_ENV not in given:  # the user's value wins, as in kube
                env[INDEX_ENV] = str(index)
            proc = subprocess.run(
                [str(BIN / container["command"][0]), *args],
                capture_output=True,
                env=env,
                timeout=300,
            )
            data = log.read_bytes()[-TERMINATION_MESSAGE_BYTES:] if log.exists() else b""
            if not data and proc.returncode != 0:  # terminationMessagePolicy: FallbackToLogsOnError
                lines = (proc.stdout + proc.stderr).splitlines(keepends=True)[-LOG_TAIL_LINES:]
                data = b"".join(lines)[-LOG_TAIL_BYTES:]
        return proc.returncode, data.decode(errors="replace")

    @staticmethod
    def _policy_action(job: dict[str, Any], code: int) -> str | None:
        for rule in (job["spec"].get("podFailurePolicy") or {}).get("rules") or []:
            on = rule.get("onExitCodes")
            if on and on.get("operator") == "In" and code in on.get("values", []):
                return rule["action"]
        return None

    def _advance_single(self, job: dict[str, Any]) -> None:
        if (job["metadata"]["uid"], None) in self._waiting:
            return  # its pod cannot start
        failures = (job.get("status") or {}).get("failed") or 0
        job = self._patch_status(
            job,
            {"active": 1, "ready": 1, "startTime": job.get("status", {}).get("startTime") or now()},
        )
        code = self._run_pod(job, None)
        if code is None:  # not started: refused, or waiting for its image
            waiting = int((job["metadata"]["uid"], None) in self._waiting)
            self._patch_status(job, {"active": waiting, "ready": 0})
            return None
        if code == 0:
            job = self._patch_status(job, {"succeeded": 1, "ready": 0})
            return self._finish(job, False, *COMPLETIONS_REACHED)
        failures += 1
        if self._policy_action(job, code) == "FailJob":
            reason, message = "PodFailurePolicy", f"Container worker exited with code {code}"
        elif failures > job["spec"].get("backoffLimit", 6):
            reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        else:
            self._patch_status(job, {"active": 0, "ready": 0, "failed": failures})
            return None
        job = self._patch_status(job, {"failed": failures, "ready": 0})
        return self._finish(job, True, reason, message)

    def _advance_indexed(self, job: dict[str, Any]) -> None:
        spec, status = job["spec"], job.get("status") or {}
        uid = job["metadata"]["uid"]
        done = set(_expand(status.get("completedIndexes")))
        failed = set(_expand(status.get("failedIndexes")))
        waiting = {i for (u, i), _ in self._waiting.items() if u == uid}
        todo = [i for i in range(spec["completions"]) if i not in done | failed | waiting]
        batch = todo[: max(0, spec.get("parallelism", 1) - len(waiting))]
        pod_failures = status.get("failed") or 0
        if batch:
            job = self._patch_status(
                job,
                {
                    "active": len(batch) + len(waiting),
                    "ready": len(batch),
                    "startTime": status.get("startTime") or now(),
                },
            )
            with ThreadPoolExecutor(len(batch)) as pool:
                results = list(pool.map(lambda i: (i, self._run_pod(job, i)), batch))
            limit = spec.get("backoffLimitPerIndex", 0)
            for i, code in results:
                if code is None:
                    continue  # not started
                if code == 0:
                    done.add(i)
                    continue
                pod_failures += 1
                if (
                    self._policy_action(job, code) == "FailIndex"
                    or self._attempts[(job["metadata"]["name"], i)] > limit
                ):
                    failed.add(i)
        waiting = {i for (u, i), _ in self._waiting.items() if u == uid}
        counts: dict[str, Any] = {
            "succeeded": len(done),
            "failed": pod_failures,
            "ready": 0,
            "completedIndexes": intervals(done),
            "failedIndexes": intervals(failed) if "backoffLimitPerIndex" in spec else None,
        }
        max_failed = spec.get("maxFailedIndexes")
        if max_failed is not None and len(failed) > max_failed:
            job = self._patch_status(job, counts)
            self._finish(job, True, *MAX_FAILED_INDEXES)
        elif len(done | failed) < spec["completions"]:
            self._patch_status(job, {"active": len(waiting), **counts})
        elif failed:
            self._finish(self._patch_status(job, counts), True, *FAILED_INDEXES)
        else:
            self._finish(self._patch_status(job, counts), False, *COMPLETIONS_REACHED)


def _expand(text: str | None) -> Iterator[int]:
    for first, last in parse_runs(text):
        yield from range(first, last + 1)
