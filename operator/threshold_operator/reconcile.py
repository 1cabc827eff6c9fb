"""One reconcile pass of one ThresholdJob: look, act, then derive the status.

A pass reads the world (the ThresholdJob as stored, its two Jobs, and pods only when a Job
failed or cannot start its pods), makes sure the Jobs exist under deterministic names and carry
the spec's parallelism and suspend (`_child` and `_sync`: the only writes to Jobs), and hands
what it saw to the pure `status.derive`. It holds no state of its own, so a restarted operator, a repeated
event or a pass done twice all converge on the same result.

Everything derived from the spec that cannot work (an invalid spec, an unknown pool, a base
directory no pod can reach, a prepare report that is not a plan) ends the ThresholdJob
Failed with the reason, as does an API refusal; only what may pass (`kube.Transient`)
escapes, to be retried.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from threshold_worker.errors import OutputTaken, PlanChanged, first_error
from threshold_worker.intervals import format_runs, nth, parse_runs

from . import attempts
from .api import (
    FINAL_PHASES,
    KIND,
    Attempt,
    FailedRegion,
    PlanStatus,
    Roi,
    ThresholdJobSpec,
    ThresholdJobStatus,
    Usage,
)
from .attempts import next_attempt
from .catalog import PoolSpec
from .jobs import (
    BAD_INPUT_EXIT,
    FAILED_BLOCKS_EXIT,
    Settings,
    controller_of,
    prepare_job,
    work_job,
)
from .kube import ApiRejected, Kube, Transient, termination, terminations
from .names import MAX_ATTEMPTS, job_name, work_job_name
from .outputs import Registry, waiting_message, writer
from .status import (
    MAX_REGIONS,
    RETRY_FAILED,
    Event,
    Failure,
    Job,
    Observed,
    PartitionFailure,
    block_rois,
    derive,
    finished,
    job_condition,
    now,
    seconds,
    suspended,
    transitions,
)
from .wording import CREATE_AGAIN, in_spec_terms, rerun_as, spec_error

logger = logging.getLogger(__name__)
#: The label the Job controller puts on each pod of an Indexed Job.
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
#: Worker errors no retry of the partition can mend (termination report `kind`).
NOT_RETRIED = {OutputTaken.__name__, PlanChanged.__name__}
#: A failed region's error line in status.failures is cut to this.
MAX_ERROR_CHARS = 300
#: Why a pod's image cannot be had (kubelet's waiting reasons): spec.image is to blame.
IMAGE_PULL = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
#: Why a pod cannot start, from its containers' waiting state (kubelet's reasons).
CANNOT_START = (*IMAGE_PULL, "CreateContainerConfigError", "CreateContainerError")


class NameTaken(Exception):
    """A child's name is held by an object that is not this ThresholdJob's: never retried."""


class OutputInUse(Exception):
    """Another ThresholdJob writes there and goes first (`outputs`): wait, creating nothing."""


class Unworkable(Exception):
    """Something derived from the spec cannot work: the ThresholdJob fails with `reason`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Outcome:
    """What a pass decided: the new status and the Events of its transitions."""

    status: ThresholdJobStatus
    events: list[Event] = field(default_factory=list)
    old: ThresholdJobStatus | None = None
    #: A Job of it has pods that are not ready, or none yet (`pods_pending`): look again
    #: after a while, as no watch event would tell that they cannot start.
    recheck: bool = False

    @property
    def changed(self) -> bool:
        return self.old is None or dump(self.old) != dump(self.status)


def dump(status: ThresholdJobStatus) -> dict[str, Any]:
    """The status as written: camelCase, and null for what is unset (a merge patch of it
    removes fields that went away)."""
    return status.model_dump(by_alias=True, mode="json")


def stored_status(raw: dict[str, Any] | None) -> ThresholdJobStatus | None:
    """The status as stored, None before the first pass. Fields an older operator kept there
    (kopf's progress) are left out; the strict schema prunes them on the next write."""
    if not raw:
        return None
    known = {f.alias or n for n, f in ThresholdJobStatus.model_fields.items()}
    try:
        return ThresholdJobStatus.model_validate({k: v for k, v in raw.items() if k in known})
    except ValidationError:
        logger.warning("unreadable status, derived anew: %s", raw)
        return None


def _last_line(message: str) -> str:
    """The worker's one-line error, from a termination message (or log tail)."""
    return message.strip().splitlines()[-1].removeprefix("error: ")


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        catalog: dict[str, PoolSpec],
        settings: Settings,
        outputs: Registry | None = None,
    ) -> None:
        self.kube = kube
        self.catalog = catalog
        self.settings = settings
        #: The outputs of every ThresholdJob: who waits for whom (outputs.py).
        self.outputs = outputs or Registry()

    def reconcile(self, body: dict[str, Any], at: Callable[[], str] = now) -> Outcome:
        """One pass over a ThresholdJob as read from the API server."""
        old = stored_status(body.get("status"))
        observed = self.observe(body, old)
        status = derive(observed, at())
        recheck = (
            pods_pending(observed.prepare) or pods_pending(observed.work) or bool(observed.waiting)
        )
        return Outcome(status, transitions(old, status), old, recheck)

    def give_up(self, body: dict[str, Any], message: str, at: Callable[[], str] = now) -> Outcome:
        """The ThresholdJob failed with `message`: what a pass ends in when the operator
        itself fails on it again and again (a bug), instead of a loop of retries."""
        old = stored_status(body.get("status"))
        meta = body["metadata"]
        failure = Failure("OperatorError", message)
        seen = Observed(meta["name"], meta.get("generation"), None, old, failure=failure)
        status = derive(seen, at())
        return Outcome(status, transitions(old, status), old)

    def observe(self, body: dict[str, Any], old: ThresholdJobStatus | None) -> Observed:
        """Read the world, and act on it: the Jobs are created and nudged here."""
        meta = body["metadata"]
        base = Observed(name=meta["name"], generation=meta.get("generation"), spec=None, old=old)
        try:
            spec = ThresholdJobSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            if old is not None and old.phase in FINAL_PHASES:
                return base
            return _failed(base, "InvalidSpec", spec_error(first_error(e, "spec")))
        seen = replace(base, spec=spec)
        try:
            if old is not None and old.phase in FINAL_PHASES:
                if retry_due(spec, old):
                    try:
                        return self._retry(body, spec, seen)
                    except (ValueError, Unworkable, ApiRejected, NameTaken) as e:
                        return _failed(seen, RETRY_FAILED, str(e))
                self._expire(body, spec, old, "prepare", "work")
                return seen
            spec.parameters()  # arrayStore resolved now: a base directory no pod can reach
            return self._observe(body, spec, seen)
        except ValueError as e:  # pydantic's too: a Job made from the spec that cannot be
            text = first_error(e) if isinstance(e, ValidationError) else str(e)
            return _failed(seen, "InvalidSpec", text)
        except Unworkable as e:
            return _failed(seen, e.reason, str(e))
        except ApiRejected as e:  # permanent: retrying would get the same answer
            return _failed(seen, "APIRejected", str(e))
        except NameTaken as e:
            return _failed(seen, "JobNameTaken", str(e))

    def _observe(self, body: dict[str, Any], spec: ThresholdJobSpec, seen: Observed) -> Observed:
        namespace = body["metadata"]["namespace"]
        old = seen.old
        plan = old.plan if old is not None else None
        found: dict[str, Any] = {}
        if plan is None:
            try:
                prepare = self._prepare(body, spec)
            except OutputInUse as e:  # nothing created: looked at again after a while
                return replace(seen, waiting=str(e))
            found["prepare"] = prepare
            if job_condition(prepare, "Complete"):
                plan = self._plan(namespace, prepare)
            elif job_condition(prepare, "Failed"):
                found["prepare_error"] = self._prepare_failure(namespace, prepare, spec)
            else:
                found["blocked"] = self._blocked(namespace, prepare)
        else:
            self._expire(body, spec, old, "prepare")  # its result, the plan, is recorded
        if plan is not None:
            attempt = old.attempt if old is not None else Attempt()
            work = self._work(body, spec, plan, old, attempt)
            found["work"] = work
            if finished(work):
                assert work is not None
                found.update(self._finished(namespace, work, attempt, plan, spec))
            else:
                found["blocked"] = self._blocked(namespace, work)
        return replace(seen, plan=plan, **found)

    def _retry(self, body: dict[str, Any], spec: ThresholdJobSpec, seen: Observed) -> Observed:
        """Retry a Failed ThresholdJob in place: the next attempt's work Job runs the
        partitions the last one did not complete (as the status recorded them, if it is
        gone)."""
        old = seen.old
        assert old is not None and old.plan is not None
        try:
            self._wait_for_others(
                body,
                spec,
                "once that one has finished, create this ThresholdJob again: a retry resumes "
                "only an output that is still this one's",
            )
        except OutputInUse as e:  # the status says the retry could not start, and why
            raise Unworkable(RETRY_FAILED, str(e)) from None
        namespace = body["metadata"]["namespace"]
        last = work_job_name(seen.name, old.attempt.number)
        job = self.kube.get_job(namespace, last)
        completed = None
        if job is not None and self._owned(body, job):
            completed = (job.get("status") or {}).get("completedIndexes") or ""
        done = old.partitions.completed_indexes
        attempt = next_attempt(old.attempt, old.plan.partitions, completed, spec.retry or 0, done)
        work = self._work(body, spec, old.plan, None, attempt)
        return replace(seen, plan=old.plan, work=work, retry=attempt)

    # -- acting: the Jobs --------------------------------------------------------------------

    def _wait_for_others(
        self, body: dict[str, Any], spec: ThresholdJobSpec, then: str = ""
    ) -> None:
        """OutputInUse if another ThresholdJob writing where this one writes goes first."""
        me = writer(body, spec)  # the spec this pass validated, not validated again
        other = self.outputs.ahead(me) if me is not None else None
        if other is not None:
            assert me is not None
            raise OutputInUse(waiting_message(me, other, then))

    def _pool(self, spec: ThresholdJobSpec) -> PoolSpec:
        """The node pool, looked up only when a Job is built: a catalog changed under a
        running ThresholdJob does not fail it."""
        pool = self.catalog.get(spec.pool)
        if pool is None:
            known = ", ".join(sorted(self.catalog))
            raise Unworkable(
                "UnknownPool",
                f"spec.pool: '{spec.pool}' is not in this cluster's catalog; known: {known}",
            )
        return pool

    def _prepare(self, body: dict[str, Any], spec: ThresholdJobSpec) -> Job | None:
        name = job_name(body["metadata"]["name"], "prepare")

        def build() -> Job:
            self._wait_for_others(body, spec)
            return prepare_job(body, spec, self._pool(spec), self.settings)

        job = self._child(body, spec, name, build)
        if job is not None:
            self._sync(body, spec, job, {})
        return job

    def _work(
        self,
        body: dict[str, Any],
        spec: ThresholdJobSpec,
        plan: PlanStatus,
        old: ThresholdJobStatus | None,
        attempt: Attempt,
    ) -> Job | None:
        name = work_job_name(body["metadata"]["name"], attempt.number)
        recorded = old is not None and old.jobs.work == name and old.plan is not None
        if recorded and plan.partitions and old.partitions.completed == plan.partitions:
            # Every partition's completion is recorded: the Job is not made again if gone.
            return self.kube.get_job(body["metadata"]["namespace"], name)
        job = self._child(
            body,
            spec,
            name,
            lambda: work_job(
                body,
                spec,
                self._pool(spec),
                self.settings,
                plan.partitions,
                plan.fingerprint,
                attempt,
            ),
        )
        if job is not None:
            size = attempts.size(attempt, plan.partitions)
            self._sync(body, spec, job, {"parallelism": min(spec.parallelism, size)})
        return job

    def _child(
        self, body: dict[str, Any], spec: ThresholdJobSpec, name: str, build: Callable[[], Job]
    ) -> Job | None:
        """The Job of that name, created if missing, unless a queued ThresholdJob is held
        back (nothing enters a Kueue queue while suspended); it must be this one's."""
        namespace = body["metadata"]["namespace"]
        job = self.kube.get_job(namespace, name)
        if job is None:
            if spec.queue_name and spec.suspend:
                return None
            job = self.kube.create_job(namespace, build())
        owner = controller_of(job)
        if owner.get("uid") == body["metadata"]["uid"]:
            return job
        if owner.get("kind") == KIND and owner.get("name") == body["metadata"]["name"]:
            raise Transient(  # the garbage collector is still deleting an earlier incarnation
                f"Job {namespace}/{name} of an earlier ThresholdJob of this name is being deleted"
            )
        held = f" (it belongs to {owner.get('kind')} {owner.get('name')})" if owner else ""
        raise NameTaken(
            f"Job {namespace}/{name} already exists and is not this ThresholdJob's{held}"
        )

    def _sync(
        self, body: dict[str, Any], spec: ThresholdJobSpec, job: Job, want: dict[str, Any]
    ) -> None:
        """Carry over what may change on a running ThresholdJob: `want` and, unless Kueue
        owns it (a queue), `suspend`. A finished Job is left as it is."""
        if finished(job):
            return
        current = job.get("spec") or {}
        patch = {k: v for k, v in want.items() if current.get(k) != v}
        if not spec.queue_name and suspended(job) != spec.suspend:
            patch["suspend"] = spec.suspend
        if patch:
            namespace = body["metadata"]["namespace"]
            job.update(self.kube.patch_job(namespace, job["metadata"]["name"], {"spec": patch}))

    def _expire(self, body: dict[str, Any], spec: ThresholdJobSpec, old: Any, *roles: str) -> None:
        """ttlSecondsAfterFinished on finished Jobs whose result the status holds (the
        plan, the outcome): only then may the TTL controller delete them."""
        ttl = spec.ttl_seconds_after_finished
        if ttl is None:
            return
        namespace = body["metadata"]["namespace"]
        for role in roles:
            recorded = getattr(old.jobs, role, None)
            job = self.kube.get_job(namespace, recorded) if recorded else None
            if job is None or not finished(job) or not self._owned(body, job):
                continue
            if (job.get("spec") or {}).get("ttlSecondsAfterFinished") != ttl:
                self.kube.patch_job(namespace, recorded, {"spec": {"ttlSecondsAfterFinished": ttl}})

    @staticmethod
    def _owned(body: dict[str, Any], job: Job) -> bool:
        """This ThresholdJob controls the Job (as `_child` requires of the Jobs it uses)."""
        return controller_of(job).get("uid") == body["metadata"]["uid"]

    # -- reading pods ------------------------------------------------------------------------

    def _plan(self, namespace: str, job: Job) -> PlanStatus | None:
        """The plan the prepare pod reported in its termination message (None: no report)."""
        for code, message in terminations(self.kube.job_pods(namespace, job["metadata"]["name"])):
            if code != 0:
                continue
            try:
                report = json.loads(message)
                fields = {n: report[n] for n in PlanStatus.model_fields if n in report}
                return PlanStatus.model_validate(fields)
            except (ValueError, TypeError, ValidationError) as e:
                detail = first_error(e) if isinstance(e, ValidationError) else str(e)
                raise Unworkable(
                    "PrepareFailed",
                    f"the prepare pod's report is not a plan ({detail}): {message[:200]}",
                ) from None
        return None

    def _prepare_failure(self, namespace: str, job: Job, spec: ThresholdJobSpec) -> str:
        """The worker's own one-line message, from the prepare pod's termination message."""
        for code, message in terminations(self.kube.job_pods(namespace, job["metadata"]["name"])):
            line = rerun_as(in_spec_terms(_last_line(message), spec), CREATE_AGAIN)
            return f"{line} (exit code {code})" if code not in (None, BAD_INPUT_EXIT) else line
        cond = job_condition(job, "Failed") or {}
        return cond.get("message") or "the prepare Job failed"

    def _finished(
        self, namespace: str, job: Job, attempt: Attempt, plan: PlanStatus, spec: ThresholdJobSpec
    ) -> dict[str, Any]:
        """What a finished work Job's pods tell, from one list of them: the compute they
        used, and how the first few failed partitions failed."""
        pods = self.kube.job_pods(namespace, job["metadata"]["name"])
        by_index: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:  # oldest first
            by_index.setdefault(_index(pod), []).append(pod)
        runs = attempts.todo(attempt, plan.partitions)
        failed: dict[int, PartitionFailure] = {}
        error = ""
        retry_helps = True
        for first, last in parse_runs((job.get("status") or {}).get("failedIndexes")):
            for index in range(first, min(last, first + MAX_REGIONS) + 1):
                if len(failed) >= MAX_REGIONS:
                    break
                ended = terminations(by_index.get(str(index), []))
                if not ended:
                    continue
                partition = nth(runs, index)
                report = worker_report(ended[0][1])
                line = rerun_as(in_spec_terms(report.line, spec), "")  # the status says how
                failed[partition] = _partition_failure(
                    partition, ended[0][0], report, line, plan, spec
                )
                if not error:
                    error = _attempts_message(ended, line)
                    retry_helps = report.kind not in NOT_RETRIED
        return {
            "failed_partitions": failed,
            "partition_error": error or "failed",
            "retry_helps": retry_helps,
            "usage": _usage(pods),
        }

    def _blocked(self, namespace: str, job: Job | None) -> str:
        """Why pods of a running Job cannot start, if they cannot: a container waiting on its
        image or its configuration, or the Job controller's pod creation refused by the API
        server (its FailedCreate Event). Read only when the Job has pods that are not ready,
        or none at all."""
        if not pods_pending(job):
            return ""
        assert job is not None
        status = job.get("status") or {}
        active, ready = status.get("active") or 0, status.get("ready") or 0
        if active > ready:
            for pod in self.kube.job_pods(namespace, job["metadata"]["name"]):
                if reason := _cannot_start(pod):
                    if reason.startswith(IMAGE_PULL):  # spec.image is immutable
                        reason += (
                            "; the image cannot be changed on an existing ThresholdJob: delete "
                            "it and create it again with an image the nodes can pull (spec.image)"
                        )
                    return f"pod {pod['metadata']['name']} cannot start: {reason}"
        elif active == 0:
            refused = self.kube.job_events(namespace, job, "FailedCreate")
            if refused:
                return f"the Job controller cannot create its pods: {refused[-1].get('message')}"
        return ""


def retry_due(spec: ThresholdJobSpec, old: ThresholdJobStatus) -> bool:
    """A retry is asked (spec.retry above what was acted on) of a ThresholdJob that failed
    after it was planned, and it may have another work Job."""
    return (
        old.phase == "Failed"
        and old.plan is not None
        and (spec.retry or 0) > old.attempt.retry
        and old.attempt.number < MAX_ATTEMPTS
    )


def _index(pod: dict[str, Any]) -> str:
    return (pod["metadata"].get("labels") or {}).get(INDEX_LABEL, "")


def _attempts_message(ended: list[tuple[int | None, str]], line: str) -> str:
    """How a partition failed: its attempts and the worker's last `line` (in the spec's
    terms). Exit code 2 is never retried (the pod failure policy fails the index at once):
    say so, not "attempts"."""
    code = ended[0][0]
    if code == BAD_INPUT_EXIT:
        return f"failed: {line} (exit code 2: not retried, the pod would fail the same way)"
    if code == FAILED_BLOCKS_EXIT:
        return f"failed: {line} (exit code 3: the partition's other blocks are done)"
    tries = f"{len(ended)} attempt{'s' if len(ended) > 1 else ''}"
    return f"failed after {tries}; last error: {line} (exit code {code})"


@dataclass(frozen=True)
class WorkerReport:
    """A termination message, read once: the worker's one-line error, its `failures`
    report if any, and the kind (class name) of its error if told."""

    line: str
    failures: dict[str, Any] | None = None
    kind: str = ""


def worker_report(message: str) -> WorkerReport:
    """A termination message: plain text (the worker's last line, or the log tail), or a
    JSON object with an optional `error` line, `failures` and `kind`."""
    try:
        doc = json.loads(message)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return WorkerReport(_last_line(message))
    failures = doc.get("failures")
    failures = failures if isinstance(failures, dict) else None
    line = str(doc.get("error") or "")
    if not line and failures:
        records = failures.get("records")
        if isinstance(records, list) and records and isinstance(records[0], dict):
            line = str(records[0].get("error") or "")
    kind = str(doc.get("kind") or "")
    return WorkerReport(_last_line(line) if line else "failed", failures, kind)


def _partition_failure(
    partition: int,
    code: int | None,
    worker: WorkerReport,
    line: str,
    plan: PlanStatus,
    spec: ThresholdJobSpec,
) -> PartitionFailure:
    """A failed partition as its newest pod tells it (`line`: its error in the spec's
    terms). Records the worker reports are read leniently (both `exitCode` and `exit_code`,
    `roi` or `rois`, `blocks` as runs or `first`/`last`); one that makes no sense is left
    out, never fails the pass."""
    line = line[:MAX_ERROR_CHARS]
    report = worker.failures
    regions = []
    for record in (report or {}).get("records") or []:
        region = _region(partition, record, code, plan, spec)
        if region is not None:
            regions.append(region)
    blocks = (report or {}).get("count", (report or {}).get("failed_blocks"))
    return PartitionFailure(code, line, tuple(regions), blocks if isinstance(blocks, int) else None)


def _region(
    partition: int, record: Any, code: int | None, plan: PlanStatus, spec: ThresholdJobSpec
) -> FailedRegion | None:
    if not isinstance(record, dict):
        return None
    try:
        if "blocks" in record:
            runs = parse_runs(str(record["blocks"]))
        else:
            runs = [(int(record["first"]), int(record["last"]))]
        if not runs or any(not 0 <= a <= b < plan.total_blocks for a, b in runs):
            return None
        given = record.get("rois") or ([record["roi"]] if record.get("roi") else [])
        rois = [Roi.model_validate(r) for r in given][:16]
        exit_code = record.get("exitCode", record.get("exit_code", code))
        return FailedRegion(
            partition=partition,
            blocks=format_runs(runs),
            rois=rois or block_rois(plan, runs[0][0], runs[-1][1]),
            exit_code=int(exit_code) if exit_code is not None else None,
            error=in_spec_terms(_last_line(str(record.get("error") or "")), spec)[:MAX_ERROR_CHARS],
        )
    except (KeyError, TypeError, ValueError, ValidationError):
        return None


def _usage(pods: list[dict[str, Any]]) -> Usage:
    """Pod-seconds: the worker container's run time, from start to finish, of each pod
    that ran (whole seconds, as the kubelet reports them)."""
    total, ran = 0.0, 0
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (status.get("state") or {}).get("terminated") or {}
            if term.get("startedAt") and term.get("finishedAt"):
                total += max(0.0, seconds(term["finishedAt"]) - seconds(term["startedAt"]))
                ran += 1
    return Usage(pod_seconds=round(total), pods=ran)


def pods_pending(job: Job | None) -> bool:
    """A Job that runs (not finished, not suspended) with pods that are not ready, or none
    yet. Only then can pods be stuck without the Job changing: an image that cannot be
    pulled or a pod the API server refuses changes no Job status, so no watch event tells of
    it. Every other change of a running ThresholdJob is an event of it or of its Jobs."""
    if job is None or finished(job) or suspended(job):
        return False
    status = job.get("status") or {}
    active, ready = status.get("active") or 0, status.get("ready") or 0
    return active > ready or active == 0


def _cannot_start(pod: dict[str, Any]) -> str:
    if termination(pod)[0] is not None:
        return ""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in CANNOT_START:
            detail = waiting.get("message")
            return f"{waiting['reason']}: {detail}" if detail else waiting["reason"]
    return ""


def _failed(seen: Observed, reason: str, message: str) -> Observed:
    """`seen` (only what the pass read before it acted) failing with the reason."""
    return replace(seen, failure=Failure(reason, message))
