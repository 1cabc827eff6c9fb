"""The ThresholdJob API: one pydantic model, from which the CRD is generated.

The job itself is `threshold_worker.params.JobParameters`, the model behind the worker's
CLI and seed API: `ThresholdJobSpec` is that model plus what running it on a cluster takes
(parallelism, a node pool, volumes, credentials, retries, Kueue). Field names are camelCase
on the wire (aliases), snake_case in Python, the same names as the CLI's options.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from threshold_worker.environment import PARTITION_INDEX, SETTINGS_PREFIX, reserved
from threshold_worker.params import (
    MAX_PARTITIONS,
    MAX_THRESHOLDS,
    ONE_THRESHOLD_FIELD,
    PLACEHOLDER,
    ROI_AXES,
    JobParameters,
)
from threshold_worker.store import LocalArrayStore

GROUP = "blockwise.dev"
VERSION = "v1alpha1"
KIND = "ThresholdJob"
PLURAL = "thresholdjobs"
SINGULAR = "thresholdjob"
SHORT_NAMES = ["tj"]
CATEGORIES = ["blockwise"]
API_VERSION = f"{GROUP}/{VERSION}"


# What kube-apiserver validates in the objects the spec ends up in (labels, pod volumes, env),
# as patterns every engine reads alike (RE2 in kube, Rust regex in pydantic, ECMA for clients).
#: A label value, here non-empty (k8s.io/apimachinery IsValidLabelValue).
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
#: A DNS-1123 label: node pool names.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: A DNS-1123 subdomain: PersistentVolumeClaim and Secret names.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: An environment variable name as every Kubernetes of 1.29-1.33 accepts it: the C-identifier-like
#: rule [-._a-zA-Z][-._a-zA-Z0-9]* without its refused '.', '..' and '..'-prefixed names.
ENV_NAME = r"^([-_a-zA-Z]|\.[-_a-zA-Z0-9])[-._a-zA-Z0-9]*$"
#: A Secret key (IsConfigMapKey), with the same '.'/'..' refusals.
SECRET_KEY = r"^([-_a-zA-Z0-9]|\.[-_a-zA-Z0-9])[-._a-zA-Z0-9]*$"
#: One folder name: a DaCapo run's folder in basedir, never a way out of it.
FOLDER_NAME_RULE = {
    "rule": "!self.contains('/') && self != '.' && self != '..'",
    "message": "must be one folder name: no '/', and not '.' or '..'",
}
#: An absolute path without empty segments or a trailing slash (mount paths compare as strings).
ABSOLUTE_PATH = r"^(/[^/]+)+$"
#: Unicode's White_Space characters: Go's unicode.IsSpace, which kube's strings.TrimSpace uses.
WHITE_SPACE = (
    "\t\n\v\f\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: An image reference has no whitespace: kube-apiserver refuses a Pod whose image has it at
#: either end (ValidatePodCreate, with Go's TrimSpace: any Unicode space), a registry the rest.
#: The characters are literal in the class, so RE2, Rust's regex and ECMA read it alike.
IMAGE = "^[^" + WHITE_SPACE + "]+$"
#: Where arrays live, as the pods see it: an absolute path (in a mounted volume) or a URL.
LOCATION = r"^(/|[a-zA-Z][a-zA-Z0-9+.-]*://)"
#: A file URL names this machine: no host, or localhost (threshold_worker.paths.as_upath).
FILE_URL_RULE = {
    "rule": "!self.matches('^(file|local):') || self.matches('^(file|local)://(localhost)?/')",
    "message": "a file URL names no host: file:///path (or a plain absolute path)",
}
LOCATION_MESSAGE = (
    "must be an absolute path (in a mounted volume) or a URL such as s3://bucket/path: the "
    "pods have no working directory of yours"
)
#: Bounds of free text, so that the largest spec the CRD admits stays far below the 256 KiB
#: that annotations may hold (kubectl apply keeps the whole object in one), tested.
CONTAINER_CHARS = 2048
DATASET_CHARS = 1024
#: A file name: DaCapo's run, dataset and parameters names are path components.
FILE_NAME_CHARS = 255
IMAGE_CHARS = 1024
ENV_NAME_CHARS = 253
ENV_VALUE_CHARS = 1024
#: Mount paths the worker's pod already uses (jobs.pod_template's scratch emptyDir).
RESERVED_MOUNT_PATHS = ("/tmp",)
INT32_MAX = 2**31 - 1

PositiveInt = Annotated[int, Field(ge=1)]


def cel_rules(*rules: dict[str, str]) -> ConfigDict:
    """A model's x-kubernetes-validations, next to the pydantic validator that says the same."""
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": list(rules)})


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def location(value: str | None) -> str | None:
    """The model's side of LOCATION and FILE_URL_RULE, with a message that says why."""
    if value is None:
        return value
    if not re.match(LOCATION, value):
        raise ValueError(LOCATION_MESSAGE)
    if re.match(r"(file|local):", value) and not re.match(r"(file|local)://(localhost)?/", value):
        raise ValueError(FILE_URL_RULE["message"])
    return value


def location_field(description: str, **extra: Any) -> Any:
    """A container or base directory: where the pods find arrays (`location` checks it)."""
    return Field(
        min_length=1,
        max_length=CONTAINER_CHARS,
        description=description,
        json_schema_extra={"pattern": LOCATION, "x-kubernetes-validations": [FILE_URL_RULE]},
        **extra,
    )


#: DaCapo's name of a threshold's output (its validation writes "threshold_0.3", ...).
DACAPO_PARAMETERS = f"threshold_{PLACEHOLDER}"


class ArrayStoreRef(Model):
    """DaCapo's LocalArrayStore: input is the validation prediction, output the validation output."""

    basedir: str = location_field("The array store's base directory: absolute path or URL")
    run: str = Field(
        min_length=1,
        max_length=FILE_NAME_CHARS,
        description="DaCapo run name: the folder of the run in basedir",
        json_schema_extra={"x-kubernetes-validations": [FOLDER_NAME_RULE]},
    )
    iteration: int = Field(ge=0, description="Training iteration of the prediction")
    dataset: str = Field(
        min_length=1, max_length=FILE_NAME_CHARS, description="Validation dataset name"
    )
    parameters: str = Field(
        default=DACAPO_PARAMETERS,
        min_length=1,
        max_length=FILE_NAME_CHARS,
        description="Post-processing parameters name, the output's directory; {threshold} "
        f"stands for each threshold, as DaCapo names them (default {DACAPO_PARAMETERS}: "
        "threshold_0.5)",
    )

    _basedir = field_validator("basedir")(location)

    @field_validator("run")
    @classmethod
    def _one_folder(cls, run: str) -> str:
        """The model's side of FOLDER_NAME_RULE."""
        if "/" in run or run in (".", ".."):
            raise ValueError(FOLDER_NAME_RULE["message"])
        return run


class VolumeSpec(Model):
    """A PersistentVolumeClaim mounted into every pod."""

    model_config = cel_rules(
        {
            "rule": " && ".join(f"self.mountPath != '{p}'" for p in RESERVED_MOUNT_PATHS),
            "fieldPath": ".mountPath",
            "message": "is used by the worker itself; mount the volume elsewhere",
        }
    )

    claim_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="PersistentVolumeClaim name",
    )
    mount_path: str = Field(
        min_length=1,
        max_length=4096,
        pattern=ABSOLUTE_PATH,
        description="Absolute path in the container, unique among the volumes",
    )
    read_only: bool = Field(
        default=False, description="Mount read-only (e.g. an input-only volume)"
    )

    @field_validator("mount_path")
    @classmethod
    def _not_reserved(cls, path: str) -> str:
        if path in RESERVED_MOUNT_PATHS:
            raise ValueError(f"{path} is used by the worker itself; mount the volume elsewhere")
        return path


class SecretKeyRef(Model):
    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(min_length=1, max_length=253, pattern=SECRET_KEY)


class EnvValueFrom(Model):
    secret_key_ref: SecretKeyRef


RESERVED_ENV = (
    f"is reserved: Kubernetes sets {PARTITION_INDEX} to each pod's partition, and "
    f"{SETTINGS_PREFIX}* variables are the worker's settings, which the operator sets"
)


class EnvVar(Model):
    """An environment variable, e.g. AWS_ACCESS_KEY_ID from a Secret."""

    model_config = cel_rules(
        {
            "rule": "!has(self.valueFrom) || !has(self.value) || self.value == ''",
            "fieldPath": ".valueFrom",
            "message": "may not be specified when `value` is not empty",
        },
        {
            "rule": f"self.name != '{PARTITION_INDEX}' && !self.name.startsWith('{SETTINGS_PREFIX}')",
            "fieldPath": ".name",
            "message": RESERVED_ENV,
        },
    )

    name: str = Field(min_length=1, max_length=ENV_NAME_CHARS, pattern=ENV_NAME)
    value: str | None = Field(default=None, max_length=ENV_VALUE_CHARS)
    value_from: EnvValueFrom | None = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if reserved(name):
            raise ValueError(f"{name} {RESERVED_ENV}")
        return name

    @model_validator(mode="after")
    def _one_value(self) -> EnvVar:
        if self.value and self.value_from is not None:
            raise ValueError("valueFrom may not be specified when `value` is not empty")
        return self


class SecretRef(Model):
    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)


class EnvFrom(Model):
    """All keys of a Secret as environment variables (object-store credentials)."""

    secret_ref: SecretRef


class Retries(Model):
    per_partition: int = Field(
        default=3, ge=0, le=100, description="Pod retries per partition (backoffLimitPerIndex)"
    )
    max_failed_partitions: int = Field(
        default=0,
        ge=0,
        le=MAX_PARTITIONS,
        description="Partitions that may fail before the job fails (maxFailedIndexes)",
    )


class VerifySpec(Model):
    """A verifying pass in each work pod once its partition is written: the blocks (and
    their pyramid levels) are recomputed from the input and compared; a wrong block loses
    its done-marker and the pod fails (exit 1), so that the pod's retry rewrites it."""

    sample: int | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="Check this many blocks of each partition, drawn afresh by each pod "
        "attempt; default: every block",
    )


#: JobParameters fields a ThresholdJob may leave out: arrayStore can name the arrays.
ARRAY_FIELDS = ("input_container", "input_dataset", "output_container", "output_dataset")


def _optional(name: str) -> Any:
    """A JobParameters field, optional here (arrayStore is the other way to name arrays)."""
    description = f"{JobParameters.model_fields[name].description} (or arrayStore)"
    if name.endswith("_container"):
        return location_field(description, default=None)
    return Field(default=None, min_length=1, max_length=DATASET_CHARS, description=description)


class ThresholdJobSpec(JobParameters):
    """What to threshold (the worker's JobParameters), and how to run it on the cluster."""

    model_config = cel_rules(
        {
            "rule": "!has(self.roiOffset) || !has(self.roiShape) || "
            "size(self.roiOffset) == size(self.roiShape)",
            "message": ROI_AXES,
        },
        {"rule": "!has(self.threshold) || !has(self.thresholds)", "message": ONE_THRESHOLD_FIELD},
        {
            "rule": "!has(self.thresholds) || size(self.thresholds) < 2 || "
            f"!has(self.outputDataset) || self.outputDataset.contains('{PLACEHOLDER}')",
            "fieldPath": ".outputDataset",
            "message": f"must name each threshold's output with {PLACEHOLDER}, e.g. "
            f"{DACAPO_PARAMETERS}",
        },
        {
            "rule": "!has(self.thresholds) || size(self.thresholds) < 2 || "
            f"!has(self.arrayStore) || self.arrayStore.parameters.contains('{PLACEHOLDER}')",
            "fieldPath": ".arrayStore.parameters",
            "message": f"must name each threshold's output with {PLACEHOLDER}, e.g. "
            f"{DACAPO_PARAMETERS} (or leave it out)",
        },
    )

    # No default in the CRD: a defaulted threshold could not be told from one a user gave
    # beside thresholds. Left out, it is JobParameters' 0.0.
    threshold: float | None = Field(  # type: ignore[assignment]
        default=None,
        allow_inf_nan=False,
        description="Voxels strictly greater become 1 (NaN: 0); default 0, or give thresholds",
    )
    # A set to kube-apiserver: a threshold given twice (0.5 and 0.5, or 0.1 and
    # 0.1000000000000000055, one float64) is refused at admission as a "Duplicate value".
    thresholds: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(  # type: ignore[assignment]
        default=None,
        min_length=1,
        max_length=MAX_THRESHOLDS,
        description=JobParameters.model_fields["thresholds"].description,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    input_container: str | None = _optional("input_container")  # type: ignore[assignment]
    input_dataset: str | None = _optional("input_dataset")  # type: ignore[assignment]
    output_container: str | None = _optional("output_container")  # type: ignore[assignment]
    output_dataset: str | None = _optional("output_dataset")  # type: ignore[assignment]
    array_store: ArrayStoreRef | None = Field(
        default=None, description="Input and output from a DaCapo array store"
    )
    parallelism: int = Field(
        default=4, ge=1, le=10000, description="Pods running at once; may change"
    )
    pool: str = Field(
        default="cpu",
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Node pool: a name in the cluster's catalog",
    )
    volumes: list[VolumeSpec] = Field(
        default_factory=list,
        max_length=16,
        # How Kubernetes APIs say "unique by mountPath" (as a pod's volumeMounts must be).
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["mountPath"],
        },
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    env_from: list[EnvFrom] = Field(default_factory=list, max_length=16)
    retries: Retries = Field(
        default_factory=Retries,
        # An absent retries gets {}, then its fields' defaults (kube defaults only inside objects).
        json_schema_extra={"default": {}},
    )
    verify: VerifySpec | None = Field(
        default=None,
        description="Recompute and compare each partition's blocks after writing them "
        "(verify: {} for all, or {sample: N})",
    )
    suspend: bool = Field(
        default=False, description="Pause: running pods stop, done blocks stay done"
    )
    queue_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE,
        description="Kueue LocalQueue (the label value kueue.x-k8s.io/queue-name)",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        le=INT32_MAX,
        description="Delete the finished Jobs (not the ThresholdJob) this long after they "
        "finished, once their result is in the status",
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=IMAGE_CHARS,
        pattern=IMAGE,
        description="Worker image; default the operator's",
    )
    retry: int | None = Field(
        default=None,
        ge=0,
        le=INT32_MAX,
        description="Bump to retry a Failed ThresholdJob in place: a new work Job runs only "
        "the partitions that did not complete (done blocks are skipped); may only grow",
    )

    _containers = field_validator("input_container", "output_container")(location)

    @field_validator("volumes")
    @classmethod
    def _unique_mount_paths(cls, volumes: list[VolumeSpec]) -> list[VolumeSpec]:
        seen: set[str] = set()
        for volume in volumes:
            if volume.mount_path in seen:
                raise ValueError(f"mountPath {volume.mount_path} is given twice")
            seen.add(volume.mount_path)
        return volumes

    @model_validator(mode="after")
    def _one_source(self) -> ThresholdJobSpec:
        given = [getattr(self, name) is not None for name in ARRAY_FIELDS]
        if self.array_store is not None and any(given):
            raise ValueError(ONE_SOURCE_RULES[0]["message"])
        if self.array_store is None and not all(given):
            raise ValueError(ONE_SOURCE_RULES[1]["message"])
        return self

    def parameters(self) -> JobParameters:
        """The job itself, with arrayStore resolved the way DaCapo's LocalArrayStore lays a
        run out: what the pods are given as arguments. ValueError, naming the field, for a
        base directory that no pod could reach."""
        fields = {name: getattr(self, name) for name in JobParameters.model_fields}
        if self.threshold is None:
            del fields["threshold"]
        if self.array_store is not None:
            a = self.array_store
            sweep = self.thresholds is not None and len(self.thresholds) > 1
            if sweep and PLACEHOLDER not in a.parameters:
                raise ValueError(
                    f"spec.arrayStore.parameters: {a.parameters!r} must name each threshold's "
                    f"output with {PLACEHOLDER}, e.g. {DACAPO_PARAMETERS} (or leave it out)"
                )
            try:
                store = LocalArrayStore(a.basedir)
                src = store.validation_prediction_array(a.run, a.iteration, a.dataset)
                dst = store.validation_output_array(a.run, a.iteration, a.parameters, a.dataset)
            except (ValueError, ImportError) as e:  # an unknown protocol, a file URL's host
                raise ValueError(f"spec.arrayStore.basedir: {e}") from None
            fields.update(
                input_container=container_url(src.container),
                input_dataset=src.dataset,
                output_container=container_url(dst.container),
                output_dataset=dst.dataset,
            )
        return JobParameters(**fields)


def container_url(container: Any) -> str:
    """A container as the pods are given it: a local path as a plain path."""
    text = str(container)
    return text[len("file://") :] if text.startswith("file://") else text


def alias(name: str, model: type[BaseModel] = ThresholdJobSpec) -> str:
    """A field's name in the resource (its camelCase alias)."""
    return model.model_fields[name].alias or name


#: What may change on a running ThresholdJob: the operator carries parallelism and suspend
#: over to its Jobs; `retry` is a counter the user bumps to ask for a retry of what failed
#: (a spec field, not an annotation: the request then has a generation, which
#: status.observedGeneration acknowledges, and the schema can check it).
MUTABLE = ("parallelism", "suspend", "retry")
#: spec.retry only grows: the operator acts when it exceeds the count it acted on last.
RETRY_RULE = {
    "rule": "!has(oldSelf.retry) || (has(self.retry) && self.retry >= oldSelf.retry)",
    "fieldPath": ".retry",
    "message": "may only grow: bump it (e.g. by 1) to retry what failed",
}
#: Spec fields that define the plan (every field of the job, and arrayStore): changing them
#: would make done-markers lie.
PLAN_FIELDS = (*(alias(name) for name in JobParameters.model_fields), "arrayStore")
#: Every field but MUTABLE is immutable (CEL rules in the CRD): the plan's, and those the
#: Jobs are made from (pool, image, env, volumes, retries, TTL, queue), which a running Job
#: cannot take over.
IMMUTABLE = tuple(name for name in map(alias, ThresholdJobSpec.model_fields) if name not in MUTABLE)
#: Kueue owns an admitted Job's `suspend` (it unsuspends what it admitted); pausing one is
#: done through Kueue (its Workload's spec.active, or the queue's stopPolicy). So with a
#: queue, `suspend` holds a ThresholdJob back only from its creation on.
KUEUE_SUSPEND_RULE = {
    "rule": "!has(self.queueName) || !self.suspend || oldSelf.suspend",
    "fieldPath": ".suspend",
    "message": "cannot be set once a ThresholdJob with a queueName exists: Kueue decides when "
    "its Jobs run; stop its Workload instead (kueuectl stop workload, or the Workload's "
    "spec.active: false)",
}

#: The spec's input/output xor arrayStore, as CEL (crd.py) and as the validator above says it.
_ARRAYS = [alias(name) for name in ARRAY_FIELDS]
ONE_SOURCE_RULES: tuple[dict[str, Any], ...] = (
    {
        "rule": "!(has(self.arrayStore) && ("
        + " || ".join(f"has(self.{a})" for a in _ARRAYS)
        + "))",
        "message": "give either the input and output containers and datasets, or arrayStore, "
        "not both",
    },
    {
        "rule": "has(self.arrayStore) || (" + " && ".join(f"has(self.{a})" for a in _ARRAYS) + ")",
        "message": "give inputContainer, inputDataset, outputContainer and outputDataset, or "
        "arrayStore",
    },
)


class Condition(Model):
    """A metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class Roi(Model):
    """A box in world units (the array's offset and voxel size), per spatial axis."""

    offset: list[float]
    shape: list[float]


class VoxelBox(Model):
    begin: list[int]
    shape: list[int]


class PlanStatus(Model):
    """The plan the prepare pod reported. The geometry (grid, ROI, voxel size) comes from
    workers that report it, and lets the operator name a block's ROI by arithmetic."""

    fingerprint: str
    total_blocks: int
    partitions: int
    block_shape: list[int]
    grid_shape: list[int] | None = None
    grid_origin: list[int] | None = None
    fit: str | None = None
    roi: Roi | None = Field(default=None, description="The region processed, in world units")
    roi_voxels: VoxelBox | None = None
    voxel_size: list[float] | None = None
    voxels: int | None = Field(default=None, description="Voxels processed (per channel)")
    viewer: str | None = Field(
        default=None,
        description="A neuroglancer link to the input and the mask, for data on object "
        "stores (for local data: threshold-worker view --serve)",
    )


class BlockCounts(Model):
    total: int = 0
    done: int = 0
    failed: int = 0


class PartitionCounts(Model):
    total: int = 0
    completed: int = 0
    failed: int = 0
    completed_indexes: str = Field(default="", description="Kubernetes interval string, e.g. 0-3,5")
    failed_indexes: str = ""


class JobNames(Model):
    prepare: str | None = None
    work: str | None = None


class Attempt(Model):
    """Which work Job runs now, and what it runs: attempt 1 is <name>-work over every
    partition; a retry makes attempt n, <name>-work-<n>, over `partitions` only."""

    number: int = Field(default=1, description="1 for the first work Job, n for the n-th")
    retry: int = Field(default=0, description="spec.retry as the operator last acted on it")
    partitions: str = Field(
        default="",
        description="Partitions this attempt's Job runs, as runs (its index i runs the i-th); "
        "empty: all",
    )


class FailedRegion(Model):
    """One failed region: a failed partition's blocks, or what its worker reported."""

    partition: int
    blocks: str = Field(description="Block ids, as runs, e.g. 120-131")
    rois: list[Roi] = Field(
        default_factory=list,
        max_length=16,
        description="The blocks as world-unit boxes (a run of blocks is a few boxes)",
    )
    exit_code: int | None = None
    error: str = ""


class FailureStatus(Model):
    """The first few failed regions and how many there are: bounded whatever the count."""

    partitions: int = Field(default=0, description="Partitions that failed")
    blocks: int = Field(default=0, description="Blocks in the failed partitions, or reported")
    regions: list[FailedRegion] = Field(default_factory=list, max_length=8)
    more: int = Field(default=0, description="Failed partitions not listed")


class Sample(Model):
    time: str
    blocks: int


class RateStatus(Model):
    """Progress over a recent window, from the work Job's completed partitions over time."""

    blocks_per_second: float | None = None
    voxels_per_second: float | None = None
    window_seconds: int | None = None
    samples: list[Sample] = Field(
        default_factory=list, max_length=8, description="(time, blocks done): the window"
    )


class Usage(Model):
    """Compute used by finished work Jobs, from their pods' start and finish times."""

    pod_seconds: int = 0
    pods: int = 0


Phase = Literal["Pending", "Preparing", "Running", "Suspended", "Succeeded", "Failed"]
#: Every phase, in the order a ThresholdJob goes through them.
PHASES: tuple[str, ...] = get_args(Phase)
#: Phases a ThresholdJob never leaves.
FINAL_PHASES = ("Succeeded", "Failed")


class ThresholdJobStatus(Model):
    """Counts and interval strings only: bounded size, whatever the number of blocks."""

    phase: Phase = "Pending"
    message: str = ""
    progress: str = Field(default="", description="blocks done/total, for kubectl get")
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    plan: PlanStatus | None = None
    blocks: BlockCounts = Field(default_factory=BlockCounts)
    partitions: PartitionCounts = Field(default_factory=PartitionCounts)
    pool: str | None = None
    jobs: JobNames = Field(default_factory=JobNames)
    selector: str = Field(
        default="",
        description="Label selector of the Jobs and pods, e.g. for kubectl get pods -l",
    )
    start_time: str | None = Field(
        default=None,
        description="When the ThresholdJob started, leaving out time waiting for another "
        "ThresholdJob's output",
    )
    completion_time: str | None = None
    attempt: Attempt = Field(default_factory=Attempt)
    failures: FailureStatus | None = None
    rate: RateStatus | None = None
    eta: str | None = Field(
        default=None, description="Estimated completion time, from the recent rate"
    )
    usage: Usage | None = None
