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
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from threshold_worker.intervals import Run, blocks_run, count, format_runs, normalise, parse_runs
from threshold_worker.plan import Plan, partition_range

from . import attempts
from .api import (
    FINAL_PHASES,
    Attempt,
    BlockCounts,
    Condition,
    FailedRegion,
    FailureStatus,
    PartitionCounts,
    PlanStatus,
    RateStatus,
    Roi,
    Sample,
    ThresholdJobSpec,
    ThresholdJobStatus,
    Usage,
)
from .names import MAX_ATTEMPTS, job_name, selector, work_job_name
from .outputs import OUTPUT_HELD, WAITING, WAITING_REASON

MAX_INTERVAL_CHARS = 512
#: Failed regions listed in status.failures (the rest are counted).
MAX_REGIONS = 5
#: The rate is over the last RATE_WINDOW seconds of progress, kept as at most MAX_SAMPLES
#: (time, blocks done) samples.
RATE_WINDOW = 600
MAX_SAMPLES = 8
#: The reason of a retry that could not start (its Job refused): the job stays Failed.
RETRY_FAILED = "RetryFailed"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
Job = dict[str, Any]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime(TIME_FORMAT)


def seconds(at: str) -> float:
    """An RFC 3339 time (as the API server writes them, fractions allowed) as epoch seconds."""
    return dt.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def timestamp(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime(TIME_FORMAT)


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
        parts.append(f"{which} ({blocks_run(lo, hi)})")
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


def work_progress(
    work: Job | None, partitions: int, total_blocks: int, attempt: Attempt | None = None
) -> dict[str, Any]:
    """Counts and intervals (of partitions) from the work Job's status. A retry's Job runs
    only the attempt's partitions: its indexes are mapped to them, and the partitions it
    does not run completed before."""
    status = (work or {}).get("status") or {}
    runs = attempts.todo(attempt or Attempt(), partitions)
    ran = attempts.to_partitions(parse_runs(status.get("completedIndexes")), runs)
    failed = attempts.to_partitions(parse_runs(status.get("failedIndexes")), runs)
    before = attempts.subtract([(0, partitions - 1)], runs) if partitions else []
    done = normalise([*before, *ran])
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
            "completedIndexes": clip(format_runs(done)),
            "failedIndexes": clip(format_runs(failed)),
        },
        "failed_intervals": failed,
        "blocks_before": blocks_in(before, partitions, total_blocks),
        "active": status.get("active") or 0,
    }


def plan_geometry(plan: PlanStatus) -> Plan | None:
    """The worker's Plan, for block -> ROI arithmetic, when the prepare pod reported its
    geometry (older workers did not)."""
    if None in (plan.grid_shape, plan.grid_origin, plan.fit, plan.roi_voxels):
        return None
    assert plan.roi_voxels is not None and plan.grid_shape is not None
    return Plan(
        roi_begin=tuple(plan.roi_voxels.begin),
        roi_shape=tuple(plan.roi_voxels.shape),
        block_shape=tuple(plan.block_shape),
        grid_origin=tuple(plan.grid_origin or ()),
        grid_shape=tuple(plan.grid_shape),
        fit=plan.fit or "shrink",
        partitions=plan.partitions,
        fingerprint=plan.fingerprint,
    )


def block_rois(plan: PlanStatus, first: int, last: int) -> list[Roi]:
    """Blocks `first`..`last` as world-unit ROIs (at most 2 x dims - 1 boxes); none when the
    plan has no geometry."""
    geometry = plan_geometry(plan)
    if geometry is None or plan.roi is None or plan.voxel_size is None or plan.roi_voxels is None:
        return []
    rois = []
    for begin, end in geometry.run_boxes(first, last):
        offset = [
            o + (b - rb) * v
            for o, b, rb, v in zip(
                plan.roi.offset, begin, plan.roi_voxels.begin, plan.voxel_size, strict=True
            )
        ]
        shape = [(e - b) * v for b, e, v in zip(begin, end, plan.voxel_size, strict=True)]
        rois.append(Roi(offset=offset, shape=shape))
    return rois


@dataclass(frozen=True)
class PartitionFailure:
    """How one failed partition failed, from its newest pod: exit code, the worker's line,
    and the failed blocks the worker reported (`failures` of its termination message), if
    it did."""

    exit_code: int | None
    error: str
    regions: tuple[FailedRegion, ...] = ()
    blocks: int | None = None


def failure_status(
    plan: PlanStatus, failed: list[Run], details: dict[int, PartitionFailure]
) -> FailureStatus | None:
    """The first few failed regions, with ROIs, and how many partitions and blocks failed.
    A partition whose worker reported its failed blocks lists those; any other lists its
    whole block range."""
    if not failed:
        return None
    regions: list[FailedRegion] = []
    listed = 0
    for a, b in failed:
        for partition in range(a, b + 1):
            if len(regions) >= MAX_REGIONS:
                break
            listed += 1
            detail = details.get(partition)
            if detail is not None and detail.regions:
                regions.extend(detail.regions[: MAX_REGIONS - len(regions)])
                continue
            blocks = partition_range(partition, plan.partitions, plan.total_blocks)
            regions.append(
                FailedRegion(
                    partition=partition,
                    blocks=format_runs([(blocks.start, blocks.stop - 1)]),
                    rois=block_rois(plan, blocks.start, blocks.stop - 1),
                    exit_code=detail.exit_code if detail else None,
                    error=detail.error if detail else "",
                )
            )
    # Where a worker reported which of its partition's blocks failed, the others are done.
    blocks = blocks_in(failed, plan.partitions, plan.total_blocks)
    for partition, detail in details.items():
        if detail.blocks is not None:
            size = len(partition_range(partition, plan.partitions, plan.total_blocks))
            blocks -= size - min(detail.blocks, size)
    return FailureStatus(
        partitions=count(failed),
        blocks=blocks,
        regions=regions,
        more=count(failed) - listed,
    )


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
    how the first failed partition failed; `blocked` why pods of the running Job cannot start;
    `retry` the attempt a retry of a Failed ThresholdJob starts (its Job created this pass);
    `failed_partitions` how the first few failed partitions failed, and `usage` what the
    finished work Job's pods used, both read once the work Job finished; `waiting` whom
    the ThresholdJob waits for before it starts (outputs.py); `retry_helps` False when the
    failed partition found its output holding another job's result (no retry writes there).
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
    retry: Attempt | None = None
    failed_partitions: dict[int, PartitionFailure] | None = None
    usage: Usage | None = None
    waiting: str = ""
    retry_helps: bool = True


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post for a transition."""

    type: str  # Normal or Warning
    reason: str
    message: str


def derive(o: Observed, at: str) -> ThresholdJobStatus:
    """The status this observation means. A Succeeded or Failed ThresholdJob stays so; `at`
    is the time of new transitions and of the first pass that does not wait for another
    job's output (as a Job's startTime leaves out its time suspended)."""
    s = (o.old or ThresholdJobStatus()).model_copy(deep=True)
    s.observed_generation = o.generation
    if not o.waiting:
        s.start_time = s.start_time or at
    if s.phase in FINAL_PHASES and o.old is not None:
        if o.retry is None:  # never left but by a retry: the children may be gone (TTL)
            _acknowledge_retry(s, o)
            if o.failure is not None and o.failure.reason == RETRY_FAILED:
                s.message = f"the retry could not start: {o.failure.message}"
                if (failed := condition(s, "Failed")) is not None:  # says the same, as
                    s.conditions = set_condition(  # `kubectl describe` shows both
                        s.conditions, "Failed", True, failed.reason, s.message, o.generation, at
                    )
            return s
        s.attempt = o.retry
        s.completion_time, s.failures, s.rate, s.eta = None, None, None, None
        s.conditions = set_condition(
            s.conditions, "Failed", False, "Retrying", "", o.generation, at
        )
    elif o.spec is not None:
        _acknowledge_retry(s, o)  # a retry asked of a job that has not failed: nothing to do
    s.selector = selector(o.name)
    if o.failure is not None:
        return _failed(s, o, o.failure.reason, o.failure.message, at)
    assert o.spec is not None, "an observation without a failure has a spec"
    s.pool = o.spec.pool
    if not o.waiting:  # a waiting ThresholdJob has no Job yet
        s.jobs.prepare = job_name(o.name, "prepare")
    s.conditions = _blocked(s, o, at)
    if o.plan is None:
        return _preparing(s, o, at)
    return _working(s, o, o.plan, at)


def _acknowledge_retry(s: ThresholdJobStatus, o: Observed) -> None:
    """A spec.retry that starts no retry is still acted on: noted, so that a later
    failure does not start it unasked (`transitions` tells why nothing happened)."""
    if o.spec is not None and (o.spec.retry or 0) > s.attempt.retry:
        s.attempt.retry = o.spec.retry or 0


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


def _output_held(s: ThresholdJobStatus, o: Observed, at: str) -> None:
    """Its prepare Job exists, so the output was free when it was made (outputs.py): from
    now on other ThresholdJobs on that output wait for this one, suspended or not."""
    held = condition(s, WAITING)
    if held is None or held.status != "False" or held.reason != OUTPUT_HELD:
        s.conditions = set_condition(
            s.conditions, WAITING, False, OUTPUT_HELD, "", o.generation, at
        )


def _preparing(s: ThresholdJobStatus, o: Observed, at: str) -> ThresholdJobStatus:
    prep = o.prepare
    if job_condition(prep, "Failed"):
        return _failed(s, o, "PrepareFailed", o.prepare_error or "the prepare Job failed", at)
    if job_condition(prep, "Complete"):
        message = "the prepare pod finished without reporting a plan"
        return _failed(s, o, "PrepareFailed", message, at)
    if o.waiting:  # before anything else: a waiting ThresholdJob has created nothing
        return _set(s, o, at, "Pending", o.waiting, Waiting=(True, WAITING_REASON))
    if prep is not None:
        _output_held(s, o, at)
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
    s.jobs.work = work_job_name(o.name, s.attempt.number)
    work = o.work
    if work is None:
        if partitions and s.partitions.completed == partitions:
            return _succeeded(s, o, total, at)  # recorded, and the Job is gone: never rerun
        if _held(s, o, None, at, "the work Job") is not None:
            return s
        return _set(s, o, at, "Pending", "creating the work Job")
    progress = work_progress(work, partitions, total, s.attempt)
    s.blocks = BlockCounts(**progress["blocks"])
    s.partitions = PartitionCounts.model_validate(progress["partitions"])
    s.progress = f"{s.blocks.done}/{total}"
    s.failures = failure_status(plan, progress["failed_intervals"], o.failed_partitions or {}) or (
        s.failures if finished(work) else None
    )
    if finished(work):
        s.eta = None
        if o.usage is not None:
            before = s.usage or Usage()
            s.usage = Usage(
                pod_seconds=before.pod_seconds + o.usage.pod_seconds,
                pods=before.pods + o.usage.pods,
            )
    if job_condition(work, "Complete"):
        return _succeeded(s, o, total, at)
    if failed := job_condition(work, "Failed"):
        where = describe_partitions(progress["failed_intervals"], partitions, total)
        message = (
            f"{where} {o.partition_error or 'failed'}"
            if where
            else failed.get("message") or failed.get("reason") or "the work Job failed"
        )
        if s.attempt.number < MAX_ATTEMPTS and o.retry_helps:
            message += "; fix the cause, then bump spec.retry to rerun only what did not complete"
        return _failed(s, o, failed.get("reason") or "WorkFailed", message, at)
    if _held(s, o, work, at, "the work Job") is not None:
        s.rate = RateStatus() if s.rate is not None else None  # a pause is not a slow rate
        s.eta = None
        return s
    anchor = ((work.get("status") or {}).get("startTime"), progress["blocks_before"])
    _measure(s, plan, anchor, at)
    message = _with_blocked(
        f"{s.partitions.completed}/{partitions} partitions done, {progress['active']} running", o
    )
    return _set(s, o, at, "Running", message, Suspended=(False, "Running"))


def _measure(
    s: ThresholdJobStatus, plan: PlanStatus, anchor: tuple[str | None, int], at: str
) -> None:
    """Rate over the recent window and the estimated completion time. A sample is taken
    when the blocks done change (so a pass that sees no progress writes nothing); the
    first is the work Job's start, with what was done before it."""
    samples = list(s.rate.samples) if s.rate is not None else []
    if samples and s.blocks.done < samples[-1].blocks:  # a work Job made anew: start over
        samples = [Sample(time=anchor[0], blocks=anchor[1])] if anchor[0] else []
    elif s.rate is None and anchor[0]:
        samples.append(Sample(time=anchor[0], blocks=anchor[1]))
    if not samples or samples[-1].blocks != s.blocks.done:
        samples.append(Sample(time=at, blocks=s.blocks.done))
    last = seconds(samples[-1].time)
    while len(samples) > 2 and last - seconds(samples[1].time) >= RATE_WINDOW:
        samples.pop(0)
    samples = samples[-MAX_SAMPLES:]
    first = samples[0]
    span = last - seconds(first.time)
    rate = RateStatus(samples=samples)
    s.rate, s.eta = rate, None
    gained = samples[-1].blocks - first.blocks
    if span <= 0 or gained <= 0:
        return
    per_block = (plan.voxels or math.prod(plan.block_shape) * plan.total_blocks) / max(
        plan.total_blocks, 1
    )
    rate.blocks_per_second = round(gained / span, 3)
    rate.voxels_per_second = round(gained / span * per_block, 1)
    rate.window_seconds = int(span)
    left = plan.total_blocks - s.blocks.done
    eta = last + left * span / gained
    if left > 0 and eta >= seconds(at):  # one already past (pods stalled) is no estimate
        s.eta = timestamp(eta)


def _succeeded(s: ThresholdJobStatus, o: Observed, total: int, at: str) -> ThresholdJobStatus:
    s.completion_time = s.completion_time or at
    return _set(
        s,
        o,
        at,
        "Succeeded",
        f"all {total} blocks done" if total != 1 else "the block is done",
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
    if old is not None and new.attempt.number > old.attempt.number:
        left = attempts.size(new.attempt, new.plan.partitions if new.plan else 0)
        events.append(
            Event(
                "Normal",
                "Retrying",
                f"spec.retry {new.attempt.retry}: work Job {new.jobs.work} runs {left} "
                f"partition{'s' if left != 1 else ''} ({clip(new.attempt.partitions)}), the "
                f"{'ones' if left != 1 else 'one'} that did not complete; done blocks are "
                "skipped",
            )
        )
    elif old is not None and new.attempt.retry > old.attempt.retry:
        events.append(Event("Warning", "RetryIgnored", _why_no_retry(new)))
    elif (
        old is not None
        and old.jobs.work is not None
        and new.jobs.work == old.jobs.work
        and new.partitions.completed < old.partitions.completed
    ):  # a Job's completed indexes never shrink: this one was deleted and made anew
        events.append(
            Event(
                "Warning",
                "WorkJobRecreated",
                f"work Job {new.jobs.work} was deleted and has been made anew: its "
                f"{_partitions(old.partitions.completed)} completed before run again, "
                "skipping the blocks already done",
            )
        )
    if old is None or old.phase != new.phase:
        kind = "Warning" if new.phase == "Failed" else "Normal"
        events.append(Event(kind, new.phase, new.message))
    return events


def _partitions(n: int) -> str:
    return f"{n} partition{'s' if n != 1 else ''}"


def _why_no_retry(status: ThresholdJobStatus) -> str:
    asked = f"spec.retry {status.attempt.retry}: nothing retried"
    if status.phase == "Succeeded":
        return f"{asked}: every block is done"
    if status.phase != "Failed":
        return f"{asked}: it has not failed (bump spec.retry again once it has)"
    if status.plan is None:
        return f"{asked}: it failed before it was planned; fix the cause and create it again"
    if status.message.startswith("the retry could not start"):
        return f"{asked}: {status.message}"
    return f"{asked}: it has had {MAX_ATTEMPTS} work Jobs, the most; create it again"


def _is_true(status: ThresholdJobStatus | None, kind: str) -> bool:
    found = condition(status, kind)
    return found is not None and found.status == "True"
