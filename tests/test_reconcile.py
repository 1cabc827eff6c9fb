"""The reconciler without a server: `status.derive` (pure) table-tested for every phase
transition, and `reconcile.Reconciler` / `handlers.Passes` driven against `FakeKube`, an
in-memory stand-in of `kube.Kube` (no HTTP), through a ThresholdJob's whole life."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kube_validation import validate_create
from threshold_operator.api import (
    Attempt,
    FailedRegion,
    PlanStatus,
    ThresholdJobSpec,
    ThresholdJobStatus,
    Usage,
)
from threshold_operator.catalog import load_catalog
from threshold_operator.handlers import BUG_ATTEMPTS, OperatorConfig, Passes
from threshold_operator.jobs import Settings
from threshold_operator.kube import ApiRejected, Transient
from threshold_operator.reconcile import Reconciler, dump
from threshold_operator.status import (
    Failure,
    Observed,
    PartitionFailure,
    derive,
    transitions,
)

T0, T1 = "2025-01-01T00:00:00Z", "2025-01-01T00:05:00Z"
UID = "uid-tj"
PLAN = PlanStatus(fingerprint="f" * 16, total_blocks=12, partitions=4, block_shape=[16, 32, 32])
BASE_SPEC = {
    "inputContainer": "/data/a.zarr",
    "inputDataset": "raw",
    "outputContainer": "/data/a.zarr",
    "outputDataset": "mask",
    "partitions": 4,
    "parallelism": 2,
}


def spec(**extra: Any) -> ThresholdJobSpec:
    return ThresholdJobSpec.model_validate({**BASE_SPEC, **extra})


def job(*conditions: str, suspend: bool = False, reason: str = "", **status: Any) -> dict[str, Any]:
    """A Job as the API server returns it, its conditions True (with `reason`)."""
    conds = [{"type": c, "status": "True", "reason": reason} for c in conditions]
    return {
        "metadata": {"name": "j", "uid": "uid-j"},
        "spec": {"suspend": suspend},
        "status": {**status, "conditions": conds},
    }


def old(phase: str, plan: PlanStatus | None = None, **extra: Any) -> ThresholdJobStatus:
    return ThresholdJobStatus.model_validate({"phase": phase, "plan": plan, **extra})


# --- derive: every phase transition ---------------------------------------------------------

#: id -> (observation, phase, message or the start of it, (condition, status, reason) or None)
DERIVE = {
    "new-Pending": (Observed("tj", 1, spec()), "Pending", "creating the prepare Job", None),
    "Pending-Preparing": (
        Observed("tj", 1, spec(), old("Pending"), prepare=job(active=1)),
        "Preparing",
        "validating the input and planning blocks",
        ("Prepared", "False", "Preparing"),
    ),
    "Preparing-blocked": (
        Observed(
            "tj", 1, spec(), old("Preparing"), prepare=job(active=1), blocked="pod x cannot start"
        ),
        "Preparing",
        "validating the input and planning blocks; pod x cannot start",
        ("Blocked", "True", "PodsCannotStart"),
    ),
    "Pending-Suspended": (
        Observed("tj", 1, spec(suspend=True), old("Pending"), prepare=job(suspend=True)),
        "Suspended",
        "suspended; set spec.suspend=false to resume",
        ("Suspended", "True", "Suspended"),
    ),
    "queued-held-Suspended": (
        Observed("tj", 1, spec(queueName="q", suspend=True)),
        "Suspended",
        "suspended before it was queued; set spec.suspend=false to queue it",
        ("Suspended", "True", "Suspended"),
    ),
    "queued-prepare-Pending": (
        Observed("tj", 1, spec(queueName="q"), old("Pending"), prepare=job(suspend=True)),
        "Pending",
        "waiting for admission by Kueue queue 'q' (the prepare Job)",
        ("Suspended", "True", "Queued"),
    ),
    "Preparing-Failed": (
        Observed(
            "tj", 1, spec(), old("Preparing"), prepare=job("Failed"), prepare_error="no input"
        ),
        "Failed",
        "no input",
        ("Failed", "True", "PrepareFailed"),
    ),
    "Preparing-Failed-no-plan": (
        Observed("tj", 1, spec(), old("Preparing"), prepare=job("Complete")),
        "Failed",
        "the prepare pod finished without reporting a plan",
        ("Failed", "True", "PrepareFailed"),
    ),
    "Preparing-Pending-work": (
        Observed("tj", 1, spec(), old("Preparing"), plan=PLAN, prepare=job("Complete")),
        "Pending",
        "creating the work Job",
        ("Prepared", "True", "Planned"),
    ),
    "Preparing-Running": (
        Observed("tj", 1, spec(), old("Preparing"), plan=PLAN, work=job(active=2)),
        "Running",
        "0/4 partitions done, 2 running",
        ("Suspended", "False", "Running"),
    ),
    "queued-work-Pending": (
        Observed("tj", 1, spec(queueName="q"), old("Preparing"), PLAN, work=job(suspend=True)),
        "Pending",
        "waiting for admission by Kueue queue 'q' (the work Job)",
        ("Suspended", "True", "Queued"),
    ),
    "Running-Suspended": (
        Observed("tj", 2, spec(suspend=True), old("Running", PLAN), PLAN, work=job(suspend=True)),
        "Suspended",
        "suspended; set spec.suspend=false to resume",
        ("Suspended", "True", "Suspended"),
    ),
    "Suspended-Running": (
        Observed("tj", 3, spec(), old("Suspended", PLAN), PLAN, work=job(active=1)),
        "Running",
        "0/4 partitions done, 1 running",
        ("Suspended", "False", "Running"),
    ),
    "Running-Succeeded": (
        Observed(
            "tj",
            1,
            spec(),
            old("Running", PLAN),
            PLAN,
            work=job("Complete", completedIndexes="0-3"),
        ),
        "Succeeded",
        "all 12 blocks done",
        ("Succeeded", "True", "Complete"),
    ),
    "Running-Failed": (
        Observed(
            "tj",
            1,
            spec(),
            old("Running", PLAN),
            PLAN,
            work=job("Failed", reason="FailedIndexes", completedIndexes="0,2-3", failedIndexes="1"),
            partition_error="failed after 4 attempts; last error: boom (exit code 1)",
        ),
        "Failed",
        "partition 1 (blocks 3-5) failed after 4 attempts; last error: boom (exit code 1); "
        "fix the cause, then bump spec.retry to rerun only what did not complete",
        ("Failed", "True", "FailedIndexes"),
    ),
    "refused-Failed": (
        Observed("tj", 1, spec(), failure=Failure("APIRejected", "the API server refused")),
        "Failed",
        "the API server refused",
        ("Failed", "True", "APIRejected"),
    ),
    "recorded-and-gone-Succeeded": (  # ttlSecondsAfterFinished took the work Job
        Observed(
            "tj",
            1,
            spec(),
            old("Running", PLAN, partitions={"total": 4, "completed": 4}),
            PLAN,
            work=None,
        ),
        "Succeeded",
        "all 12 blocks done",
        ("Succeeded", "True", "Complete"),
    ),
    "Succeeded-stays": (
        Observed("tj", 1, spec(), old("Succeeded", PLAN, message="all 12 blocks done"), PLAN),
        "Succeeded",
        "all 12 blocks done",
        None,
    ),
    "Failed-Running-by-a-retry": (
        Observed(
            "tj",
            2,
            spec(retry=1),
            old("Failed", PLAN, message="boom"),
            PLAN,
            work=job(active=1),
            retry=Attempt(number=2, retry=1, partitions="1"),
        ),
        "Running",
        "3/4 partitions done, 1 running",  # partitions 0, 2 and 3 completed before
        ("Failed", "False", "Retrying"),
    ),
    "Failed-stays": (
        Observed("tj", 1, spec(), old("Failed", PLAN, message="boom"), PLAN, work=job("Complete")),
        "Failed",
        "boom",
        None,
    ),
}


@pytest.mark.parametrize("case", DERIVE)
def test_derive_decides_each_phase_transition(case):
    observed, phase, message, cond = DERIVE[case]
    before = copy.deepcopy(observed)
    status = derive(observed, T1)
    assert observed == before  # pure: nothing it was given is changed
    assert (status.phase, status.message) == (phase, message)
    if cond is not None:
        found = {c.type: (c.status, c.reason) for c in status.conditions}
        assert found[cond[0]] == cond[1:], found
    assert derive(observed, T1) == status  # and repeatable


def test_every_phase_is_reached_and_left_as_the_table_says():
    """The table covers every phase as a target, and every phase but the final ones as a
    source: no transition is untested."""
    from threshold_operator.api import FINAL_PHASES, PHASES

    reached = {phase for _, phase, _, _ in DERIVE.values()}
    left = {o.old.phase for o, _, _, _ in DERIVE.values() if o.old is not None}
    assert reached == set(PHASES)
    assert set(PHASES) - set(FINAL_PHASES) <= left


def test_transitions_are_told_once():
    """Events go with changes only: the same status derived again tells nothing."""
    observed = Observed("tj", 1, spec(), old("Preparing"), PLAN, work=job(active=2))
    new = derive(observed, T1)
    told = transitions(observed.old, new)
    assert [(e.type, e.reason) for e in told] == [("Normal", "Planned"), ("Normal", "Running")]
    assert transitions(new, derive(Observed("tj", 1, spec(), new, PLAN, work=job()), T1)) == []
    failed = derive(Observed("tj", 1, spec(), failure=Failure("X", "bad")), T0)
    assert [(e.type, e.reason, e.message) for e in transitions(None, failed)] == [
        ("Warning", "Failed", "bad")
    ]


def test_times_and_generation():
    first = derive(Observed("tj", 1, spec()), T0)
    assert first.start_time == T0 and first.completion_time is None
    done = derive(
        Observed("tj", 2, spec(), first, PLAN, work=job("Complete", completedIndexes="0-3")), T1
    )
    assert (done.start_time, done.completion_time, done.observed_generation) == (T0, T1, 2)
    assert dump(done)["completionTime"] == T1 and "completion_time" not in dump(done)


# --- the Reconciler against a fake Kube -----------------------------------------------------


class FakeKube:
    """`kube.Kube` in memory, for one namespace: Jobs, their pods, Events, ThresholdJobs.

    Strict where the reconciler relies on it: a Job is created only if kube_validation (the
    server's rules) accepts it, else ApiRejected 422; creating an existing name returns the
    stored Job, as Kube.create_job does after a 409; patching a missing Job is Transient, as
    Kube.patch_job makes a 404; a status write with a stale resourceVersion is a Conflict.
    Not emulated: the Job controller (tests set a Job's status), label and field selectors
    beyond job-name and completion index, and anything of pods but their termination.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, list[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.refuse_create: str | None = None
        self.fail_reads: Exception | None = None

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_job", name))
        found = self.jobs.get(name)
        return copy.deepcopy(found) if found else None

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        self.calls.append(("create_job", name))
        if name in self.jobs:
            return copy.deepcopy(self.jobs[name])
        causes = validate_create("jobs", manifest)
        if causes or self.refuse_create:
            raise ApiRejected(
                f"create Job {namespace}/{name}", 422, "Invalid", str(causes or self.refuse_create)
            )
        stored = copy.deepcopy(manifest)
        stored["metadata"]["uid"] = f"uid-{name}"
        stored["status"] = {}
        self.jobs[name] = stored
        return copy.deepcopy(stored)

    def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch_job", name))
        if name not in self.jobs:
            raise Transient(f"could not patch Job {namespace}/{name}: it was deleted")
        self.jobs[name]["spec"].update(patch["spec"])
        return copy.deepcopy(self.jobs[name])

    def job_pods(self, namespace: str, job: str, index: int | None = None) -> list[dict[str, Any]]:
        self.calls.append(("job_pods", job))
        pods = self.pods.get(job, [])
        if index is not None:
            key = "batch.kubernetes.io/job-completion-index"
            pods = [p for p in pods if p["metadata"]["labels"].get(key) == str(index)]
        return copy.deepcopy(pods)

    def job_events(self, namespace: str, job: dict[str, Any], reason: str) -> list[dict[str, Any]]:
        self.calls.append(("job_events", job["metadata"]["name"]))
        return []

    def get_threshold_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_threshold_job", name))
        if self.fail_reads is not None:
            raise self.fail_reads
        found = self.objects.get(name)
        return copy.deepcopy(found) if found else None

    def patch_status(
        self, namespace: str, name: str, resource_version: str, status: dict[str, Any]
    ) -> None:
        from threshold_operator.kube import Conflict

        self.calls.append(("patch_status", name))
        obj = self.objects[name]
        if obj["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(f"ThresholdJob {name} changed")
        obj["status"] = {k: v for k, v in status.items() if v is not None}
        obj["metadata"]["resourceVersion"] = str(int(resource_version) + 1)

    def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        self.calls.append(("create_event", event["reason"]))
        if all(e["metadata"]["name"] != event["metadata"]["name"] for e in self.events):
            self.events.append(event)  # a 409 for a name already there, ignored as Kube does

    # what the test does, as the Job controller and the kubelet would
    def finish_pod(
        self,
        job: str,
        code: int,
        message: str,
        index: int | None = None,
        ran: tuple[str, str] | None = None,
    ) -> None:
        """A terminated pod; `ran`: its container's (startedAt, finishedAt)."""
        labels = {"job-name": job}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
        terminated = {"exitCode": code, "message": message}
        if ran is not None:
            terminated.update(startedAt=ran[0], finishedAt=ran[1])
        pod = {
            "metadata": {"name": f"{job}-{len(self.pods.get(job, []))}", "labels": labels},
            "status": {"containerStatuses": [{"state": {"terminated": terminated}}]},
        }
        self.pods.setdefault(job, []).append(pod)

    def set_status(self, job: str, *conditions: str, **status: Any) -> None:
        conds = [{"type": c, "status": "True"} for c in conditions]
        self.jobs[job]["status"] = {**status, "conditions": conds}


def body(kube: FakeKube, **extra: Any) -> dict[str, Any]:
    """A ThresholdJob in the fake's store (as read back: with status once written)."""
    obj = {
        "apiVersion": "blockwise.dev/v1alpha1",
        "kind": "ThresholdJob",
        "metadata": {
            "name": "tj",
            "namespace": "default",
            "uid": UID,
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": {**BASE_SPEC, **extra},
    }
    kube.objects["tj"] = obj
    return obj


def reconciler(kube: FakeKube) -> Reconciler:
    return Reconciler(kube, load_catalog(None), Settings())  # type: ignore[arg-type]


def passes(kube: FakeKube) -> Passes:
    config = OperatorConfig(interval=5.0, retry_backoff=1.0)
    return Passes(kube, reconciler(kube), config)  # type: ignore[arg-type]


PLAN_REPORT = (
    '{"fingerprint":"ffffffffffffffff","total_blocks":12,"partitions":4,"block_shape":[16,32,32]}'
)


def test_a_whole_life_pass_by_pass():
    """Each pass: the Jobs it creates, the phase, and a second pass that changes nothing."""
    kube = FakeKube()
    body(kube)
    run = passes(kube)
    key = ("default", "tj")

    def phase() -> str:
        return kube.objects["tj"]["status"]["phase"]

    assert run.run(key) == 5.0 and phase() == "Preparing"
    assert (
        sorted(kube.jobs) == ["tj-prepare"] and kube.jobs["tj-prepare"]["spec"]["suspend"] is False
    )
    kube.calls.clear()
    run.run(key)  # nothing changed: no write, no Event, no Job; no pod yet, so its Events
    assert [c for c, _ in kube.calls] == ["get_threshold_job", "get_job", "job_events"]

    kube.finish_pod("tj-prepare", 0, PLAN_REPORT)
    kube.set_status("tj-prepare", "Complete", succeeded=1)
    run.run(key)
    assert phase() == "Running" and sorted(kube.jobs) == ["tj-prepare", "tj-work"]
    work = kube.jobs["tj-work"]["spec"]
    assert (work["completions"], work["parallelism"]) == (4, 2)
    assert kube.objects["tj"]["status"]["plan"]["fingerprint"] == "f" * 16

    kube.objects["tj"]["spec"]["parallelism"] = 3
    run.run(key)
    assert kube.jobs["tj-work"]["spec"]["parallelism"] == 3

    kube.set_status("tj-work", "Complete", completedIndexes="0-3", succeeded=4)
    assert run.run(key) is None  # finished: looked at again only on an event
    assert phase() == "Succeeded"
    reasons = [e["reason"] for e in kube.events]
    assert reasons == ["Preparing", "Planned", "Running", "Succeeded"]
    kube.calls.clear()
    assert run.run(key) is None
    assert [c for c, _ in kube.calls] == ["get_threshold_job"]  # no Job read, no write


def test_only_pods_that_are_not_ready_bring_a_timed_pass():
    """A pass asks to be run again after `interval` only while a Job has pods that are not
    ready or none yet (they may never start, and that changes no Job); a Job whose pods all
    run, a suspended ThresholdJob and a finished one wait for the next watch event."""
    kube = FakeKube()
    body(kube)
    run = passes(kube)
    key = ("default", "tj")
    assert run.run(key) == 5.0  # the prepare Job was just made: no pod yet
    kube.set_status("tj-prepare", active=1, ready=0)
    assert run.run(key) == 5.0  # its pod is pending: it may be stuck on its image
    kube.set_status("tj-prepare", active=1, ready=1)
    assert run.run(key) is None  # it runs: its end is a Job event
    kube.finish_pod("tj-prepare", 0, PLAN_REPORT)
    kube.set_status("tj-prepare", "Complete", succeeded=1)
    assert run.run(key) == 5.0  # the work Job was just made
    kube.set_status("tj-work", active=2, ready=2, completedIndexes="0", succeeded=1)
    assert run.run(key) is None
    assert kube.objects["tj"]["status"]["phase"] == "Running"
    kube.set_status("tj-work", active=2, ready=1, completedIndexes="0-1", succeeded=2)
    assert run.run(key) == 5.0
    kube.objects["tj"]["spec"]["suspend"] = True
    assert run.run(key) is None  # the work Job is suspended now: nothing runs
    assert kube.jobs["tj-work"]["spec"]["suspend"] is True
    assert kube.objects["tj"]["status"]["phase"] == "Suspended"


@pytest.mark.parametrize(
    "reason,advised",
    [
        ("ImagePullBackOff", True),
        ("ErrImagePull", True),
        ("InvalidImageName", True),
        ("ErrImageNeverPull", True),
        ("CreateContainerConfigError", False),
        ("CreateContainerError", False),
    ],
)
def test_a_pod_that_cannot_pull_its_image_says_what_to_do(reason, advised):
    """spec.image is immutable: the remedy for an image the nodes cannot pull is a new
    ThresholdJob, and the status says so; a pod that cannot start for another reason is
    told no such thing."""
    kube = FakeKube()
    body(kube, image="bad/image:1")
    run = passes(kube)
    run.run(("default", "tj"))
    waiting = {"reason": reason, "message": 'kubelet\'s detail on "bad/image:1"'}
    kube.pods["tj-prepare"] = [
        {
            "metadata": {"name": "tj-prepare-x7k2p", "labels": {"job-name": "tj-prepare"}},
            "status": {"containerStatuses": [{"state": {"waiting": waiting}}]},
        }
    ]
    kube.set_status("tj-prepare", active=1, ready=0)
    assert run.run(("default", "tj")) == 5.0
    status = kube.objects["tj"]["status"]
    assert status["phase"] == "Preparing"
    advice = (
        "; the image cannot be changed on an existing ThresholdJob: delete it and create it "
        "again with an image the nodes can pull (spec.image)"
    )
    assert status["message"].endswith(
        f'pod tj-prepare-x7k2p cannot start: {reason}: kubelet\'s detail on "bad/image:1"'
        + (advice if advised else "")
    )


def test_suspended_creates_the_prepare_job_suspended_and_a_queue_holds_everything():
    kube = FakeKube()
    outcome = reconciler(kube).reconcile(body(kube, suspend=True), at=lambda: T0)
    assert outcome.status.phase == "Suspended"
    assert kube.jobs["tj-prepare"]["spec"]["suspend"] is True  # nothing runs, not even prepare

    kube = FakeKube()
    outcome = reconciler(kube).reconcile(body(kube, queueName="q", suspend=True))
    assert outcome.status.phase == "Suspended" and kube.jobs == {}  # nothing enters the queue

    kube = FakeKube()
    outcome = reconciler(kube).reconcile(body(kube, queueName="q"))
    assert outcome.status.phase == "Pending" and kube.jobs["tj-prepare"]["spec"]["suspend"] is True
    kube.jobs["tj-prepare"]["spec"]["suspend"] = False  # Kueue admits it
    reconciler(kube).reconcile(kube.objects["tj"])
    assert kube.jobs["tj-prepare"]["spec"]["suspend"] is False  # and the operator leaves it so
    assert ("patch_job", "tj-prepare") not in kube.calls


def test_a_child_name_held_by_another_owner_fails_the_job():
    kube = FakeKube()
    kube.jobs["tj-prepare"] = {
        "metadata": {"name": "tj-prepare", "ownerReferences": []},
        "spec": {},
        "status": {},
    }
    outcome = reconciler(kube).reconcile(body(kube))
    assert outcome.status.phase == "Failed"
    assert outcome.status.message == (
        "Job default/tj-prepare already exists and is not this ThresholdJob's"
    )


def test_a_failed_prepare_pod_is_told_in_the_specs_fields():
    """The prepare pod's one line names the worker's field (input_dataset); the status names
    the spec's (inputDataset), whose value the user wrote."""
    kube = FakeKube()
    body(kube, inputDataset="nope")
    run = passes(kube)
    run.run(("default", "tj"))
    kube.finish_pod(
        "tj-prepare", 2, "error: input_dataset: no array 'nope' in container /data/a.zarr"
    )
    kube.set_status("tj-prepare", "Failed", failed=1)
    run.run(("default", "tj"))
    status = kube.objects["tj"]["status"]
    assert status["phase"] == "Failed"
    assert status["message"] == "spec.inputDataset: no array 'nope' in container /data/a.zarr"


def test_a_refused_create_fails_the_job_with_the_servers_message():
    kube = FakeKube()
    kube.refuse_create = "exceeded quota"
    outcome = reconciler(kube).reconcile(body(kube))
    assert outcome.status.phase == "Failed"
    assert outcome.status.message.endswith("(422 Invalid): exceeded quota")
    assert {c.type: c.reason for c in outcome.status.conditions}["Failed"] == "APIRejected"


def test_the_fake_refuses_a_job_the_server_would_refuse():
    kube = FakeKube()
    with pytest.raises(ApiRejected, match="422"):
        kube.create_job("default", {"metadata": {"name": "Bad_Name"}, "spec": {}})


def test_a_job_deleted_between_read_and_patch_is_retried():
    """The 404 of a patch (the Job went away since it was read) is transient."""
    kube = FakeKube()
    reconciler(kube).reconcile(body(kube))
    kube.objects["tj"]["spec"]["suspend"] = True
    real_get = kube.get_job

    def get_then_vanish(namespace: str, name: str) -> dict[str, Any] | None:
        found = real_get(namespace, name)
        kube.jobs.pop(name, None)
        return found

    kube.get_job = get_then_vanish  # type: ignore[method-assign]
    with pytest.raises(Transient, match="deleted"):
        reconciler(kube).reconcile(kube.objects["tj"])


def test_ttl_is_set_only_once_the_result_is_recorded():
    kube = FakeKube()
    run = passes(kube)
    body(kube, ttlSecondsAfterFinished=60)
    run.run(("default", "tj"))
    assert "ttlSecondsAfterFinished" not in kube.jobs["tj-prepare"]["spec"]
    kube.finish_pod("tj-prepare", 0, PLAN_REPORT)
    kube.set_status("tj-prepare", "Complete", succeeded=1)
    run.run(("default", "tj"))  # the plan is read in this pass, and written at its end
    assert "ttlSecondsAfterFinished" not in kube.jobs["tj-prepare"]["spec"]
    run.run(("default", "tj"))  # now it is in the status
    assert kube.jobs["tj-prepare"]["spec"]["ttlSecondsAfterFinished"] == 60
    assert "ttlSecondsAfterFinished" not in kube.jobs["tj-work"]["spec"]
    kube.set_status("tj-work", "Complete", completedIndexes="0-3", succeeded=4)
    run.run(("default", "tj"))
    run.run(("default", "tj"))
    assert kube.jobs["tj-work"]["spec"]["ttlSecondsAfterFinished"] == 60
    del kube.jobs["tj-work"], kube.jobs["tj-prepare"]  # the TTL controller deletes them
    run.run(("default", "tj"))
    assert kube.objects["tj"]["status"]["phase"] == "Succeeded"


def test_a_repeated_pass_posts_no_second_event():
    """Two passes that read the same ThresholdJob (a duplicate watch event, a pass done
    again after a lost status write) tell the same transition under the same Event name."""
    kube = FakeKube()
    stale = body(kube)
    run = passes(kube)
    run.run(("default", "tj"))
    first = [e["metadata"]["name"] for e in kube.events]
    outcome = reconciler(kube).reconcile(stale)  # what a second pass on the old read sees
    for event in outcome.events:
        run._post(stale, event, "")
    assert [e["metadata"]["name"] for e in kube.events] == first


def test_an_unexpected_error_ends_in_a_failed_status_not_a_loop():
    kube = FakeKube()
    body(kube)
    run = passes(kube)

    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("spec")

    run.reconciler.reconcile = broken  # type: ignore[method-assign]
    delays = [run.run(("default", "tj")) for _ in range(BUG_ATTEMPTS)]
    assert all(d is not None for d in delays[:-1]) and delays[-1] is None
    status = kube.objects["tj"]["status"]
    assert status["phase"] == "Failed"
    assert status["message"].startswith(
        f"the operator failed on this ThresholdJob {BUG_ATTEMPTS} times in a row (KeyError: "
    )
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Failed"] == "OperatorError"
    assert [e["reason"] for e in kube.events][-1] == "Failed"


def test_a_transient_error_is_retried_with_back_off_and_never_fails_the_job():
    kube = FakeKube()
    body(kube)
    run = passes(kube)
    kube.fail_reads = Transient("no answer")
    delays = [run.run(("default", "tj")) for _ in range(BUG_ATTEMPTS + 3)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert "status" not in kube.objects["tj"]


# --- failures, retries in place, rate and usage ---------------------------------------------

#: A plan with its geometry, as a prepare pod reports it: 12 blocks of 16x32x32 voxels over a
#: 48x64x64 ROI at voxel size (8, 4, 4), offset (80, 40, 0); 4 partitions of 3 blocks.
GEOMETRY = PlanStatus.model_validate(
    {
        **PLAN.model_dump(),
        "grid_shape": [3, 2, 2],
        "grid_origin": [0, 0, 0],
        "fit": "shrink",
        "roi": {"offset": [80, 40, 0], "shape": [384, 256, 256]},
        "roi_voxels": {"begin": [0, 0, 0], "shape": [48, 64, 64]},
        "voxel_size": [8, 4, 4],
        "voxels": 48 * 64 * 64,
    }
)


def test_failures_list_the_failed_regions_with_their_rois():
    """Each failed partition is a region: the blocks the worker reported in its termination
    message when it did, else the partition's blocks, as world-unit ROIs either way."""
    reported = FailedRegion(partition=1, blocks="4", exit_code=3, error="chunk damaged")
    observed = Observed(
        "tj",
        1,
        spec(),
        old("Running", GEOMETRY),
        GEOMETRY,
        work=job("Failed", reason="FailedIndexes", completedIndexes="0", failedIndexes="1-3"),
        failed_partitions={
            1: PartitionFailure(3, "chunk damaged", (reported,)),
            2: PartitionFailure(1, "storage down"),
        },
    )
    failures = derive(observed, T1).failures
    assert failures is not None
    assert (failures.partitions, failures.blocks, failures.more) == (3, 9, 0)
    assert [(r.partition, r.blocks, r.exit_code, r.error) for r in failures.regions] == [
        (1, "4", 3, "chunk damaged"),
        (2, "6-8", 1, "storage down"),
        (3, "9-11", None, ""),  # not read (no pod told): its blocks all the same
    ]
    # Blocks 6-8 (z, y, x in a 3x2x2 grid): 6 and 7 are z 16-31, y 32-63, x 0-63; 8 is
    # z 32-47, y 0-31, x 0-31. World: offset (80, 40, 0) + voxel x (8, 4, 4).
    rois = [(r.offset, r.shape) for r in failures.regions[1].rois]
    assert rois == [
        ([208.0, 168.0, 0.0], [128.0, 128.0, 256.0]),
        ([336.0, 40.0, 0.0], [128.0, 128.0, 128.0]),
    ]
    assert [(r.offset, r.shape) for r in failures.regions[2].rois] == [
        ([336.0, 40.0, 128.0], [128.0, 128.0, 128.0]),  # block 9
        ([336.0, 168.0, 0.0], [128.0, 128.0, 256.0]),  # blocks 10-11
    ]
    assert derive(observed, T1).failures == failures  # pure, repeatable


def test_failures_stay_bounded_at_a_million_blocks():
    plan = PlanStatus(
        fingerprint="f" * 16, total_blocks=10**6, partitions=10**5, block_shape=[8] * 3
    )
    every_other = ",".join(str(i) for i in range(0, 10**5, 2))
    observed = Observed(
        "tj",
        1,
        spec(),
        old("Running", plan),
        plan,
        work=job("Failed", reason="FailedIndexes", failedIndexes=every_other),
        failed_partitions={i: PartitionFailure(1, "x" * 300) for i in range(0, 10, 2)},
    )
    status = derive(observed, T1)
    assert status.failures is not None
    assert (status.failures.partitions, status.failures.more) == (50000, 50000 - 5)
    assert status.failures.blocks == 500000 and len(status.failures.regions) == 5
    assert len(json.dumps(dump(status))) < 100 * 1024


def test_a_retry_leaves_failed_only_by_the_retry_and_says_why_else():
    failed = old("Failed", PLAN, message="boom")
    stays = derive(Observed("tj", 2, spec(retry=1), failed, PLAN), T1)
    assert stays.phase == "Failed" and stays.attempt.retry == 1  # acted on: not again later
    succeeded = old("Succeeded", PLAN, message="all 12 blocks done")
    done = derive(Observed("tj", 2, spec(retry=1), succeeded, PLAN), T1)
    (told,) = transitions(succeeded, done)
    assert (told.type, told.reason) == ("Warning", "RetryIgnored")
    assert told.message == "spec.retry 1: nothing retried: every block is done"
    running = old("Running", PLAN)
    seen = derive(Observed("tj", 2, spec(retry=1), running, PLAN, work=job(active=1)), T1)
    assert seen.phase == "Running" and seen.attempt.retry == 1
    told = {e.reason: e for e in transitions(running, seen)}
    assert "it has not failed" in told["RetryIgnored"].message
    retried = derive(
        Observed(
            "tj",
            2,
            spec(retry=1),
            failed,
            PLAN,
            work=job(active=1),
            retry=Attempt(number=2, retry=1, partitions="1"),
        ),
        T1,
    )
    assert (retried.jobs.work, retried.completion_time) == ("tj-work-2", None)
    told_after = [e for e in transitions(failed, retried) if e.reason != "Planned"]
    assert [(e.reason, e.message) for e in told_after] == [
        (
            "Retrying",
            "spec.retry 1: work Job tj-work-2 runs 1 partition (1), the one that did not "
            "complete; done blocks are skipped",
        ),
        ("Running", "3/4 partitions done, 1 running"),
    ]


def test_rate_and_eta_come_from_the_blocks_done_over_time():
    """The first sample is the work Job's start; a pass that sees no progress adds none (so
    writes nothing); the rate is over the samples of the last RATE_WINDOW seconds."""
    t = ["2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z", "2025-01-01T00:02:00Z"]
    status = old("Running", GEOMETRY)
    running = job(active=2, startTime=t[0])
    status = derive(Observed("tj", 1, spec(), status, GEOMETRY, work=running), t[0])
    assert status.rate is not None and status.rate.blocks_per_second is None and status.eta is None
    after = job(active=2, startTime=t[0], completedIndexes="0")  # 3 of 12 blocks in 60 s
    status = derive(Observed("tj", 1, spec(), status, GEOMETRY, work=after), t[1])
    assert status.rate is not None
    assert (status.rate.blocks_per_second, status.rate.voxels_per_second) == (0.05, 0.05 * 16384)
    assert status.eta == "2025-01-01T00:04:00Z"  # 9 blocks left at 0.05/s
    again = derive(Observed("tj", 1, spec(), status, GEOMETRY, work=after), t[2])
    assert again == status.model_copy(update={"observed_generation": 1})  # nothing to write
    paused = derive(
        Observed("tj", 2, spec(suspend=True), status, GEOMETRY, work=job(suspend=True)), t[2]
    )
    assert paused.eta is None and paused.rate is not None and paused.rate.samples == []
    # Stalled past it (pods pending: the timer's pass sees no progress): no ETA in the past.
    stalled = derive(
        Observed("tj", 1, spec(), status, GEOMETRY, work=after), "2025-01-01T00:05:00Z"
    )
    assert stalled.eta is None and stalled.rate == status.rate


def test_a_work_job_deleted_while_it_ran_is_told_and_its_rate_starts_over():
    """Its completed indexes went with it: the Job made anew runs them again (done blocks
    are skipped). The status said nothing, and the rate mixed the two Jobs' counts."""
    t = ["2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z", "2025-01-01T00:02:00Z"]
    before = job(active=2, startTime=t[0], completedIndexes="0-1")  # 6 of 12 blocks
    status = derive(
        Observed("tj", 1, spec(), old("Running", GEOMETRY), GEOMETRY, work=before), t[1]
    )
    assert status.partitions.completed == 2 and status.rate is not None
    anew = job(active=2, startTime=t[2])
    after = derive(Observed("tj", 1, spec(), status, GEOMETRY, work=anew), t[2])
    assert [(e.type, e.reason) for e in transitions(status, after)] == [
        ("Warning", "WorkJobRecreated")
    ]
    assert "its 2 partitions completed before run again" in transitions(status, after)[0].message
    assert after.rate is not None and [x.time for x in after.rate.samples] == [t[2]]
    assert after.eta is None
    assert transitions(after, after) == []


def test_usage_adds_up_the_pods_of_each_finished_work_job():
    first = derive(
        Observed(
            "tj",
            1,
            spec(),
            old("Running", PLAN),
            PLAN,
            work=job("Failed", failedIndexes="1", completedIndexes="0,2-3"),
            usage=Usage(pod_seconds=40, pods=5),
        ),
        T1,
    )
    assert first.usage == Usage(pod_seconds=40, pods=5)
    retried = derive(
        Observed(
            "tj",
            2,
            spec(retry=1),
            first,
            PLAN,
            work=job(active=1),
            retry=Attempt(number=2, retry=1, partitions="1"),
        ),
        T1,
    )
    done = derive(
        Observed(
            "tj",
            2,
            spec(retry=1),
            retried,
            PLAN,
            work=job("Complete", completedIndexes="0"),
            usage=Usage(pod_seconds=9, pods=1),
        ),
        T1,
    )
    assert done.phase == "Succeeded" and done.usage == Usage(pod_seconds=49, pods=6)
    assert (done.blocks.done, done.partitions.completed_indexes) == (12, "0-3")


def failed_run(kube: FakeKube, run: Passes) -> None:
    """Plan, then a work Job whose partition 1 fails for good: its pod reports the failed
    blocks in its termination message, the way the worker's ledger summary does."""
    key = ("default", "tj")
    run.run(key)
    kube.finish_pod("tj-prepare", 0, PLAN_REPORT)
    kube.set_status("tj-prepare", "Complete", succeeded=1)
    run.run(key)
    for index in (0, 2, 3):
        kube.finish_pod("tj-work", 0, "", index, ran=(T0, "2025-01-01T00:00:10Z"))
    report = {
        "error": "error: 1 blocks failed and are recorded in the failure ledger",
        "failures": {
            "count": 1,
            "records": [
                {
                    "blocks": "4",
                    "roi": {"offset": [16, 32, 0], "shape": [16, 32, 32]},
                    "exitCode": 3,
                    "error": "input_dataset: raw/c/1/0/0 cannot be decoded",
                }
            ],
        },
    }
    # Exit 3 (blocks recorded as failed) fails the index at once: one pod.
    kube.finish_pod("tj-work", 3, json.dumps(report), 1, ran=(T0, "2025-01-01T00:00:05Z"))
    kube.set_status(
        "tj-work", "Failed", completedIndexes="0,2-3", failedIndexes="1", succeeded=3, failed=1
    )
    run.run(key)


def test_a_failed_job_is_retried_in_place_running_only_what_did_not_complete():
    kube = FakeKube()
    body(kube)
    run = passes(kube)
    key = ("default", "tj")
    failed_run(kube, run)
    status = kube.objects["tj"]["status"]
    assert status["phase"] == "Failed"
    assert status["message"].startswith(
        "partition 1 (blocks 3-5) failed: 1 blocks failed and are recorded in the failure ledger "
        "(exit code 3: the partition's other blocks are done)"
    )
    assert status["failures"]["regions"] == [
        {
            "partition": 1,
            "blocks": "4",
            "rois": [{"offset": [16.0, 32.0, 0.0], "shape": [16.0, 32.0, 32.0]}],
            "exitCode": 3,
            "error": "spec.inputDataset: raw/c/1/0/0 cannot be decoded",  # in spec terms
        }
    ]
    assert status["usage"] == {"podSeconds": 35, "pods": 4}
    kube.calls.clear()
    assert run.run(key) is None and [c for c, _ in kube.calls] == ["get_threshold_job"]

    kube.objects["tj"]["spec"]["retry"] = 1  # kubectl patch tj tj --type merge -p ...
    kube.objects["tj"]["metadata"]["generation"] = 2
    assert run.run(key) == 5.0
    status = kube.objects["tj"]["status"]
    assert status["phase"] == "Running" and status["jobs"]["work"] == "tj-work-2"
    assert status["attempt"] == {"number": 2, "retry": 1, "partitions": "1"}
    retry = kube.jobs["tj-work-2"]["spec"]
    assert (retry["completions"], retry["parallelism"]) == (1, 1)
    assert retry["template"]["spec"]["containers"][0]["args"][-2:] == ["--partition-list", "1"]
    assert kube.jobs["tj-work"]["status"]["failedIndexes"] == "1"  # left as it was
    assert [e["reason"] for e in kube.events][-2:] == ["Retrying", "Running"]

    kube.finish_pod("tj-work-2", 0, "", 0, ran=(T0, "2025-01-01T00:00:03Z"))
    kube.set_status("tj-work-2", "Complete", completedIndexes="0", succeeded=1)
    assert run.run(key) is None
    status = kube.objects["tj"]["status"]
    assert status["phase"] == "Succeeded" and status["blocks"]["done"] == 12
    assert status["partitions"]["completedIndexes"] == "0-3" and "failures" not in status
    assert status["usage"] == {"podSeconds": 38, "pods": 5}
    kube.objects["tj"]["spec"]["retry"] = 2  # nothing failed: told, and nothing made
    run.run(key)
    assert sorted(kube.jobs) == ["tj-prepare", "tj-work", "tj-work-2"]
    assert kube.events[-1]["reason"] == "RetryIgnored"


def test_a_retry_whose_job_is_gone_runs_what_the_status_says_did_not_complete():
    """The TTL controller took the failed Job: the partitions the status recorded as done
    (0, 2-3) are left out; only 1 runs again."""
    kube = FakeKube()
    body(kube)
    run = passes(kube)
    failed_run(kube, run)
    assert kube.objects["tj"]["status"]["partitions"]["completedIndexes"] == "0,2-3"
    del kube.jobs["tj-work"]
    kube.objects["tj"]["spec"]["retry"] = 1
    run.run(("default", "tj"))
    assert kube.jobs["tj-work-2"]["spec"]["completions"] == 1
    assert kube.objects["tj"]["status"]["attempt"]["partitions"] == "1"


def test_a_retry_whose_job_is_gone_and_whose_record_was_cut_runs_all_it_ran():
    """A completedIndexes too long for the status was cut ("..."): not trusted, what the
    last Job ran is run again (done blocks are skipped by the worker), never less."""
    from threshold_operator.api import Attempt
    from threshold_operator.attempts import next_attempt

    cut = "0,2,4,6,8..."
    again = next_attempt(Attempt(), 10, None, 1, cut)
    assert again.partitions == "0-9"
    assert next_attempt(Attempt(), 10, None, 1, "0,2-9").partitions == "1"


def test_a_retry_refused_by_the_server_leaves_the_job_failed_saying_why():
    kube = FakeKube()
    body(kube)
    run = passes(kube)
    failed_run(kube, run)
    kube.refuse_create = "exceeded quota"
    kube.objects["tj"]["spec"]["retry"] = 1
    run.run(("default", "tj"))
    status = kube.objects["tj"]["status"]
    assert status["phase"] == "Failed" and status["attempt"]["retry"] == 1
    assert status["message"].startswith("the retry could not start: the API server refused")
    assert kube.events[-1]["reason"] == "RetryIgnored"


def test_the_attempts_arithmetic():
    from threshold_operator.attempts import coarsen, next_attempt, subtract, to_partitions
    from threshold_worker.intervals import count, format_runs, parse_runs

    runs = [(2, 4), (7, 7), (10, 12)]  # a retry's Job: indexes 0-6 run these partitions
    assert to_partitions([(1, 3), (5, 6)], runs) == [(3, 4), (7, 7), (11, 12)]
    assert subtract([(0, 9)], [(2, 3), (5, 5), (9, 12)]) == [(0, 1), (4, 4), (6, 8)]
    scattered = [(i, i) for i in range(0, 10**5, 2)]
    coarse = coarsen(scattered, 4096)
    assert len(format_runs(coarse)) <= 4096 and not subtract(scattered, coarse)  # a superset
    first = next_attempt(Attempt(), 10**5, format_runs([(i, i) for i in range(1, 10**5, 2)]), 1)
    assert first.number == 2 and len(first.partitions) <= 4096
    assert count(parse_runs(first.partitions)) >= 5 * 10**4
    again = next_attempt(Attempt(number=2, retry=1, partitions="2-4,7,10-12"), 20, "0-2,6", 2)
    assert again.partitions == "7,10-11"  # indexes 3-5: partitions 7, 10 and 11


def test_the_cost_of_a_pass_is_flat_at_a_million_blocks():
    """10^6 blocks in 10^5 partitions, half of them done, a quarter failed: a pass makes the
    same few requests as for 12 blocks, and the status stays far below 100 KiB."""

    def life(total: int, partitions: int) -> tuple[list[list[str]], int, int]:
        kube = FakeKube()
        body(kube, partitions=partitions)
        run = passes(kube)
        key = ("default", "tj")
        report = {**json.loads(PLAN_REPORT), "total_blocks": total, "partitions": partitions}
        calls: list[list[str]] = []
        largest = 0

        def step() -> None:
            nonlocal largest
            kube.calls.clear()
            run.run(key)
            calls.append([c for c, _ in kube.calls])
            largest = max(largest, len(json.dumps(kube.objects["tj"].get("status") or {})))

        step()  # create the prepare Job
        kube.finish_pod("tj-prepare", 0, json.dumps(report))
        kube.set_status("tj-prepare", "Complete", succeeded=1)
        step()  # plan, create the work Job
        done = format_runs((i, i) for i in range(0, partitions, 2))
        failed = format_runs((i, i) for i in range(1, partitions // 2, 2))
        kube.set_status("tj-work", completedIndexes=done, failedIndexes=failed, active=4, ready=4)
        step()  # running
        for index in range(1, 11, 2):
            kube.finish_pod("tj-work", 1, "error: storage down", index)
        kube.set_status("tj-work", "Failed", completedIndexes=done, failedIndexes=failed)
        step()  # failed
        kube.objects["tj"]["spec"]["retry"] = 1
        step()  # retried
        args = kube.jobs["tj-work-2"]["spec"]["template"]["spec"]["containers"][0]["args"]
        return calls, largest, len(json.dumps(args))

    from threshold_worker.intervals import format_runs

    small, _, _ = life(12, 4)
    large, largest, args = life(10**6, 10**5)
    assert large == small, (large, small)
    assert large[2:] == [
        ["get_threshold_job", "get_job", "patch_status"],
        ["get_threshold_job", "get_job", "job_pods", "create_event", "patch_status"],
        ["get_threshold_job", "get_job", "get_job", "create_job", "create_event",
         "create_event", "patch_status"],
    ]  # fmt: skip
    assert largest < 100 * 1024 and args < 8 * 1024


def test_the_metrics_export_the_rate_of_a_running_job():
    from prometheus_client import REGISTRY

    from threshold_operator import metrics

    def sample(metric: str) -> float | None:
        return REGISTRY.get_sample_value(metric, {"namespace": "default", "name": "rated"})

    running = {"phase": "Running", "rate": {"blocksPerSecond": 0.05, "voxelsPerSecond": 819.2}}
    metrics.observe("default", "rated", running)
    assert sample("threshold_job_blocks_per_second") == 0.05
    assert sample("threshold_job_voxels_per_second") == 819.2
    metrics.observe("default", "rated", {**running, "phase": "Succeeded"})
    assert sample("threshold_job_blocks_per_second") == 0.0
    metrics.forget("default", "rated")
    assert sample("threshold_job_blocks_per_second") is None


def test_the_prepare_pods_viewer_link_is_in_the_status_plan():
    """For data on object stores the prepare pod reports a neuroglancer link; kubectl
    describe shows it in status.plan.viewer (the operator reads no storage itself)."""
    kube = FakeKube()
    body(kube)
    run = passes(kube)
    key = ("default", "tj")
    run.run(key)
    link = "https://neuroglancer-demo.appspot.com/#!%7B%22layers%22%3A%5B%5D%7D"
    report = json.loads(PLAN_REPORT) | {"viewer": link}
    kube.finish_pod("tj-prepare", 0, json.dumps(report))
    kube.set_status("tj-prepare", "Complete", succeeded=1)
    run.run(key)
    assert kube.objects["tj"]["status"]["plan"]["viewer"] == link


def test_an_array_store_jobs_failure_names_the_array_store_field():
    """The prepare pod's line names the worker's output_dataset; a ThresholdJob that set
    arrayStore, not outputDataset, is told which of its own fields made that path."""
    kube = FakeKube()
    obj = body(kube)
    store = {"basedir": "/runs", "run": "run1", "iteration": 100000, "dataset": "val"}
    obj["spec"] = {"arrayStore": {**store, "parameters": "../../escape_{threshold}"},
                   "threshold": 0.9}  # fmt: skip
    run = passes(kube)
    run.run(("default", "tj"))
    line = "output_dataset: '100000/val/output/../../escape_0.9' has a '..' segment"
    kube.finish_pod("tj-prepare", 2, f"error: {line}")
    kube.set_status("tj-prepare", "Failed")
    run.run(("default", "tj"))
    status = kube.objects["tj"]["status"]
    assert status["phase"] == "Failed"
    assert status["message"] == line.replace("output_dataset", "spec.arrayStore.parameters")


@pytest.mark.parametrize(
    ("kind", "line", "told"),
    [
        (
            "OutputTaken",
            "output_dataset: /data/a.zarr/mask holds the complete result of another job: "
            "threshold 0.7; run `threshold-worker prepare --overwrite` (or `run --overwrite`) "
            "first to replace it, or choose another output",
            "holds the complete result of another job",
        ),
        (
            "PlanChanged",
            "fingerprint: this worker planned 0123456789abcdef, the job expects "
            "fedcba9876543210: the input or the job changed since it was prepared",
            "the input or the job changed since it was prepared",
        ),
    ],
)
def test_a_partition_that_no_retry_can_mend_is_not_told_to_retry(kind, line, told):
    """Exit 2 with kind OutputTaken (the output holds another job's result) or PlanChanged
    (the input changed since the prepare step): a retry would find the same; the status
    says what the worker says (create the job again)."""
    kube = FakeKube()
    body(kube)
    run = passes(kube)
    key = ("default", "tj")
    run.run(key)
    kube.finish_pod("tj-prepare", 0, PLAN_REPORT)
    kube.set_status("tj-prepare", "Complete", succeeded=1)
    run.run(key)
    report = json.dumps({"error": f"error: {line}", "kind": kind})
    kube.finish_pod("tj-work", 2, report, 0)
    kube.set_status("tj-work", "Failed", failedIndexes="0", completedIndexes="1-3")
    run.run(key)
    status = kube.objects["tj"]["status"]
    assert status["phase"] == "Failed"
    assert told in status["message"]
    assert "spec.retry" not in status["message"]
    kube.pods["tj-work"][0]["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = (
        json.dumps({"error": f"error: {line}", "kind": "StorageError"})
    )
    kube.objects["tj"]["status"] = {}  # derived anew from the same Jobs
    run.run(key)
    assert "bump spec.retry" in kube.objects["tj"]["status"]["message"]
