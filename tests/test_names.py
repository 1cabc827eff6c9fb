"""Child names and labels for every name the CRD admits (1 to 253 characters, dots allowed),
checked against kube-apiserver's rules for every pod index of the largest plan."""

from __future__ import annotations

import pytest

from job_name_rules import (
    admit_job_names,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    job_name_errors,
)
from k8s_emulator import AdmissionRequest
from kube_status import StatusError
from rbac_authz import ANONYMOUS
from threshold_operator.api import ThresholdJobSpec
from threshold_operator.catalog import ComputeContextSpec
from threshold_operator.crd import crd
from threshold_operator.jobs import SHARDS_PER_POD_SLOT, Settings, prepare_job, work_job
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
            assert is_dns1123_subdomain(name), name
            out.append(name)
    return sorted(set(out))


NAMES = names()
SPEC = ThresholdJobSpec.model_validate(
    {
        "input": {"container": "/d/a.zarr", "dataset": "raw"},
        "output": {"container": "/d/a.zarr", "dataset": "mask"},
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
            assert is_dns1123_subdomain(child) and len(child) <= 63, (name, child)
        last_pod = f"{job_name(name, 'work')}-{MAX_COMPLETIONS - 1}"
        assert is_dns1123_label(last_pod), (name, last_pod)
        assert is_label_value(label_value(name)), name


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


def test_the_largest_plan_is_the_apis_bound_on_shards():
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    shards, parallelism = spec["properties"]["shards"], spec["properties"]["parallelism"]
    assert shards["maximum"] == MAX_COMPLETIONS
    assert parallelism["maximum"] * SHARDS_PER_POD_SLOT <= MAX_COMPLETIONS  # the default shards


@pytest.mark.parametrize("name", ["a", "b" * 52, "c" * 64, "run1.iter100000.val", NAMES[-1]])
def test_built_jobs_pass_the_apiservers_name_rules(name):
    context = ComputeContextSpec()
    for job in (
        prepare_job(body(name), SPEC, context, Settings()),
        work_job(body(name), SPEC, context, Settings(), MAX_COMPLETIONS, "f"),
    ):
        assert job_name_errors(job) == []
        for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
            assert meta["annotations"][ANNOTATION_NAME] == name
            assert meta["labels"][LABEL_JOB] == label_value(name)


def test_the_stand_in_refuses_what_kube_apiserver_refuses():
    """The rules themselves fire: the names the operator used to write are refused."""
    old_style = {
        "metadata": {"name": "x" * 58 + "-work", "labels": {LABEL_JOB: "x" * 70}},
        "spec": {"completionMode": "Indexed", "completions": 10, "template": {"metadata": {}}},
    }
    request = AdmissionRequest("CREATE", "batch/v1/jobs", "", "d", "n", old_style, None, ANONYMOUS)
    with pytest.raises(StatusError) as refused:
        admit_job_names(request)
    body = refused.value.body
    assert refused.value.code == 422 and body["reason"] == "Invalid"
    assert [c["field"] for c in body["details"]["causes"]] == ["metadata.name", "metadata.labels"]
    assert body["message"].startswith('Job.batch "n" is invalid: [metadata.name: Invalid value: ')
    assert (
        "will not able to create pod with invalid DNS label: " + "x" * 58 + "-work-9"
        in (body["message"])
    )
    assert not is_dns1123_subdomain("a..b") and not is_label_value("-a")
