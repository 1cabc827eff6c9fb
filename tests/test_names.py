"""Child names and labels for every name the CRD admits (1 to 253 characters, dots allowed),
checked against kube-apiserver's rules for every pod index of the largest plan."""

from __future__ import annotations

import pytest

from kube_validation import dns_label, dns_subdomain, validate_create
from kube_validation import label_value as label_errors
from threshold_operator.api import ThresholdJobSpec
from threshold_operator.catalog import PoolSpec
from threshold_operator.crd import crd
from threshold_operator.jobs import PARTITIONS_PER_POD_SLOT, Settings, prepare_job, work_job
from threshold_operator.names import (
    ANNOTATION_NAME,
    LABEL_JOB,
    MAX_COMPLETIONS,
    job_name,
    label_value,
    selector,
)


def names() -> list[str]:
    """Valid ThresholdJob names of every length, plain, dotted and hyphenated at the cuts."""
    out = []
    for n in range(1, 254):
        for pattern in ("a", "run1.iter100000.val.", "b-", "c.d-e"):
            name = (pattern * n)[:n].strip(".-") or "x"
            name = name if name[-1].isalnum() else name[:-1] + "z"
            assert dns_subdomain(name) == [], name
            out.append(name)
    return sorted(set(out))


NAMES = names()
SPEC = ThresholdJobSpec.model_validate(
    {
        "inputContainer": "/d/a.zarr",
        "inputDataset": "raw",
        "outputContainer": "/d/a.zarr",
        "outputDataset": "mask",
    }
)


def body(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "lab", "uid": "u-1"}}


def test_the_names_cover_every_length_and_dots():
    assert {len(n) for n in NAMES} == set(range(1, 254))
    assert any("." in n for n in NAMES if len(n) == 253)


def test_child_names_are_valid_for_every_index_of_the_largest_plan():
    for name in NAMES:
        for role in ("prepare", "work"):
            child = job_name(name, role)
            assert dns_subdomain(child) == [] and len(child) <= 63, (name, child)
        last_pod = f"{job_name(name, 'work')}-{MAX_COMPLETIONS - 1}"
        assert dns_label(last_pod) == [], (name, last_pod)
        assert label_errors(label_value(name)) == [], name


def test_derivation_is_deterministic_and_never_merges_two_names():
    for role in ("prepare", "work"):
        children = [job_name(n, role) for n in NAMES]
        assert len(set(children)) == len(NAMES)
        assert children == [job_name(n, role) for n in NAMES]
    assert len({label_value(n) for n in NAMES}) == len(NAMES)
    assert job_name("a.b", "work") != job_name("a-b", "work")
    assert job_name("a" * 60 + "1", "work") != job_name("a" * 60 + "2", "work")


def test_short_names_are_kept_and_long_ones_keep_a_readable_prefix():
    assert job_name("tj1", "work") == "tj1-work" and label_value("tj1") == "tj1"
    assert label_value("run1.iter100000.val") == "run1.iter100000.val"
    assert job_name("run1.iter100000.val", "work").startswith("run1-iter100000-val-")
    long = "mito-segmentation." * 14
    assert job_name(long.strip("."), "prepare").startswith("mito-segmentation-mito-")
    assert selector("tj1") == f"{LABEL_JOB}=tj1"


def test_the_largest_plan_is_the_apis_bound_on_partitions():
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    partitions, parallelism = spec["properties"]["partitions"], spec["properties"]["parallelism"]
    assert partitions["maximum"] == MAX_COMPLETIONS
    assert parallelism["maximum"] * PARTITIONS_PER_POD_SLOT <= MAX_COMPLETIONS  # the default


@pytest.mark.parametrize("name", ["a", "b" * 52, "c" * 64, "run1.iter100000.val", NAMES[-1]])
def test_built_jobs_pass_the_apiservers_name_rules(name):
    context = PoolSpec()
    for job in (
        prepare_job(body(name), SPEC, context, Settings()),
        work_job(body(name), SPEC, context, Settings(), MAX_COMPLETIONS, "f"),
    ):
        assert validate_create("jobs", job) == []
        for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
            assert meta["annotations"][ANNOTATION_NAME] == name
            assert meta["labels"][LABEL_JOB] == label_value(name)


def test_the_names_the_operator_used_to_write_are_refused():
    """The rules fire: a 63-character Indexed Job name and a 70-character label value."""
    old_style = {
        "metadata": {"name": "x" * 58 + "-work", "namespace": "d", "labels": {LABEL_JOB: "x" * 70}},
        "spec": {
            "completionMode": "Indexed",
            "completions": 10,
            "template": {
                "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}
            },
        },
    }
    causes = [str(c) for c in validate_create("jobs", old_style)]
    assert causes == [
        f'metadata.labels: Invalid value: "{"x" * 70}": must be no more than 63 characters',
        f'metadata.name: Invalid value: "{"x" * 58}-work": will not able to create pod with '
        f"invalid DNS label: {'x' * 58}-work-9",
    ]
    assert dns_subdomain("a..b") and label_errors("-a")
