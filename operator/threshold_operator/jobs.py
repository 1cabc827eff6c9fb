"""The Job builder: a ThresholdJob's prepare Job and its Indexed work Job.

Pods meet the `restricted` Pod Security Standard, get no service-account token, always
request resources, and carry the node pool's scheduling. Sizes are constant in the number
of blocks: a work Job names a partition count, never a block list.
"""

from __future__ import annotations

from typing import Any

from threshold_worker.params import MAX_PARTITIONS, JobParameters

from . import attempts
from .api import API_VERSION, KIND, Attempt, ThresholdJobSpec
from .catalog import PREPARE_RESOURCES, PoolSpec
from .names import ANNOTATION_NAME, LABEL_JOB, job_name, label_value, work_job_name
from .settings import Settings

__all__ = ["Settings", "job_parameters", "prepare_job", "work_job"]

LABEL_COMPONENT = "app.kubernetes.io/component"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
CONTAINER = "worker"
TERMINATION_LOG = "/dev/termination-log"
PARTITIONS_PER_POD_SLOT = 4
#: Exit code of the worker for bad input: never retried.
BAD_INPUT_EXIT = 2
#: Blocks that failed alone (damaged input) and are in the failure ledger; the rest of the
#: partition is done. A retry of the same input cannot fix them either.
FAILED_BLOCKS_EXIT = 3
#: Exit codes that fail an index at once (podFailurePolicy), without the retries.
NOT_RETRIED = (BAD_INPUT_EXIT, FAILED_BLOCKS_EXIT)


def partition_count(spec: ThresholdJobSpec) -> int:
    """Partitions (the work Job's completions): as given, or a few per pod that may run at
    once, so that a slow partition does not hold the job up."""
    return spec.partitions or min(spec.parallelism * PARTITIONS_PER_POD_SLOT, MAX_PARTITIONS)


def job_parameters(spec: ThresholdJobSpec, partitions: int) -> JobParameters:
    """What every pod is given as arguments: the job, with its partition count."""
    return spec.parameters().model_copy(update={"partitions": partitions})


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The owner reference that controls `obj` (empty if none): the one reference that says
    whose an object is, here and for Kubernetes' garbage collector."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), {})


def _labels(name: str, component: str, spec: ThresholdJobSpec) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "threshold-operator",
        "app.kubernetes.io/managed-by": "threshold-operator",
        LABEL_COMPONENT: component,
        LABEL_JOB: label_value(name),
    }
    if spec.queue_name:
        labels[QUEUE_LABEL] = spec.queue_name
    return labels


def pod_template(
    spec: ThresholdJobSpec,
    pool: PoolSpec,
    settings: Settings,
    args: list[str],
    labels: dict[str, str],
    annotations: dict[str, str],
    prepare: bool = False,
) -> dict[str, Any]:
    """The pod of a work Job, or with `prepare` of the prepare Job: that one only reads
    metadata, so it gets modest resources and never a GPU pool's scheduling."""
    env = [{"name": "THRESHOLD_LOG_LEVEL", "value": settings.log_level}]
    env += [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    for i, vol in enumerate(spec.volumes):
        volumes.append(
            {
                "name": f"data-{i}",
                "persistentVolumeClaim": {"claimName": vol.claim_name, "readOnly": vol.read_only},
            }
        )
        mounts.append({"name": f"data-{i}", "mountPath": vol.mount_path, "readOnly": vol.read_only})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["threshold-worker"],
        "args": args,
        "env": env,
        "resources": (
            {k: dict(v) for k, v in PREPARE_RESOURCES.items()}
            if prepare
            else pool.container_resources()
        ),
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.env_from:
        container["envFrom"] = [
            e.model_dump(by_alias=True, exclude_none=True) for e in spec.env_from
        ]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
        **(pool.prepare_pod_fields() if prepare else pool.pod_fields()),
    }
    if settings.worker_service_account:
        pod["serviceAccountName"] = settings.worker_service_account
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}


def _job(
    name: str,
    body: dict[str, Any],
    spec: ThresholdJobSpec,
    labels: dict[str, str],
    annotations: dict[str, str],
    job_spec: dict[str, Any],
) -> dict[str, Any]:
    """A Job owned by the ThresholdJob. It has no ttlSecondsAfterFinished yet: the operator
    sets that once the Job's result is in the ThresholdJob's status (`reconcile`), so that
    the TTL controller never deletes a Job whose plan or outcome nobody has read."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": body["metadata"]["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(body)],
        },
        "spec": job_spec,
    }


def _failure_policy(index_action: str) -> dict[str, Any]:
    return {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {
                "action": index_action,
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": list(NOT_RETRIED),
                },
            },
        ]
    }


def held(spec: ThresholdJobSpec) -> bool:
    """Whether a new Job starts suspended: while spec.suspend says so, and always with a
    Kueue queue (Kueue admits a queued Job by unsuspending it; the operator then leaves its
    `suspend` alone)."""
    return bool(spec.suspend or spec.queue_name)


def prepare_job(
    body: dict[str, Any], spec: ThresholdJobSpec, pool: PoolSpec, settings: Settings
) -> dict[str, Any]:
    """One pod: validate, create or check the output, report the plan (termination message).
    Nothing runs while the ThresholdJob is suspended, this pod included: with `overwrite` it
    would replace another job's output."""
    name = body["metadata"]["name"]
    labels = _labels(name, "prepare", spec)
    annotations = {ANNOTATION_NAME: name}
    args = [
        "prepare",
        *job_parameters(spec, partition_count(spec)).to_args(),
        "--termination-log",
        TERMINATION_LOG,
    ]
    job_spec: dict[str, Any] = {
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": 3,
        "podFailurePolicy": _failure_policy("FailJob"),
        "podReplacementPolicy": "Failed",
        "suspend": held(spec),
        "template": pod_template(spec, pool, settings, args, labels, annotations, prepare=True),
    }
    return _job(job_name(name, "prepare"), body, spec, labels, annotations, job_spec)


def work_job(
    body: dict[str, Any],
    spec: ThresholdJobSpec,
    pool: PoolSpec,
    settings: Settings,
    partitions: int,
    fingerprint: str,
    attempt: Attempt | None = None,
) -> dict[str, Any]:
    """An Indexed Job: pod i runs partition i (JOB_COMPLETION_INDEX), retried per index.
    A retry's Job (attempt 2 on) runs only the attempt's partitions: pod i runs the i-th
    of them (--partition-list). Only the prepare step replaces an output (--overwrite):
    the partitions never do."""
    attempt = attempt or Attempt()
    name = body["metadata"]["name"]
    labels = _labels(name, "work", spec)
    annotations = {ANNOTATION_NAME: name}
    params = job_parameters(spec, partitions).model_copy(update={"overwrite": False})
    args = ["start-worker", *params.to_args(), "--expect-fingerprint", fingerprint]
    args += ["--termination-log", TERMINATION_LOG]  # the failed regions, when blocks fail
    if spec.verify is not None:
        args.append("--verify")
        if spec.verify.sample is not None:
            args += ["--verify-sample", str(spec.verify.sample)]
    if attempt.partitions:
        args += ["--partition-list", attempt.partitions]
    completions = attempts.size(attempt, partitions)
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": completions,
        "parallelism": min(spec.parallelism, completions),
        "backoffLimitPerIndex": spec.retries.per_partition,
        "maxFailedIndexes": min(spec.retries.max_failed_partitions, completions),
        "podFailurePolicy": _failure_policy("FailIndex"),
        "podReplacementPolicy": "Failed",
        "suspend": held(spec),
        "template": pod_template(spec, pool, settings, args, labels, annotations),
    }
    job = work_job_name(name, attempt.number)
    return _job(job, body, spec, labels, annotations, job_spec)
