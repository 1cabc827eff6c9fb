"""The Job builder: a ThresholdJob's prepare Job and its Indexed work Job.

Pods meet the `restricted` Pod Security Standard, get no service-account token, always
request resources, and carry the compute context's scheduling. Sizes are constant in
the number of blocks: a work Job names a shard count, never a block list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from threshold_worker.store import LocalArrayStore

from .api import API_VERSION, KIND, ThresholdJobSpec
from .catalog import PREPARE_RESOURCES, ComputeContextSpec
from .names import ANNOTATION_NAME, LABEL_JOB, job_name, label_value

LABEL_COMPONENT = "app.kubernetes.io/component"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
CONTAINER = "worker"
TERMINATION_LOG = "/dev/termination-log"
SHARDS_PER_POD_SLOT = 4
#: Exit code of the worker for bad input: never retried.
BAD_INPUT_EXIT = 2


@dataclass(frozen=True)
class Settings:
    """Operator-wide settings (from the command line / Helm values)."""

    image: str = "threshold-operator:latest"
    image_pull_policy: str = "IfNotPresent"
    worker_service_account: str | None = None
    log_level: str = "INFO"


def resolved_io(spec: ThresholdJobSpec) -> tuple[tuple[str, str], tuple[str, str]]:
    """(container, dataset) of input and output; arrayStore goes through LocalArrayStore."""
    if spec.array_store is not None:
        a = spec.array_store
        store = LocalArrayStore(a.basedir)
        src = store.validation_prediction_array(a.run, a.iteration, a.dataset)
        dst = store.validation_output_array(a.run, a.iteration, a.parameters, a.dataset)
        return (_url(src.container), src.dataset), (_url(dst.container), dst.dataset)
    assert spec.input is not None and spec.output is not None
    return (spec.input.container, spec.input.dataset), (spec.output.container, spec.output.dataset)


def _url(container: Any) -> str:
    text = str(container)
    return text[len("file://") :] if text.startswith("file://") else text


def shard_count(spec: ThresholdJobSpec) -> int:
    return spec.shards or spec.parallelism * SHARDS_PER_POD_SLOT


def worker_args(spec: ThresholdJobSpec) -> list[str]:
    (ic, id_), (oc, od) = resolved_io(spec)
    args = ["-ic", ic, "-id", id_, "-oc", oc, "-od", od, "-th", repr(float(spec.threshold))]
    if spec.roi is not None:
        args += ["--roi-offset", ",".join(map(str, spec.roi.offset))]
        args += ["--roi-shape", ",".join(map(str, spec.roi.shape))]
    if spec.block_shape:
        args += ["--block-shape", ",".join(map(str, spec.block_shape))]
    args += ["--fit", spec.fit]
    return args


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


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
    context: ComputeContextSpec,
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
            else context.container_resources()
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
        **(context.prepare_pod_fields() if prepare else context.pod_fields()),
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
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
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
                    "values": [BAD_INPUT_EXIT],
                },
            },
        ]
    }


def prepare_job(
    body: dict[str, Any], spec: ThresholdJobSpec, context: ComputeContextSpec, settings: Settings
) -> dict[str, Any]:
    """One pod: validate, create or check the output, report the plan (termination message)."""
    name = body["metadata"]["name"]
    labels = _labels(name, "prepare", spec)
    annotations = {ANNOTATION_NAME: name}
    args = [
        "prepare",
        *worker_args(spec),
        "--shards",
        str(shard_count(spec)),
        "--termination-log",
        TERMINATION_LOG,
        *(["--overwrite"] if spec.overwrite else []),
    ]
    job_spec: dict[str, Any] = {
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": 3,
        "podFailurePolicy": _failure_policy("FailJob"),
        "podReplacementPolicy": "Failed",
        "template": pod_template(spec, context, settings, args, labels, annotations, prepare=True),
    }
    return _job(job_name(name, "prepare"), body, spec, labels, annotations, job_spec)


def work_job(
    body: dict[str, Any],
    spec: ThresholdJobSpec,
    context: ComputeContextSpec,
    settings: Settings,
    shards: int,
    fingerprint: str,
) -> dict[str, Any]:
    """An Indexed Job: pod i runs shard i (JOB_COMPLETION_INDEX), retried per index."""
    name = body["metadata"]["name"]
    labels = _labels(name, "work", spec)
    annotations = {ANNOTATION_NAME: name}
    args = [
        "start-worker",
        *worker_args(spec),
        "--shards",
        str(shards),
        "--expect-fingerprint",
        fingerprint,
    ]
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": shards,
        "parallelism": min(spec.parallelism, shards),
        "backoffLimitPerIndex": spec.retries.per_shard,
        "maxFailedIndexes": min(spec.retries.max_failed_shards, shards),
        "podFailurePolicy": _failure_policy("FailIndex"),
        "podReplacementPolicy": "Failed",
        # Kueue admits a queued Job by unsuspending it: create it suspended, then leave it be.
        "suspend": bool(spec.suspend or spec.queue_name),
        "template": pod_template(spec, context, settings, args, labels, annotations),
    }
    return _job(job_name(name, "work"), body, spec, labels, annotations, job_spec)
