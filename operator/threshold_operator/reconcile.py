"""Level-based reconciliation of one ThresholdJob.

Each pass looks at the world (the ThresholdJob and its two Jobs), creates what is
missing under deterministic names, nudges what may change (parallelism, suspend), and
derives the status from what it saw. It holds no state of its own, so a restarted
operator, a repeated event or two passes at once all converge on the same result.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from threshold_worker.errors import first_error

from .api import ThresholdJobSpec
from .catalog import ComputeContextSpec
from .jobs import BAD_INPUT_EXIT, Settings, prepare_job, work_job
from .kube import Kube, terminations
from .names import job_name, selector
from .status import (
    FINAL_PHASES,
    describe_shards,
    job_condition,
    now,
    set_condition,
    work_progress,
)

logger = logging.getLogger(__name__)


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
            "shards": report["shards"],
            "blockShape": report["block_shape"],
        }
    return None


def _shard_failure_detail(kube: Kube, namespace: str, job: dict[str, Any], shard: int) -> str:
    for code, message in terminations(kube, namespace, job["metadata"]["name"], shard):
        return f"; last error: {_last_line(message)} (exit code {code})"
    return ""


class Reconciler:
    def __init__(
        self, kube: Kube, catalog: dict[str, ComputeContextSpec], settings: Settings
    ) -> None:
        self.kube = kube
        self.catalog = catalog
        self.settings = settings

    def reconcile(self, body: dict[str, Any]) -> Outcome:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
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
            spec = ThresholdJobSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            return fail("InvalidSpec", first_error(e, "spec"))
        context = self.catalog.get(spec.compute_context)
        if context is None:
            known = ", ".join(sorted(self.catalog))
            return fail(
                "UnknownComputeContext",
                f"spec.computeContext: '{spec.compute_context}' is not in this cluster's catalog; "
                f"known: {known}",
            )
        status["computeContext"] = spec.compute_context
        jobs = status.setdefault("jobs", {})

        # Phase 1: prepare (validate, create the output, plan).
        plan = status.get("plan")
        if plan is None:
            prep_name = job_name(name, "prepare")
            jobs["prepare"] = prep_name
            prep = self.kube.get_job(namespace, prep_name)
            if prep is None:
                prep = self.kube.create_job(
                    namespace, prepare_job(body, spec, context, self.settings)
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
                f"{plan['totalBlocks']} blocks in {plan['shards']} shards, plan {plan['fingerprint']}",
                generation,
            )
            outcome.events.append(("Normal", "Planned", status["conditions"][-1]["message"]))

        # Phase 2: the Indexed work Job.
        total, shards = plan["totalBlocks"], plan["shards"]
        work_name = job_name(name, "work")
        jobs["work"] = work_name
        work = self.kube.get_job(namespace, work_name)
        if work is None:
            work = self.kube.create_job(
                namespace, work_job(body, spec, context, self.settings, shards, plan["fingerprint"])
            )
        else:
            self._sync(namespace, work, spec, shards)

        progress = work_progress(work, shards, total)
        status["blocks"] = progress["blocks"]
        status["shards"] = progress["shards"]
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
            where = describe_shards(progress["failed_intervals"], shards, total)
            detail = ""
            if progress["failed_intervals"]:
                detail = _shard_failure_detail(
                    self.kube, namespace, work, progress["failed_intervals"][0][0]
                )
            message = (
                f"{where} failed after {spec.retries.per_shard + 1} attempts{detail}"
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
                f"{progress['shards']['completed']}/{shards} shards done, {progress['active']} running"
            )
            status["conditions"] = set_condition(
                status["conditions"], "Suspended", False, "Running", "", generation
            )
        return self._events(outcome, old)

    def _sync(
        self, namespace: str, work: dict[str, Any], spec: ThresholdJobSpec, shards: int
    ) -> None:
        """Carry over what may change on a running ThresholdJob."""
        current = work.get("spec") or {}
        patch: dict[str, Any] = {}
        want = min(spec.parallelism, shards)
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
