"""Level-based reconciliation of one ThresholdJob.

Each pass looks at the world (the ThresholdJob and its two Jobs), creates what is
missing under deterministic names, nudges what may change (parallelism, suspend), and
derives the status from what it saw. It holds no state of its own, so a restarted
operator, a repeated event or two passes at once all converge on the same result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from threshold_worker.errors import first_error

from .api import KIND, ThresholdJobSpec
from .catalog import PoolSpec
from .jobs import BAD_INPUT_EXIT, Settings, prepare_job, work_job
from .kube import ApiRejected, Kube, Transient, terminations
from .names import job_name, selector
from .status import (
    FINAL_PHASES,
    describe_partitions,
    job_condition,
    now,
    set_condition,
    work_progress,
)

logger = logging.getLogger(__name__)


class NameTaken(Exception):
    """A child's name is held by an object that is not this ThresholdJob's: never retried."""


@dataclass
class Outcome:
    """What a pass decided: the new status and the Events to post for transitions."""

    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def _last_line(message: str) -> str:
    """The worker's one-line error, from a termination message (or log tail)."""
    return message.strip().splitlines()[-1].removeprefix("error: ")


def _prepare_failure(kube: Kube, namespace: str, job: dict[str, Any]) -> str:
    """The worker's own one-line message, from the prepare pod's termination message."""
    for code, message in terminations(kube, namespace, job["metadata"]["name"]):
        line = _last_line(message)
        return f"{line} (exit code {code})" if code not in (None, BAD_INPUT_EXIT) else line
    cond = job_condition(job, "Failed") or {}
    return cond.get("message") or "the prepare Job failed"


def _plan_from_pod(kube: Kube, namespace: str, job: dict[str, Any]) -> dict[str, Any] | None:
    for code, message in terminations(kube, namespace, job["metadata"]["name"]):
        if code != 0:
            continue
        try:
            report = json.loads(message)
        except json.JSONDecodeError:
            continue
        return {
            "fingerprint": report["fingerprint"],
            "totalBlocks": report["total_blocks"],
            "partitions": report["partitions"],
            "blockShape": report["block_shape"],
        }
    return None


def _partition_failure(kube: Kube, namespace: str, job: dict[str, Any], partition: int) -> str:
    """How a partition failed: its attempts and the worker's last line. Exit code 2 is never
    retried (the pod failure policy fails the index at once): say so, not "attempts"."""
    ended = list(terminations(kube, namespace, job["metadata"]["name"], partition))
    if not ended:
        return "failed"
    code, message = ended[0]
    if code == BAD_INPUT_EXIT:
        return f"failed: {_last_line(message)} (exit code 2: not retried, no retry can fix it)"
    tries = f"{len(ended)} attempt{'s' if len(ended) > 1 else ''}"
    return f"failed after {tries}; last error: {_last_line(message)} (exit code {code})"


class Reconciler:
    def __init__(self, kube: Kube, catalog: dict[str, PoolSpec], settings: Settings) -> None:
        self.kube = kube
        self.catalog = catalog
        self.settings = settings

    def reconcile(self, body: dict[str, Any]) -> Outcome:
        meta = body["metadata"]
        name = meta["name"]
        generation = meta.get("generation")
        old = dict(body.get("status") or {})
        status: dict[str, Any] = {k: v for k, v in old.items() if k != "kopf"}
        status.setdefault("conditions", [])
        status["observedGeneration"] = generation
        status.setdefault("startTime", now())
        outcome = Outcome(status)

        def fail(reason: str, message: str) -> Outcome:
            status["phase"] = "Failed"
            status["message"] = message
            status["conditions"] = set_condition(
                status["conditions"], "Failed", True, reason, message, generation
            )
            status["conditions"] = set_condition(
                status["conditions"], "Succeeded", False, reason, "", generation
            )
            status.setdefault("completionTime", now())
            return self._events(outcome, old)

        if old.get("phase") in FINAL_PHASES and old.get("observedGeneration") == generation:
            return Outcome(status)  # finished and unchanged: nothing to look at

        status["selector"] = selector(name)
        try:
            return self._phases(body, outcome, old, fail)
        except ApiRejected as e:  # permanent: retrying would get the same answer
            return fail("APIRejected", str(e))
        except NameTaken as e:
            return fail("JobNameTaken", str(e))

    def _phases(
        self,
        body: dict[str, Any],
        outcome: Outcome,
        old: dict[str, Any],
        fail: Callable[[str, str], Outcome],
    ) -> Outcome:
        """Validate, prepare, run: the pass proper (API errors surface as exceptions)."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        generation = meta.get("generation")
        status = outcome.status
        try:
            spec = ThresholdJobSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            return fail("InvalidSpec", first_error(e, "spec"))
        pool = self.catalog.get(spec.pool)
        if pool is None:
            known = ", ".join(sorted(self.catalog))
            return fail(
                "UnknownPool",
                f"spec.pool: '{spec.pool}' is not in this cluster's catalog; known: {known}",
            )
        status["pool"] = spec.pool
        jobs = status.setdefault("jobs", {})

        # Phase 1: prepare (validate, create the output, plan).
        plan = status.get("plan")
        if plan is None:
            jobs["prepare"] = job_name(name, "prepare")
            prep, _ = self._child(
                body, jobs["prepare"], lambda: prepare_job(body, spec, pool, self.settings)
            )
            if job_condition(prep, "Failed"):
                return fail("PrepareFailed", _prepare_failure(self.kube, namespace, prep))
            if not job_condition(prep, "Complete"):
                status["phase"] = "Preparing"
                status["message"] = "validating the input and planning blocks"
                status["conditions"] = set_condition(
                    status["conditions"],
                    "Prepared",
                    False,
                    "Preparing",
                    status["message"],
                    generation,
                )
                return self._events(outcome, old)
            plan = _plan_from_pod(self.kube, namespace, prep)
            if plan is None:
                return fail("PrepareFailed", "the prepare pod finished without reporting a plan")
            status["plan"] = plan
            status["conditions"] = set_condition(
                status["conditions"],
                "Prepared",
                True,
                "Planned",
                f"{plan['totalBlocks']} blocks in {plan['partitions']} partitions, plan "
                f"{plan['fingerprint']}",
                generation,
            )
            outcome.events.append(("Normal", "Planned", status["conditions"][-1]["message"]))

        # Phase 2: the Indexed work Job.
        total, partitions = plan["totalBlocks"], plan["partitions"]
        jobs["work"] = job_name(name, "work")
        work, created = self._child(
            body,
            jobs["work"],
            lambda: work_job(body, spec, pool, self.settings, partitions, plan["fingerprint"]),
        )
        if not created:
            self._sync(namespace, work, spec, partitions)

        progress = work_progress(work, partitions, total)
        status["blocks"] = progress["blocks"]
        status["partitions"] = progress["partitions"]
        status["progress"] = f"{progress['blocks']['done']}/{total}"

        if job_condition(work, "Complete"):
            status["phase"] = "Succeeded"
            status["message"] = f"all {total} blocks done"
            status["conditions"] = set_condition(
                status["conditions"], "Succeeded", True, "Complete", status["message"], generation
            )
            status["conditions"] = set_condition(
                status["conditions"], "Failed", False, "Complete", "", generation
            )
            status.setdefault("completionTime", now())
        elif failed := job_condition(work, "Failed"):
            where = describe_partitions(progress["failed_intervals"], partitions, total)
            message = (
                f"{where} "
                + _partition_failure(self.kube, namespace, work, progress["failed_intervals"][0][0])
                if where
                else failed.get("message") or failed.get("reason") or "the work Job failed"
            )
            return fail(failed.get("reason") or "WorkFailed", message)
        elif (work.get("spec") or {}).get("suspend"):
            status["phase"] = "Suspended" if spec.suspend else "Pending"
            status["message"] = (
                "suspended; set spec.suspend=false to resume"
                if spec.suspend
                else f"waiting for admission by Kueue queue '{spec.queue_name}'"
            )
            status["conditions"] = set_condition(
                status["conditions"], "Suspended", True, "Suspended", status["message"], generation
            )
        else:
            status["phase"] = "Running"
            status["message"] = (
                f"{progress['partitions']['completed']}/{partitions} partitions done, "
                f"{progress['active']} running"
            )
            status["conditions"] = set_condition(
                status["conditions"], "Suspended", False, "Running", "", generation
            )
        return self._events(outcome, old)

    def _child(
        self, body: dict[str, Any], name: str, build: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        """The Job of that name, created if missing (and whether it was); it must be this
        ThresholdJob's."""
        namespace = body["metadata"]["namespace"]
        job, created = self.kube.get_job(namespace, name), False
        if job is None:
            job, created = self.kube.create_job(namespace, build()), True
        owner = next(
            (r for r in job["metadata"].get("ownerReferences") or [] if r.get("controller")), {}
        )
        if owner.get("uid") == body["metadata"]["uid"]:
            return job, created
        if owner.get("kind") == KIND and owner.get("name") == body["metadata"]["name"]:
            raise Transient(  # the garbage collector is still deleting an earlier incarnation
                f"Job {namespace}/{name} of an earlier ThresholdJob of this name is being deleted"
            )
        held = f" (it belongs to {owner.get('kind')} {owner.get('name')})" if owner else ""
        raise NameTaken(
            f"Job {namespace}/{name} already exists and is not this ThresholdJob's{held}"
        )

    def _sync(
        self, namespace: str, work: dict[str, Any], spec: ThresholdJobSpec, partitions: int
    ) -> None:
        """Carry over what may change on a running ThresholdJob."""
        current = work.get("spec") or {}
        patch: dict[str, Any] = {}
        want = min(spec.parallelism, partitions)
        if current.get("parallelism") != want:
            patch["parallelism"] = want
        # With Kueue, the queue owns `suspend`; never fight it. Otherwise it is the user's.
        if not spec.queue_name and bool(current.get("suspend")) != spec.suspend:
            patch["suspend"] = spec.suspend
        if patch and not job_condition(work, "Complete") and not job_condition(work, "Failed"):
            self.kube.patch_job(namespace, work["metadata"]["name"], {"spec": patch})
            work.setdefault("spec", {}).update(patch)

    @staticmethod
    def _events(outcome: Outcome, old: dict[str, Any]) -> Outcome:
        phase, before = outcome.status.get("phase"), old.get("phase")
        if phase != before:
            kind = "Warning" if phase == "Failed" else "Normal"
            outcome.events.append((kind, phase or "Unknown", outcome.status.get("message", "")))
        return outcome
