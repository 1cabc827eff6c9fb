"""The ThresholdJob API: one pydantic model, from which the CRD is generated.

Field names are camelCase on the wire (aliases), snake_case in Python.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "blockwise.dev"
VERSION = "v1alpha1"
KIND = "ThresholdJob"
PLURAL = "thresholdjobs"
SINGULAR = "thresholdjob"
SHORT_NAMES = ["tj"]
CATEGORIES = ["blockwise"]
API_VERSION = f"{GROUP}/{VERSION}"

#: Spec fields that define the plan: changing them would make done-markers lie.
IMMUTABLE = ("input", "output", "arrayStore", "threshold", "roi", "blockShape", "fit", "shards")


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ArrayRef(Model):
    """A zarr array: a container and a dataset path inside it."""

    container: str = Field(
        min_length=1, description="Zarr container: a path in a mounted volume, or s3://, gs://"
    )
    dataset: str = Field(
        min_length=1, description="Array path inside the container, e.g. 100000/val/prediction"
    )


class ArrayStoreRef(Model):
    """DaCapo's LocalArrayStore: input is the validation prediction, output the validation output."""

    basedir: str = Field(min_length=1, description="The array store's base directory (path or URL)")
    run: str = Field(min_length=1, description="DaCapo run name")
    iteration: int = Field(ge=0, description="Training iteration of the prediction")
    dataset: str = Field(min_length=1, description="Validation dataset name")
    parameters: str = Field(
        min_length=1, description="Post-processing parameters name, e.g. threshold_0.5"
    )


class RoiSpec(Model):
    """A region of interest in world units (e.g. nm), in the array's spatial axis order."""

    offset: list[int] = Field(min_length=1, max_length=5, description="Begin, in world units")
    shape: list[int] = Field(
        min_length=1, max_length=5, description="Extent, in world units, each > 0"
    )


class VolumeSpec(Model):
    """A PersistentVolumeClaim mounted into every pod."""

    claim_name: str = Field(min_length=1, description="PersistentVolumeClaim name")
    mount_path: str = Field(
        min_length=1, pattern=r"^/", description="Absolute path in the container"
    )
    read_only: bool = Field(
        default=False, description="Mount read-only (e.g. an input-only volume)"
    )


class SecretKeyRef(Model):
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class EnvValueFrom(Model):
    secret_key_ref: SecretKeyRef


class EnvVar(Model):
    """An environment variable, e.g. AWS_ACCESS_KEY_ID from a Secret."""

    name: str = Field(min_length=1)
    value: str | None = None
    value_from: EnvValueFrom | None = None


class SecretRef(Model):
    name: str = Field(min_length=1)


class EnvFrom(Model):
    """All keys of a Secret as environment variables (object-store credentials)."""

    secret_ref: SecretRef


class Retries(Model):
    per_shard: int = Field(
        default=3, ge=0, le=100, description="Pod retries per shard (backoffLimitPerIndex)"
    )
    max_failed_shards: int = Field(
        default=0, ge=0, description="Shards that may fail before the job fails (maxFailedIndexes)"
    )


class ThresholdJobSpec(Model):
    """What to threshold, and how to run it."""

    input: ArrayRef | None = Field(default=None, description="Input array (or use arrayStore)")
    output: ArrayRef | None = Field(
        default=None, description="Output uint8 array (or use arrayStore)"
    )
    array_store: ArrayStoreRef | None = Field(
        default=None, description="Input and output from a DaCapo array store"
    )
    threshold: float = Field(default=0.0, description="Voxels strictly greater become 1")
    roi: RoiSpec | None = Field(
        default=None, description="Region to process; default the whole input"
    )
    block_shape: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=5,
        description="Voxels per block, a multiple of the output chunk shape; default about 8 chunks",
    )
    fit: Literal["shrink", "valid"] = Field(
        default="shrink", description="shrink: clip border blocks to the roi; valid: skip them"
    )
    parallelism: int = Field(
        default=4, ge=1, le=10000, description="Pods running at once; may change"
    )
    shards: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description="Shards (pods to run in all); default 4 x parallelism",
    )
    compute_context: str = Field(
        default="cpu", min_length=1, description="Name in the cluster's catalog"
    )
    volumes: list[VolumeSpec] = Field(default_factory=list, max_length=16)
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    env_from: list[EnvFrom] = Field(default_factory=list, max_length=16)
    retries: Retries = Field(default_factory=Retries)
    suspend: bool = Field(
        default=False, description="Pause: running pods stop, done blocks stay done"
    )
    queue_name: str | None = Field(
        default=None, description="Kueue LocalQueue (kueue.x-k8s.io/queue-name)"
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description="Delete finished Jobs (not the ThresholdJob) after this long",
    )
    image: str | None = Field(default=None, description="Worker image; default the operator's")

    @model_validator(mode="after")
    def _one_source(self) -> ThresholdJobSpec:
        explicit = self.input is not None or self.output is not None
        if self.array_store is not None and explicit:
            raise ValueError("give either input and output, or arrayStore, not both")
        if self.array_store is None and (self.input is None or self.output is None):
            raise ValueError("give input and output, or arrayStore")
        return self


class Condition(Model):
    """A metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class PlanStatus(Model):
    fingerprint: str
    total_blocks: int
    shards: int
    block_shape: list[int]


class BlockCounts(Model):
    total: int = 0
    done: int = 0
    failed: int = 0


class ShardCounts(Model):
    total: int = 0
    completed: int = 0
    failed: int = 0
    completed_indexes: str = Field(default="", description="Kubernetes interval string, e.g. 0-3,5")
    failed_indexes: str = ""


class JobNames(Model):
    prepare: str | None = None
    work: str | None = None


Phase = Literal["Pending", "Preparing", "Running", "Suspended", "Succeeded", "Failed"]


class ThresholdJobStatus(Model):
    """Counts and interval strings only: bounded size, whatever the number of blocks."""

    phase: Phase = "Pending"
    message: str = ""
    progress: str = Field(default="", description="blocks done/total, for kubectl get")
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    plan: PlanStatus | None = None
    blocks: BlockCounts = Field(default_factory=BlockCounts)
    shards: ShardCounts = Field(default_factory=ShardCounts)
    compute_context: str | None = None
    jobs: JobNames = Field(default_factory=JobNames)
    selector: str = Field(
        default="",
        description="Label selector of the Jobs and pods, e.g. for kubectl get pods -l",
    )
    start_time: str | None = None
    completion_time: str | None = None
