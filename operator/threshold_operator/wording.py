"""The worker's messages, told in a ThresholdJob's terms.

The worker names what a message is about by its JobParameters field (`input_dataset: no array
'nope' ...`, or a part of one: `roi.offset: ...`, `roi: ...` for roi_offset and roi_shape
together) and says what to do with its command-line options ("pass --overwrite to replace
it", "use --block-shape 16,16,16"). In a ThresholdJob's status the user acts on spec fields
instead, and the fields of the job are immutable, so the remedy is a new ThresholdJob with the
field set. Names and options map to fields through `JobParameters`, the one model of a job,
and, for a ThresholdJob that names its arrays with arrayStore, through
`ThresholdJobSpec.parameters`, which lays a DaCapo run out: a field or an option added there
is told right without a change here.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from threshold_worker.errors import PREPARE_AGAIN, RERUN
from threshold_worker.params import JobParameters, options, value_kind

from .api import ARRAY_FIELDS, ArrayStoreRef, ThresholdJobSpec, alias

#: Every spelling of every option -> the field it sets.
_OPTIONS = {flag: name for name, _, option in options(JobParameters) for flag in option.flags}
_FLAG = "(" + "|".join(map(re.escape, sorted(_OPTIONS, key=len, reverse=True))) + r")(?![\w-])"
_OPTION = r"(?<![\w-])" + _FLAG
#: A worker's field name at the head of its message: `input_dataset: `, `roi.offset: `.
_HEAD = re.compile(r"([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*): ")
#: A field named inside a message ("choose another output_dataset"): names with an
#: underscore only, the others ("threshold", "fit") being words too.
_NAMED = re.compile(
    r"(?<![\w.'/-])("
    + "|".join(n for n in sorted(JobParameters.model_fields, key=len, reverse=True) if "_" in n)
    + r")(?![\w'/-])"
)
#: A value given after an option, by what the field holds: a placeholder such as N, or
#: numbers, a choice, a name.
_NUMBER = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"
_VALUES = {
    "ints": rf"{_NUMBER}(?:,{_NUMBER})*",
    "floats": rf"{_NUMBER}(?:,{_NUMBER})*",
    "int": _NUMBER,
    "float": _NUMBER,
    "text": r"[^\s,;()'\"-][^\s,;()'\"]*",
}
_PLACEHOLDER = r"[A-Z]"


#: The names the worker gives several fields at once (plan.py, arrays.py: `roi: ...`).
GROUPS = {"roi": ("roi_offset", "roi_shape")}


def _job_fields(name: str) -> tuple[str, ...]:
    """The JobParameters fields a worker's name stands for: itself, a part of one
    (`roi.offset` is roi_offset) or a group of GROUPS; any other word, none."""
    fields = JobParameters.model_fields
    if name in fields:
        return (name,)
    if name.replace(".", "_") in fields:
        return (name.replace(".", "_"),)
    return GROUPS.get(name, ())


@functools.cache
def array_store_sources() -> dict[str, tuple[str, ...]]:
    """Array field -> the arrayStore fields that make it, found by changing each in turn:
    those that make it alone (parameters: the output dataset), else all of them (iteration
    and dataset make the input dataset, and the output's too)."""
    one = {"basedir": "/a", "run": "r", "iteration": 1, "dataset": "d", "parameters": "p"}
    two = {"basedir": "/b", "run": "s", "iteration": 2, "dataset": "e", "parameters": "q"}
    assert set(one) == set(ArrayStoreRef.model_fields)

    def made(store: dict[str, Any]) -> JobParameters:
        return ThresholdJobSpec(array_store=store).parameters()

    base = made(one)
    makes = {
        name: [
            f
            for f in ARRAY_FIELDS
            if getattr(made({**one, name: two[name]}), f) != getattr(base, f)
        ]
        for name in one
    }
    sources = {}
    for field in ARRAY_FIELDS:
        every = [alias(n, ArrayStoreRef) for n, fields in makes.items() if field in fields]
        alone = [alias(n, ArrayStoreRef) for n, fields in makes.items() if fields == [field]]
        sources[field] = tuple(alone or every)
    return sources


def spec_fields(name: str, spec: ThresholdJobSpec | None = None) -> str | None:
    """A worker's field name as the spec field(s) that gave it: `spec.inputDataset`,
    `spec.roiOffset/spec.roiShape`, or arrayStore's fields for a spec that uses it. Without
    the spec, a group names all of its fields, and the arrays their own fields."""
    fields = _job_fields(name)
    if not fields:
        return None
    if spec is not None and len(fields) > 1:
        fields = tuple(f for f in fields if f in spec.model_fields_set) or fields
    paths: list[str] = []
    for field in fields:
        if _from_array_store(field, spec):
            paths += [f"spec.arrayStore.{a}" for a in array_store_sources()[field]]
        else:
            paths.append(f"spec.{alias(field)}")
    return "/".join(dict.fromkeys(paths))


def _from_array_store(field: str, spec: ThresholdJobSpec | None) -> bool:
    """Whether the job's `field` is a path that the spec's arrayStore made of its fields."""
    return spec is not None and spec.array_store is not None and field in ARRAY_FIELDS


def _field(flag: str, spec: ThresholdJobSpec | None, value: str | None = None) -> str | None:
    """An option as its spec field: `spec.omeZarr: true`, `spec.blockShape: [16, 16, 16]`.
    An array's path made by arrayStore is no value of the field(s) that make it (`-od
    100000/val/output/img` is not what `parameters` holds): those are named alone."""
    name = _OPTIONS.get(flag)
    if name is None:
        return None
    field = spec_fields(name, spec)
    kind = value_kind(JobParameters.model_fields[name])[0]
    if kind == "flag":
        return f"{field}: true"
    if value is None or _from_array_store(name, spec):
        return field
    if kind in ("ints", "floats") and not re.fullmatch(_PLACEHOLDER, value):
        value = "[" + ", ".join(value.split(",")) + "]"
    return f"{field}: {value}"


def _value(flag: str, token: str) -> str | None:
    """The start of `token` that is a value of the option's field, if one is."""
    kind, choices = value_kind(JobParameters.model_fields[_OPTIONS[flag]])
    if kind == "flag":
        return None
    for pattern in (_PLACEHOLDER, *map(re.escape, map(str, choices)), _VALUES.get(kind)):
        found = re.match(rf"(?:{pattern})(?!\w)", token) if pattern else None
        if found:
            return found.group(0)
    return None


def _options(text: str, spec: ThresholdJobSpec | None) -> str:
    def again(match: re.Match[str]) -> str:
        field = _field(match.group(1), spec)
        return f"{CREATE_AGAIN} with {field}" if field else match.group(0)

    def told(match: re.Match[str]) -> str:  # "--ome-zarr (omeZarr: true)": the field says it
        name = _OPTIONS[match.group(1)]
        same = match.group(2) == alias(name)
        return f"{spec_fields(name, spec)}: {match.group(3)}" if same else match.group(0)

    text = re.sub(rf"run `threshold-worker \w+ {_FLAG}`(?: \(or `\w+ \1`\))? first", again, text)
    text = re.sub(rf"pass {_FLAG}", again, text)
    text = re.sub(rf"{_OPTION} \((\w+): ([^)]*)\)", told, text)
    return _with_values(text, spec)


def _with_values(text: str, spec: ThresholdJobSpec | None) -> str:
    """Each option, with the value that follows it, as its field. Options that follow each
    other ("--ome-zarr -od img") are fields to set together, said as such; an option after
    any other word stands alone."""
    told: list[str] = []
    end = 0  # of the text told so far, which ends with an option (and its value) once any is
    for match in re.finditer(_OPTION, text):
        if match.start() < end:  # inside the value of the option before
            continue
        flag = match.group(1)
        token = re.match(r" ((?:-\d|[^\s-])\S*)", text[match.end() :])
        value = _value(flag, token.group(1)) if token else None
        field = _field(flag, spec, value) or match.group(0)
        gap = text[end : match.start()]
        told += [" and " if told and gap == " " else gap, field]
        end = match.end() + (0 if value is None else 1 + len(value))
    return "".join([*told, text[end:]])


def in_spec_terms(message: str, spec: ThresholdJobSpec | None = None) -> str:
    """The message with the worker's field names and options replaced by the spec fields
    that say the same; `spec`, when known, says which fields of a group were given and
    whether the arrays came from arrayStore."""
    head = _HEAD.match(message)
    if head and (field := spec_fields(head.group(1), spec)):
        message = f"{field}: {message[head.end() :]}"
    text = _NAMED.sub(lambda m: spec_fields(m.group(1), spec) or m.group(0), message)
    text = _options(text, spec)
    text = text.replace(f"; {RERUN}", "")  # the status says how to retry a ThresholdJob
    text = text.replace(PREPARE_AGAIN, CREATE_AGAIN)  # prepare is its start
    return text.replace("leave the option out", "leave the field out")


#: A ThresholdJob's fields are immutable: doing a step again is making it again.
CREATE_AGAIN = "create the ThresholdJob again"
#: How a worker's message ends when the same command would go on from where it stopped.
_RERUN = re.compile(r",? then rerun(?: the same command)?(?:: finished blocks are kept)?")


def rerun_as(message: str, remedy: str) -> str:
    """The worker's "then rerun" as what reruns a ThresholdJob's step: `remedy` (create it
    again, for its prepare step), or nothing where the status adds how (spec.retry)."""
    return _RERUN.sub(f", then {remedy}" if remedy else "", message)


def spec_error(message: str) -> str:
    """`spec: output_dataset: ...` (a model-wide check that names its field itself) as
    `spec.outputDataset: ...`, its options as fields too. Told without a spec: it is the
    spec that did not validate."""
    head, sep, rest = message.partition(": ")
    if head != "spec" or not sep or not _HEAD.match(rest):
        return message
    told = in_spec_terms(rest)
    return told if told.startswith("spec.") else message
