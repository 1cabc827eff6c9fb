"""A threshold job's parameters: one model for every door into a job.

The CLI's options, the seed API's keyword arguments (`start_worker_fn`, `spawn_worker`),
the ThresholdJob's spec fields (camelCase aliases of the same names; the CRD is generated
from a subclass of this model) and the arguments the operator gives its pods are all made
from `JobParameters`; nothing translates one into another by hand. A field's command-line
spelling is an `Option` in its annotation.

Words: a *partition* is a contiguous range of blocks that one process or pod works
through (`--partitions`, `--partition`); a zarr *shard* is the v3 storage unit that holds
several chunks (`--output-shards`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from .plan import DEFAULT_FIT, Fit

PositiveInt = Annotated[int, Field(ge=1)]
Shape = Annotated[list[PositiveInt], Field(min_length=1, max_length=5)]
#: Kubernetes' limit on an Indexed Job's completions: the most partitions a job may have.
MAX_PARTITIONS = 100_000
ROI_AXES = "roiOffset and roiShape must have the same number of axes"
#: The most thresholds of one sweep: each adds a mask per block in memory.
MAX_THRESHOLDS = 64
PLACEHOLDER = "{threshold}"
#: The most pyramid levels: at factor 2 that is 1024x smaller per axis.
MAX_LEVELS = 10
PyramidMode = Literal["any", "mode"]
ONE_THRESHOLD_FIELD = "threshold and thresholds: give one of them, not both"


@dataclass(frozen=True)
class Option:
    """How a field is spelled on the command line: its flags, the first long one canonical
    (the one the operator writes into pod arguments). `several`: the field that a comma
    list given to this option fills instead (`-th 0.3,0.4` are `thresholds`)."""

    flags: tuple[str, ...]
    several: str | None = None

    def __init__(self, *flags: str, several: str | None = None) -> None:
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "several", several)

    @property
    def canonical(self) -> str:
        return next(f for f in self.flags if f.startswith("--"))


class JobParameters(BaseModel):
    """Everything that defines a threshold job; geometry in the spatial axes' order."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    input_container: Annotated[
        str,
        Field(min_length=1, description="Input zarr container: a path, or s3://, gs://, file://"),
        Option("-ic", "--input_container", "--input-container"),
    ]
    input_dataset: Annotated[
        str,
        Field(min_length=1, description="Array path inside the input container"),
        Option("-id", "--input_dataset", "--input-dataset"),
    ]
    output_container: Annotated[
        str,
        Field(min_length=1, description="Output zarr container; may be the input's"),
        Option("-oc", "--output_container", "--output-container"),
    ]
    output_dataset: Annotated[
        str,
        Field(min_length=1, description="Array path of the uint8 mask"),
        Option("-od", "--output_dataset", "--output-dataset"),
    ]
    threshold: Annotated[
        float,
        Field(allow_inf_nan=False, description="Voxels strictly greater become 1 (NaN: 0)"),
        Option("-th", "--threshold", several="thresholds"),
    ] = 0.0
    thresholds: Annotated[
        list[Annotated[float, Field(allow_inf_nan=False)]] | None,
        Field(
            min_length=1,
            max_length=MAX_THRESHOLDS,
            description="Several thresholds in one pass (the input read once), one output "
            "each: the output dataset names them with {threshold}, e.g. "
            "output/threshold_{threshold}",
        ),
        Option("--thresholds"),
    ] = None
    roi_offset: Annotated[
        list[int] | None,
        Field(min_length=1, max_length=5, description="ROI offset in world units (e.g. nm)"),
        Option("--roi-offset"),
    ] = None
    roi_shape: Annotated[
        Shape | None,
        Field(description="ROI shape in world units; default: to the array's end"),
        Option("--roi-shape"),
    ] = None
    block_shape: Annotated[
        Shape | None,
        Field(description="Voxels per block, a multiple of the output chunk (shard) shape"),
        Option("--block-shape"),
    ] = None
    fit: Annotated[
        Fit,
        Field(description="shrink: clip border blocks to the ROI; valid: skip them"),
        Option("--fit"),
    ] = DEFAULT_FIT
    partitions: Annotated[
        int | None,
        Field(ge=1, le=MAX_PARTITIONS, description="Ranges of blocks to split the job into"),
        Option("--partitions"),
    ] = None
    overwrite: Annotated[
        bool,
        Field(description="Replace an output that holds another job's result"),
        Option("--overwrite"),
    ] = False
    output_chunks: Annotated[
        Shape | None,
        Field(description="Output chunk shape in voxels; default: the input's"),
        Option("--output-chunks"),
    ] = None
    output_shards: Annotated[
        Shape | None,
        Field(description="Output zarr shard shape in voxels (zarr v3 sharding)"),
        Option("--output-shards"),
    ] = None
    zarr_format: Annotated[
        Literal[2, 3] | None,
        Field(description="Output zarr format; default: the input's"),
        Option("--zarr-format"),
    ] = None
    ome_zarr: Annotated[
        bool,
        Field(
            description="Write the output as an OME-Zarr image (0.4 on zarr v2, 0.5 on v3): "
            "the output dataset names the image group, the mask is its level s0"
        ),
        Option("--ome-zarr"),
    ] = False
    pyramid: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_LEVELS,
            description="Downsampled levels s1..sN of the mask, written in the same pass "
            "(needs --ome-zarr: the levels are arrays of the image group)",
        ),
        Option("--pyramid"),
    ] = 0
    pyramid_factors: Annotated[
        Shape | None,
        Field(
            description="Downsampling factor per spatial axis from one level to the next, "
            "e.g. 1,2,2; default 2 on every axis"
        ),
        Option("--pyramid-factors"),
    ] = None
    pyramid_mode: Annotated[
        PyramidMode,
        Field(
            description="any: a level voxel is 1 where any voxel of its window is (thin "
            "structures survive); mode: where more than half are"
        ),
        Option("--pyramid-mode"),
    ] = "any"

    @field_validator("input_dataset", "output_dataset")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip("/") if value is not None else None

    @field_validator("threshold")
    @classmethod
    def _unsigned_zero(cls, value: float) -> float:
        """-0.0 gives the mask 0.0 gives; as 0.0 it also gives one output name and one plan
        fingerprint whichever door the job came through (a ThresholdJob's -0 is stored as 0)."""
        return value + 0.0

    @field_validator("thresholds")
    @classmethod
    def _unsigned_zeros(cls, values: list[float] | None) -> list[float] | None:
        return None if values is None else [v + 0.0 for v in values]

    @model_validator(mode="after")
    def _roi_axes(self) -> JobParameters:
        if self.roi_offset and self.roi_shape and len(self.roi_offset) != len(self.roi_shape):
            raise ValueError(ROI_AXES)
        return self

    @model_validator(mode="after")
    def _pyramid_in_an_image(self) -> JobParameters:
        if self.pyramid and not self.ome_zarr:
            raise ValueError(
                "pyramid: its levels are arrays of an OME-Zarr image group: add --ome-zarr "
                "(omeZarr: true)"
            )
        given = [name for name, default in (("pyramid_factors", None), ("pyramid_mode", "any"))
                 if getattr(self, name) != default]  # fmt: skip
        if not self.pyramid and given:
            raise ValueError(f"{given[0]}: has no effect without pyramid (--pyramid N)")
        if self.pyramid_factors is not None and max(self.pyramid_factors) < 2:
            raise ValueError(
                f"pyramid_factors: {self.pyramid_factors} downsamples no axis; give a factor "
                "of 2 or more on at least one"
            )
        return self

    @model_validator(mode="after")
    def _one_output_per_threshold(self) -> JobParameters:
        if self.thresholds is None:
            return self
        if "threshold" in self.model_fields_set:
            raise ValueError(ONE_THRESHOLD_FIELD)
        if len(set(self.thresholds)) != len(self.thresholds):
            twice = sorted({t for t in self.thresholds if self.thresholds.count(t) > 1})
            zeros = " (0.0 and -0.0 are one threshold)" if 0.0 in twice else ""
            raise ValueError(
                f"thresholds: {self.thresholds} name {', '.join(map(repr, twice))} twice{zeros}"
            )
        if (
            len(self.thresholds) > 1
            and self.output_dataset is not None
            and PLACEHOLDER not in self.output_dataset
        ):
            raise ValueError(
                f"output_dataset: '{self.output_dataset}' must name each threshold's output "
                f"with {PLACEHOLDER}, e.g. threshold_{PLACEHOLDER}"
            )
        return self

    @property
    def is_sweep(self) -> bool:
        """Thresholds as a list, or outputs named by {threshold}: a sweep, even of one
        threshold, so that what reports it has one shape whatever the list's length."""
        return self.thresholds is not None or PLACEHOLDER in self.output_dataset

    def sweep(self) -> list[JobParameters]:
        """One job per threshold, each with its own output: what a sweep is made of. Their
        outputs are `output_dataset` with {threshold} written as Python's repr of the float
        (threshold_0.3), so each is the very job a single run of that threshold would be."""
        values = self.thresholds if self.thresholds is not None else [self.threshold]
        if not self.is_sweep:
            return [self]
        return [
            self.model_copy(
                update={
                    "threshold": float(t),
                    "thresholds": None,
                    "output_dataset": self.output_dataset.replace(PLACEHOLDER, repr(float(t))),
                }
            )
            for t in values
        ]

    def to_args(self) -> list[str]:
        """The command-line arguments that give these parameters (defaults left out)."""
        args: list[str] = []
        for name, info, option in options(type(self)):
            value = getattr(self, name)
            if value is None or (value == info.default and name not in REQUIRED_ARGS):
                continue
            if value is True:
                args.append(option.canonical)
            else:
                args += [option.canonical, format_value(value)]
        return args

    @property
    def partition_count(self) -> int:
        return self.partitions or 1


#: Always written out, so that pod arguments read on their own.
REQUIRED_ARGS = ("input_container", "input_dataset", "output_container", "output_dataset")


def seed_threshold(threshold: float, options: dict[str, Any]) -> dict[str, Any]:
    """The options with the seed API's positional threshold folded in.

    DaCapo's signatures default `threshold` to 0.0, so a caller who sweeps with
    `thresholds=[...]` has not chosen it: only a threshold other than the default
    then counts (and meets the model's "give one of them, not both").
    """
    if options.get("thresholds") is None or threshold != 0.0:
        return {**options, "threshold": threshold}
    return options


def format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def options(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo, Option]]:
    """(name, field, option) of every field that has a command-line spelling."""
    for name, info in model.model_fields.items():
        option = next((m for m in info.metadata if isinstance(m, Option)), None)
        if option is not None:
            yield name, info, option


def value_kind(info: FieldInfo) -> tuple[str, tuple[Any, ...]]:
    """What a field holds, for a command-line parser: ('ints' | 'floats' | 'float' | 'int' |
    'flag' | 'choice' | 'text', choices)."""
    inner = info.annotation
    if get_origin(inner) in (Union, UnionType):  # X | None
        inner = next(a for a in get_args(inner) if a is not type(None))
    while get_origin(inner) is Annotated:
        inner = get_args(inner)[0]
    if get_origin(inner) is Literal:
        return "choice", get_args(inner)
    if get_origin(inner) is list or inner is list:
        item = (get_args(inner) or (int,))[0]
        while get_origin(item) is Annotated:
            item = get_args(item)[0]
        return ("floats" if item is float else "ints"), ()
    if inner is bool:
        return "flag", ()
    if inner is float:
        return "float", ()
    if inner is int:
        return "int", ()
    return "text", ()
