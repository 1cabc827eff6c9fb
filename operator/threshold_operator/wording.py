"""The worker's messages, told in a ThresholdJob's terms.

The worker says what to do with its command-line options ("pass --overwrite to replace it",
"run `threshold-worker prepare --overwrite` first"); in a ThresholdJob's status the user acts
on spec fields instead, and the fields of the job are immutable, so the remedy is a new
ThresholdJob with the field set. Options map to fields through `JobParameters`, the one model
of a job, so an option added there is told right without a change here.
"""

from __future__ import annotations

import re

from threshold_worker.errors import RERUN
from threshold_worker.params import JobParameters, options, value_kind

#: Every spelling of every option -> (spec field, whether it is an on/off flag).
_FIELDS = {
    flag: (info.alias or name, value_kind(info)[0] == "flag")
    for name, info, option in options(JobParameters)
    for flag in option.flags
    if flag.startswith("--")
}
_FLAG = r"(--[A-Za-z][-_A-Za-z]*)"


def _field(flag: str) -> str | None:
    known = _FIELDS.get(flag)
    if known is None:
        return None
    alias, is_flag = known
    return f"spec.{alias}: true" if is_flag else f"spec.{alias}"


def _again(match: re.Match[str]) -> str:
    field = _field(match.group(1))
    return f"create the ThresholdJob again with {field}" if field else match.group(0)


def in_spec_terms(message: str) -> str:
    """The message with options replaced by the spec fields that say the same."""
    text = re.sub(
        rf"run `threshold-worker \w+ {_FLAG}`(?: \(or `\w+ \1`\))? first", _again, message
    )
    text = re.sub(rf"pass {_FLAG}", _again, text)
    text = re.sub(_FLAG, lambda m: _field(m.group(1)) or m.group(0), text)
    text = text.replace(f"; {RERUN}", "")  # the status says how to retry a ThresholdJob
    return text.replace("leave the option out", "leave the field out")


def spec_error(message: str) -> str:
    """`spec: output_dataset: ...` (a model-wide check that names its field itself) as
    `spec.outputDataset: ...`."""
    head, sep, rest = message.partition(": ")
    name, colon, detail = rest.partition(": ")
    info = JobParameters.model_fields.get(name)
    if head != "spec" or not sep or not colon or info is None:
        return message
    return f"spec.{info.alias or name}: {detail}"
