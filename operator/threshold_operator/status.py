"""A ThresholdJob's status, derived from what one pass saw: pure functions, no API calls.

`derive(Observed, now)` is the whole decision of phase, message and conditions, from the spec,
the plan, the prepare Job and the work Job (plain dicts, as the API server returns them) and
the few facts a pass reads from pods; `transitions(old, new)` is the Events that go with it.
Creating Jobs and carrying parallelism and suspend over to them is `reconcile`'s, not this.

Progress comes from the work Job's `completedIndexes`/`failedIndexes` interval strings
("0-3,5", read by `threshold_worker.intervals`); blocks per partition are the planner's
arithmetic (`plan.partition_range`), so status stays a few hundred bytes for any number of
blocks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from threshold_worker.intervals import Run, count, parse_runs
from threshold_worker.plan import partition_range

from .api import (
    FINAL_PHASES,
    BlockCounts,
    Condition,
    PartitionCounts,
    PlanStatus,
    ThresholdJobSpec,
    ThresholdJobStatus,
)
from .names import job_name, selector

MAX_INTERVAL_CHARS = 512
Job = dict[str, Any]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def blocks_in(runs: Iterable[Run], partitions: int, total_blocks: int) -> int:
    """Blocks in runs of partitions: a run [a, b] of partitions is one range of blocks."""
    return sum(
        partition_range(b, partitions, total_blocks).stop
        - partition_range(a, partitions, total_blocks).start
        for a, b in runs
    )


def clip(text: str) -> str:
    return text if len(text) <= MAX_INTERVAL_CHARS else text[: MAX_INTERVAL_CHARS - 3] + "..."


def describe_partitions(runs: list[Run], partitions: int, total_blocks: int, limit: int = 3) -> str:
    """ "partition 2 (blocks 8-11), partitions 5-6 (blocks 20-27)", the first few runs."""
    parts = []
    for a, b in runs[:limit]:
        lo = partition_range(a, partitions, total_blocks).start
        hi = partition_range(b, partitions, total_blocks).stop - 1
        which = f"partition {a}" if a == b else f"partitions {a}-{b}"
        parts.append(f"{which} (blocks {lo}-{hi})")
    more = count(runs[limit:])
    if more:
        parts.append(f"and {more} more")
    return ", ".join(parts)


def job_condition(job: Job | None, kind: str) -> dict[str, Any] | None:
    """The Job's condition of this type when it is True (Complete, Failed, Suspended...)."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def finished(job: Job | None) -> bool:
    return bool(job_condition(job, "Complete") or job_condition(job, "Failed"))


def suspended(job: Job | None) -> bool:
    """The Job's spec says suspended (the controller stops its pods)."""
    return bool(((job or {}).get("spec") or {}).get("suspend"))


def set_condition(
    conditions: list[Condition],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    at: str,
) -> list[Condition]:
    """metav1 semantics: lastTransitionTime changes only when status flips."""
    value = "True" if status else "False"
    old = next((c for c in conditions if c.type == kind), None)
    changed = old is None or old.status != value
    new = Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=at if changed or old is None else old.last_transition_time,
        observed_generation=generation,
    )
    return sorted([*(c for c in conditions if c.type != kind), new], key=lambda c: c.type)


def condition(status: ThresholdJobStatus | None, kind: str) -> Condition | None:
    return next((c for c in (status.conditions if status else []) if c.type == kind), None)


def work_progress(work: Job | None, partitions: int, total_blocks: int) -> dict[str, Any]:
    """Counts and intervals from the work Job's status."""
    status = (work or {}).get("status") or {}
    done = parse_runs(status.get("completedIndexes"))
    failed = parse_runs(status.get("failedIndexes"))
    return {
        "blocks": {
            "total": total_blocks,
            "done": blocks_in(done, partitions, total_blocks),
            "failed": blocks_in(failed, partitions, total_blocks),
        },
        "partitions": {
            "total": partitions,
            "completed": count(done),
            "failed": count(failed),
            "completedIndexes": clip(status.get("completedIndexes") or ""),
            "failedIndexes": clip(status.get("failedIndexes") or ""),
        },
        "failed_intervals": failed,
        "active": status.get("active") or 0,
    }


@dataclass(frozen=True)
class Failure:
    """A reason the ThresholdJob cannot go on, found while observing (a spec that cannot
    work, a refusal of the API server, a child name held by someone else)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """What one pass saw of a ThresholdJob's world: everything `derive` decides from.

    `old` is the status as stored (None before the first pass); `plan` the recorded plan or
    the one the prepare pod reported this pass; `prepare`/`work` the Jobs as read (None:
    absent); `prepare_error` the prepare pod's own message when it failed; `partition_error`
    how the first failed partition failed; `blocked` why pods of the running Job cannot start.
    """

    name: str
    generation: int | None
    spec: ThresholdJobSpec | None
    old: ThresholdJobStatus | None = None
    plan: PlanStatus | None = None
    prepare: Job | None = None
    work: Job | None = None
    failure: Failure | None = None
    prepare_error: str = ""
    partition_error: str = ""
    blocked: str = ""


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post for a transition."""

    type: str  # Normal or Warning
    reason: str
    message: str


def derive(o: Observed, at: str) -> ThresholdJobStatus:
    """The status this observation means. A Succeeded or Failed ThresholdJob stays so; `at`
    is the time of new transitions and of the first pass."""
    s = (o.old or ThresholdJobStatus()).model_copy(deep=True)
    s.observed_generation = o.generation
    s.start_time = s.start_time or at
    if s.phase in FINAL_PHASES and o.old is not None:
        return s  # never left: the children may be gone (ttlSecondsAfterFinished)
    s.selector = selector(o.name)
    if o.failure is not None:
        return _failed(s, o, o.failure.reason, o.failure.message, at)
    assert o.spec is not None, "an observation without a failure has a spec"
    s.pool = o.spec.pool
    s.jobs.prepare = job_name(o.name, "prepare")
    s.conditions = _blocked(s, o, at)
    if o.plan is None:
        return _preparing(s, o, at)
    return _working(s, o, o.plan, at)


def _set(
    s: ThresholdJobStatus,
    o: Observed,
    at: str,
    phase: str,
    message: str,
    **conditions: tuple[bool, str],
) -> ThresholdJobStatus:
    """Phase and message, and conditions given as type=(status, reason)."""
    s.phase = phase  # type: ignore[assignment]
    s.message = message
    for kind, (value, reason) in conditions.items():
        s.conditions = set_condition(
            s.conditions, kind, value, reason, message if value else "", o.generation, at
        )
    return s


def _failed(
    s: ThresholdJobStatus, o: Observed, reason: str, message: str, at: str
) -> ThresholdJobStatus:
    s.completion_time = s.completion_time or at
    return _set(s, o, at, "Failed", message, Failed=(True, reason), Succeeded=(False, reason))


def _with_blocked(message: str, o: Observed) -> str:
    return f"{message}; {o.blocked}" if o.blocked else message


def _blocked(s: ThresholdJobStatus, o: Observed, at: str) -> list[Any]:
    """The Blocked condition: True while pods of the running Job cannot start."""
    if o.blocked:
        return set_condition(
            s.conditions, "Blocked", True, "PodsCannotStart", o.blocked, o.generation, at
        )
    if condition(s, "Blocked") is None:
        return s.conditions
    return set_condition(s.conditions, "Blocked", False, "PodsStarted", "", o.generation, at)


def _held(s: ThresholdJobStatus, o: Observed, job: Job | None, at: str, what: str) -> str | None:
    """Pending or Suspended, when the Job is held back: by spec.suspend, or by its Kueue
    queue (nothing is created while a queued ThresholdJob is suspended)."""
    spec = o.spec
    assert spec is not None
    if spec.queue_name and (job is None and spec.suspend):
        message = "suspended before it was queued; set spec.suspend=false to queue it"
        _set(s, o, at, "Suspended", message, Suspended=(True, "Suspended"))
        return message
    if spec.queue_name and suspended(job):
        message = f"waiting for admission by Kueue queue '{spec.queue_name}' ({what})"
        _set(s, o, at, "Pending", message, Suspended=(True, "Queued"))
        return message
    if spec.suspend:
        message = "suspended; set spec.suspend=false to resume"
        _set(s, o, at, "Suspended", message, Suspended=(True, "Suspended"))
        return message
    return None


def _preparing(s: ThresholdJobStatus, o: Observed, at: str) -> ThresholdJobStatus:
    prep = o.prepare
    if job_condition(prep, "Failed"):
        return _failed(s, o, "PrepareFailed", o.prepare_error or "the prepare Job failed", at)
    if job_condition(prep, "Complete"):
        message = "the prepare pod finished without reporting a plan"
        return _failed(s, o, "PrepareFailed", message, at)
    if _held(s, o, prep, at, "the prepare Job") is not None:
        return s
    if prep is None:
        return _set(s, o, at, "Pending", "creating the prepare Job")
    message = _with_blocked("validating the input and planning blocks", o)
    return _set(
        s, o, at, "Preparing", message, Prepared=(False, "Preparing"), Suspended=(False, "Running")
    )


def _working(s: ThresholdJobStatus, o: Observed, plan: PlanStatus, at: str) -> ThresholdJobStatus:
    s.plan = plan
    if not _is_true(s, "Prepared"):
        planned = (
            f"{plan.total_blocks} blocks in {plan.partitions} partitions, plan {plan.fingerprint}"
        )
        s.conditions = set_condition(
            s.conditions, "Prepared", True, "Planned", planned, o.generation, at
        )
    total, partitions = plan.total_blocks, plan.partitions
    s.jobs.work = job_name(o.name, "work")
    work = o.work
    if work is None:
        if partitions and s.partitions.completed == partitions:
            return _succeeded(s, o, total, at)  # recorded, and the Job is gone: never rerun
        if _held(s, o, None, at, "the work Job") is not None:
            return s
        return _set(s, o, at, "Pending", "creating the work Job")
    progress = work_progress(work, partitions, total)
    s.blocks = BlockCounts(**progress["blocks"])
    s.partitions = PartitionCounts.model_validate(progress["partitions"])
    s.progress = f"{s.blocks.done}/{total}"
    if job_condition(work, "Complete"):
        return _succeeded(s, o, total, at)
    if failed := job_condition(work, "Failed"):
        where = describe_partitions(progress["failed_intervals"], partitions, total)
        message = (
            f"{where} {o.partition_error or 'failed'}"
            if where
            else failed.get("message") or failed.get("reason") or "the work Job failed"
        )
        return _failed(s, o, failed.get("reason") or "WorkFailed", message, at)
    if _held(s, o, work, at, "the work Job") is not None:
        return s
    message = _with_blocked(
        f"{s.partitions.completed}/{partitions} partitions done, {progress['active']} running", o
    )
    return _set(s, o, at, "Running", message, Suspended=(False, "Running"))


def _succeeded(s: ThresholdJobStatus, o: Observed, total: int, at: str) -> ThresholdJobStatus:
    s.completion_time = s.completion_time or at
    return _set(
        s,
        o,
        at,
        "Succeeded",
        f"all {total} blocks done",
        Succeeded=(True, "Complete"),
        Failed=(False, "Complete"),
    )


def transitions(old: ThresholdJobStatus | None, new: ThresholdJobStatus) -> list[Event]:
    """The Events of going from `old` to `new`: one per transition (Planned, Blocked, each
    phase), in the order they happened."""
    events = []
    planned = condition(new, "Prepared")
    if planned and planned.status == "True" and not _is_true(old, "Prepared"):
        events.append(Event("Normal", "Planned", planned.message))
    blocked = condition(new, "Blocked")
    if blocked and blocked.status == "True" and not _is_true(old, "Blocked"):
        events.append(Event("Warning", "PodsCannotStart", blocked.message))
    if old is None or old.phase != new.phase:
        kind = "Warning" if new.phase == "Failed" else "Normal"
        events.append(Event(kind, new.phase, new.message))
    return events


def _is_true(status: ThresholdJobStatus | None, kind: str) -> bool:
    found = condition(status, kind)
    return found is not None and found.status == "True"
