"""Two ThresholdJobs, one output: the later one waits (outputs.py), through a reconciler
driven against test_reconcile's FakeKube, with the registry read from the stored objects as
kopf's index would hold them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from test_reconcile import PLAN_REPORT, FakeKube
from threshold_operator.api import ThresholdJobSpec
from threshold_operator.catalog import load_catalog
from threshold_operator.handlers import OperatorConfig, Passes
from threshold_operator.jobs import Settings
from threshold_operator.outputs import (
    Place,
    Registry,
    Writer,
    index_entries,
    places,
    waiting_message,
    writer,
)
from threshold_operator.reconcile import Reconciler

VOLUME = {"claimName": "data", "mountPath": "/data"}
SPEC = {
    "inputContainer": "/data/in.zarr",
    "inputDataset": "raw",
    "outputContainer": "/data/out.zarr",
    "outputDataset": "mask",
    "threshold": 0.5,
    "partitions": 4,
    "volumes": [VOLUME],
}


def spec(**extra: Any) -> ThresholdJobSpec:
    fields = {k: v for k, v in {**SPEC, **extra}.items() if v is not None}
    return ThresholdJobSpec.model_validate(fields)


def test_an_output_is_a_path_on_its_claim_or_bucket():
    assert places("ns", spec()) == (Place(("pvc", "ns", "data"), ("out.zarr", "mask")),)
    nested = spec(volumes=[VOLUME, {"claimName": "scratch", "mountPath": "/data/scratch"}],
                  outputContainer="/data/scratch/../scratch/o.zarr/")  # fmt: skip
    assert places("ns", nested) == (Place(("pvc", "ns", "scratch"), ("o.zarr", "mask")),)
    assert places("ns", spec(outputContainer="s3://bucket/a/o.zarr", outputDataset="m/")) == (
        Place(("s3", "bucket"), ("a", "o.zarr", "m")),
    )
    assert places("ns", spec(outputContainer="/tmp/o.zarr")) == ()  # the pod's own disk
    for spelling in ("local:///data/out.zarr", "file://localhost/data/out%2Ezarr",
                     "FILE:///data//out.zarr/", "/data/x/../out.zarr"):  # fmt: skip
        assert places("ns", spec(outputContainer=spelling)) == places("ns", spec()), spelling
    for alias, name in (("s3a", "s3"), ("S3", "s3"), ("gcs", "gs")):
        found = places("ns", spec(outputContainer=f"{alias}://b/o.zarr"))
        assert found == (Place((name, "b"), ("o.zarr", "mask")),)
    sweep = spec(threshold=None, thresholds=[0.3, 0.5], outputDataset="t_{threshold}")
    assert [p.path for p in places("ns", sweep)] == [("out.zarr", "t_0.3"), ("out.zarr", "t_0.5")]


def test_places_meet_when_equal_or_nested_on_the_same_storage():
    a = Place(("pvc", "ns", "data"), ("out.zarr", "mask"))
    assert a.meets(Place(("pvc", "ns", "data"), ("out.zarr",)))
    assert a.meets(Place(("pvc", "ns", "data"), ("out.zarr", "mask", "s0")))
    assert not a.meets(Place(("pvc", "ns", "data"), ("out.zarr", "mask2")))
    assert not a.meets(Place(("pvc", "other", "data"), ("out.zarr", "mask")))
    assert str(a) == "out.zarr/mask on PersistentVolumeClaim data"


def entry(name: str, created: str, started: bool, final: bool = False) -> Writer:
    place = Place(("pvc", "ns", "data"), ("out.zarr", "mask"))
    return Writer("ns", name, f"uid-{name}", created, (place,), started, final)


@pytest.mark.parametrize(
    ("others", "me", "waits_for"),
    [
        ([entry("a", "T1", started=True)], entry("b", "T2", False), "a"),
        ([entry("a", "T3", started=True)], entry("b", "T2", False), "a"),  # started goes first
        ([entry("a", "T1", started=False)], entry("b", "T2", False), "a"),  # older goes first
        ([entry("a", "T3", started=False)], entry("b", "T2", False), None),
        ([entry("a", "T1", started=True, final=True)], entry("b", "T2", False), None),
        ([entry("a", "T1", started=False)], entry("b", "T2", True), None),  # b has started
        ([entry("a", "T3", started=True)], entry("b", "T2", True), "a"),  # a retry waits too
        ([entry("b", "T1", started=True)], entry("b", "T2", False), None),  # itself
    ],
)
def test_who_goes_first(others, me, waits_for):
    registry = Registry({("pvc", "ns", "data"): others})
    found = registry.ahead(me)
    assert (found.name if found else None) == waits_for


class StoredIndex:
    """kopf's index of the fake's ThresholdJobs, as up to date as kopf keeps it."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    def get(self, storage: Any, default: Any = ()) -> Iterator[Writer]:
        for obj in self.kube.objects.values():
            found = index_entries(obj).get(storage)
            if found is not None:
                yield found


def add(kube: FakeKube, name: str, created: str, **extra: Any) -> None:
    kube.objects[name] = {
        "apiVersion": "blockwise.dev/v1alpha1",
        "kind": "ThresholdJob",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "1",
            "creationTimestamp": created,
        },
        "spec": {**SPEC, **extra},
    }


def passes(kube: FakeKube) -> Passes:
    registry = Registry(StoredIndex(kube))  # type: ignore[arg-type]
    reconciler = Reconciler(kube, load_catalog(None), Settings(), registry)  # type: ignore[arg-type]
    return Passes(kube, reconciler, OperatorConfig(interval=5.0))  # type: ignore[arg-type]


def status(kube: FakeKube, name: str) -> dict[str, Any]:
    return kube.objects[name]["status"]


def waiting(kube: FakeKube, name: str) -> dict[str, Any] | None:
    return next((c for c in status(kube, name)["conditions"] if c["type"] == "Waiting"), None)


def test_a_later_job_on_the_same_output_waits_until_the_first_has_finished():
    kube = FakeKube()
    run = passes(kube)
    add(kube, "a", "2026-01-01T00:00:00Z")
    add(kube, "b", "2026-01-01T00:00:05Z", threshold=0.9, overwrite=True)
    add(kube, "c", "2026-01-01T00:00:09Z", outputDataset="other")
    assert run.run(("default", "a")) == 5.0  # its prepare pod is not ready yet
    assert "a-prepare" in kube.jobs and status(kube, "a")["phase"] == "Preparing"

    for _ in range(2):  # a second pass changes nothing, and is timed like the first
        assert run.run(("default", "b")) == 5.0
    assert "b-prepare" not in kube.jobs
    b = status(kube, "b")
    assert b["phase"] == "Pending"
    assert b["message"] == (
        "waiting for ThresholdJob a, which writes out.zarr/mask on PersistentVolumeClaim data, "
        "where this one writes too (the same output, or one inside or around it); this one "
        "starts when that one has finished or is deleted"
    )
    assert b["jobs"].get("prepare") is None  # no Job is named before it exists
    assert b.get("startTime") is None  # waiting is not running
    assert waiting(kube, "b")["status"] == "True"  # type: ignore[index]
    assert waiting(kube, "b")["reason"] == "OutputInUse"  # type: ignore[index]
    assert writer(kube.objects["b"]).started is False  # type: ignore[union-attr]

    run.run(("default", "c"))  # another output: not held up
    assert "c-prepare" in kube.jobs

    kube.finish_pod("a-prepare", 0, PLAN_REPORT)
    kube.set_status("a-prepare", "Complete", succeeded=1)
    run.run(("default", "a"))
    kube.set_status("a-work", "Complete", completedIndexes="0-3", succeeded=4)
    run.run(("default", "a"))
    assert status(kube, "a")["phase"] == "Succeeded"

    run.run(("default", "b"))
    assert "b-prepare" in kube.jobs and status(kube, "b")["phase"] == "Preparing"
    assert status(kube, "b")["startTime"]
    assert waiting(kube, "b")["status"] == "False"  # type: ignore[index]
    assert writer(kube.objects["b"]).started is True  # type: ignore[union-attr]


def test_the_first_to_come_goes_first_and_a_deleted_one_frees_the_output():
    kube = FakeKube()
    run = passes(kube)
    add(kube, "late", "2026-01-01T00:00:05Z")
    add(kube, "early", "2026-01-01T00:00:00Z")
    run.run(("default", "late"))  # seen first, but created later: it waits
    assert "late-prepare" not in kube.jobs
    del kube.objects["early"]  # deleted before it ever ran
    run.run(("default", "late"))
    assert "late-prepare" in kube.jobs


def test_a_retry_waits_for_a_job_that_took_the_output_meanwhile():
    kube = FakeKube()
    run = passes(kube)
    add(kube, "a", "2026-01-01T00:00:00Z")
    run.run(("default", "a"))
    kube.finish_pod("a-prepare", 0, PLAN_REPORT)
    kube.set_status("a-prepare", "Complete", succeeded=1)
    run.run(("default", "a"))
    kube.finish_pod("a-work", 1, "error: the disk is full", 0)
    kube.set_status("a-work", "Failed", failedIndexes="0", completedIndexes="1-3")
    run.run(("default", "a"))
    assert status(kube, "a")["phase"] == "Failed"
    add(kube, "b", "2026-01-01T00:00:05Z", overwrite=True)
    run.run(("default", "b"))
    assert "b-prepare" in kube.jobs  # a is finished: b goes
    before = copy.deepcopy(kube.jobs)
    kube.objects["a"]["spec"]["retry"] = 1
    kube.objects["a"]["metadata"]["generation"] = 2
    run.run(("default", "a"))
    a = status(kube, "a")
    assert a["phase"] == "Failed" and kube.jobs == before
    assert a["message"].startswith("the retry could not start: ThresholdJob b, which writes")
    assert a["message"].endswith(
        "(the same output, or one inside or around it), went first; once that one has "
        "finished, create this ThresholdJob again: a retry resumes only an output that is "
        "still this one's"
    )
    failed = next(c for c in a["conditions"] if c["type"] == "Failed")
    assert failed["message"] == a["message"]  # no older advice left beside it


def stored(phase: str | None, *conditions: tuple[str, str, str]) -> dict[str, Any]:
    status = {"conditions": [{"type": t, "status": v, "reason": r} for t, v, r in conditions]}
    return {
        "metadata": {"name": "x", "namespace": "ns", "uid": "u", "creationTimestamp": "T"},
        "spec": SPEC,
        "status": {"phase": phase, **status} if phase else {},
    }


@pytest.mark.parametrize(
    ("obj", "started", "indexed"),
    [
        (stored(None), False, True),  # not looked at yet
        (stored("Pending", ("Waiting", "True", "OutputInUse")), False, True),
        (stored("Suspended"), False, True),  # suspended before it ever made a Job
        (stored("Suspended", ("Waiting", "False", "OutputHeld")), True, True),
        (stored("Pending", ("Waiting", "False", "OutputHeld")), True, True),  # queued in Kueue
        (stored("Preparing"), True, True),
        (stored("Running"), True, True),
        (stored("Succeeded", ("Waiting", "False", "OutputHeld")), True, False),
        (stored("Failed"), False, False),
    ],
)
def test_a_job_has_started_once_its_output_was_free_and_leaves_the_index_when_done(
    obj, started, indexed
):
    found = writer(obj)
    assert found is not None and found.started is started
    assert bool(index_entries(obj)) is indexed


def test_a_suspended_job_that_must_wait_waits_and_does_not_hold_the_output():
    """Suspended or not, a ThresholdJob that the gate holds back creates nothing and says
    so; only one whose prepare Job exists holds the output (it made it while it was free)."""
    kube = FakeKube()
    run = passes(kube)
    add(kube, "a", "2026-01-01T00:00:00Z")
    add(kube, "b", "2026-01-01T00:00:05Z", suspend=True, overwrite=True)
    run.run(("default", "a"))
    run.run(("default", "b"))
    assert "b-prepare" not in kube.jobs and status(kube, "b")["phase"] == "Pending"
    assert waiting(kube, "b")["status"] == "True"  # type: ignore[index]
    assert writer(kube.objects["b"]).started is False  # type: ignore[union-attr]
    assert waiting(kube, "a") == {  # type: ignore[comparison-overlap]
        **waiting(kube, "a"),  # type: ignore[dict-item]
        "status": "False",
        "reason": "OutputHeld",
    }


def test_a_sweeps_cost_is_one_look_up_per_place():
    """The gate reads each storage once, however many places the sweeps have."""
    reads: list[Any] = []

    class Counting(dict):
        def get(self, key: Any, default: Any = ()) -> Any:
            reads.append(key)
            return super().get(key, default)

    def sweep(name: str, created: str, container: str, n: int) -> Writer:
        paths = [Place(("s3", "b"), (container, f"t_{i}")) for i in range(n)]
        return Writer("ns", name, f"uid-{name}", created, tuple(paths), True, False)

    others = [sweep(f"o{i}", f"T{i}", f"o{i}.zarr", 64) for i in range(50)]
    registry = Registry(Counting({("s3", "b"): others}))
    me = replace(sweep("me", "T9", "me.zarr", 64), started=False)
    assert registry.ahead(me) is None and reads == [("s3", "b")]
    inside = Place(("s3", "b"), ("o7.zarr", "t_5", "s0"))  # inside o7's t_5
    assert registry.ahead(replace(me, places=(*me.places, inside))).name == "o7"  # type: ignore[union-attr]


def test_the_message_names_the_others_output_and_whether_it_is_held_back():
    nested = Place(("pvc", "ns", "data"), ("out.zarr", "mask", "s0"))
    me = replace(entry("b", "T2", False), places=(nested,))
    other = replace(entry("a", "T1", True), phase="Suspended")
    assert waiting_message(me, other).startswith(
        "waiting for ThresholdJob a (it is suspended), which writes out.zarr/mask on "
        "PersistentVolumeClaim data, where this one writes too"
    )


def test_only_a_job_held_back_is_said_to_be():
    me = entry("b", "T2", False)
    queued = replace(entry("a", "T1", True), phase="Pending")  # holds its output, in Kueue
    next_in_line = replace(entry("a", "T1", False), phase="Pending")  # waits itself
    assert waiting_message(me, queued).startswith("waiting for ThresholdJob a (it is queued),")
    assert waiting_message(me, next_in_line).startswith("waiting for ThresholdJob a, which")
