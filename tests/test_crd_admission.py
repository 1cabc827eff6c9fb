"""The committed CRD as kube-apiserver applies it: pruning, defaults, schema, list types, CEL.

crd_admission.CustomResourceAdmission reads crds/thresholdjobs.blockwise.dev.yaml; each test
shows one piece refusing or transforming a manifest, and where the CRD refuses what cannot run,
that the pydantic model (the CRD's source) refuses the same.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from crd_admission import CustomResourceAdmission
from kube_status import StatusError, go_float
from threshold_operator.api import IMMUTABLE, PLAN_FIELDS, ThresholdJobSpec
from threshold_operator.crd import crd

ROOT = Path(__file__).parent.parent
CRD_FILE = ROOT / "crds" / "thresholdjobs.blockwise.dev.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
API = CustomResourceAdmission.from_file(CRD_FILE)
ARRAYS = {
    "inputContainer": "/data/a.zarr",
    "inputDataset": "raw",
    "outputContainer": "/data/a.zarr",
    "outputDataset": "mask",
}
ARRAY_STORE = {
    "basedir": "/data/dacapo",
    "run": "run1",
    "iteration": 100000,
    "dataset": "val",
    "parameters": "threshold_0.5",
}


def manifest(*, source: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "blockwise.dev/v1alpha1",
        "kind": "ThresholdJob",
        "metadata": {"name": "tj", "namespace": "lab"},
        "spec": {**(ARRAYS if source is None else source), **spec},
    }


def stored(**spec: Any) -> dict[str, Any]:
    """A created object as the emulated API server keeps it (uid and resourceVersion set)."""
    obj = API.create(manifest(**spec))
    obj["metadata"].update(uid="0b1d", resourceVersion="1")
    return obj


def edited(obj: dict[str, Any], **spec: Any) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    new["spec"].update(spec)
    return new


def refused(call: Any, *args: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(StatusError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == 422
    return [str(c) for c in caught.value.causes]


def bad_request(call: Any, *args: Any, **kwargs: Any) -> str:
    """The message of the 400 the call raises."""
    with pytest.raises(StatusError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == 400 and caught.value.body["reason"] == "BadRequest"
    return caught.value.body["message"]


# --- what is admitted, and how it is stored ---


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_admitted(path):
    out = API.create(yaml.safe_load(path.read_text()), namespace="lab")
    assert out["metadata"]["generation"] == 1 and out["metadata"]["namespace"] == "lab"
    assert out["spec"]["retries"]["perPartition"] >= 0 and out["spec"]["pool"]
    ThresholdJobSpec.model_validate(out["spec"])  # what the operator reads back


def test_unknown_fields_are_pruned_and_metadata_keeps_only_object_meta():
    obj = manifest(bogus=1, retries={"perPartition": 1, "extra": True})
    obj["extra"] = "x"
    obj["metadata"].update(bogus="y", labels={"team": "lab"})
    out = API.create(obj)
    assert "bogus" not in out["spec"] and "extra" not in out
    assert out["spec"]["retries"] == {"perPartition": 1, "maxFailedPartitions": 0}
    assert out["metadata"] == {
        "name": "tj",
        "namespace": "lab",
        "labels": {"team": "lab"},
        "generation": 1,
    }


def test_the_status_is_strict_unknown_fields_are_pruned():
    """kopf keeps nothing in the status (handlers.py), so its schema prunes what it does not
    name: a `kopf` field left by an older operator goes with the next status write."""
    old = stored()
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Running", "kopf": {"progress": {}}, "blocks": {"done": 3, "x": 1}}
    out = API.update(new, old, subresource="status")
    assert "kopf" not in out["status"]
    assert out["status"]["blocks"] == {"done": 3, "total": 0, "failed": 0}  # pruned, defaulted


def test_defaults_fill_absent_fields():
    spec = API.create(manifest())["spec"]
    assert spec["pool"] == "cpu" and spec["fit"] == "shrink"
    assert "threshold" not in spec  # 0 when left out, but not written: thresholds may be given
    assert spec["parallelism"] == 4 and spec["suspend"] is False
    assert spec["retries"] == {"perPartition": 3, "maxFailedPartitions": 0}  # {} then its fields'
    assert "partitions" not in spec and "queueName" not in spec and "volumes" not in spec


def test_defaults_apply_inside_given_objects_and_nulls_go_or_take_the_default():
    volume = {"claimName": "lab-data", "mountPath": "/data"}
    spec = API.create(
        manifest(retries={"perPartition": 1}, volumes=[volume], queueName=None, fit=None)
    )["spec"]
    assert spec["retries"] == {"perPartition": 1, "maxFailedPartitions": 0}
    assert spec["volumes"] == [{**volume, "readOnly": False}]
    assert "queueName" not in spec and spec["fit"] == "shrink"


def test_create_drops_status_and_sets_generation_one():
    obj = manifest()
    obj["status"] = {"phase": "Succeeded"}
    obj["metadata"]["generation"] = 7
    out = API.create(obj)
    assert "status" not in out and out["metadata"]["generation"] == 1


def test_json_numbers_integers_are_numbers_and_integral_floats_integers():
    out = API.create(manifest(threshold=1, parallelism=2.0))
    assert out["spec"]["threshold"] == 1 and type(out["spec"]["parallelism"]) is int
    assert refused(API.create, manifest(parallelism=2**64))[0] == (
        'spec.parallelism: Invalid value: "number": '
        'spec.parallelism in body must be of type integer: "number"'
    )  # beyond int64 a JSON integer decodes as a float


# --- each schema keyword, on the real CRD ---

KEYWORDS = [
    (
        {"threshold": "high"},
        'spec.threshold: Invalid value: "string": '
        'spec.threshold in body must be of type number: "string"',
    ),
    (
        {"parallelism": 2.5},
        'spec.parallelism: Invalid value: "number": '
        'spec.parallelism in body must be of type integer: "number"',
    ),
    (
        {"fit": "overhang"},
        'spec.fit: Unsupported value: "overhang": supported values: "shrink", "valid"',
    ),
    (
        {"parallelism": 0},
        "spec.parallelism: Invalid value: 0: "
        "spec.parallelism in body should be greater than or equal to 1",
    ),
    (
        {"parallelism": 10001},
        "spec.parallelism: Invalid value: 10001: "
        "spec.parallelism in body should be less than or equal to 10000",
    ),
    (
        {"inputContainer": ""},
        'spec.inputContainer: Invalid value: "": '
        "spec.inputContainer in body should be at least 1 chars long",
    ),
    ({"queueName": "q" * 64}, "spec.queueName: Too long: may not be longer than 63"),
    (
        {"queueName": "lab queue"},
        'spec.queueName: Invalid value: "lab queue": spec.queueName in body should match '
        "'^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'",
    ),
    (
        {"blockShape": []},
        "spec.blockShape: Invalid value: 0: spec.blockShape in body should have at least 1 items",
    ),
    ({"blockShape": [64] * 6}, "spec.blockShape: Too many: 6: must have at most 5 items"),
    (
        {"arrayStore": {"basedir": "/d", "iteration": 1, "dataset": "v"}},
        "spec.arrayStore.run: Required value",
    ),
    (  # a run is a folder of basedir, never a way out of it
        {"arrayStore": {"basedir": "/d", "run": "../../escape", "iteration": 1, "dataset": "v"}},
        "spec.arrayStore.run: Invalid value: \"string\": must be one folder name: no '/', and "
        "not '.' or '..'",
    ),
    (
        {
            "volumes": [
                {"claimName": "a", "mountPath": "/data"},
                {"claimName": "b", "mountPath": "/data"},
            ]
        },
        'spec.volumes[1]: Duplicate value: map[string]interface {}{"mountPath":"/data"}',
    ),
]


@pytest.mark.parametrize("change, cause", KEYWORDS, ids=[c.split(":")[0] for _, c in KEYWORDS])
def test_each_schema_keyword_refuses(change, cause):
    assert cause in refused(API.create, manifest(**change))


def test_a_schema_error_of_shape_keeps_the_cel_rules_from_running():
    obj = manifest(threshold="high")
    del obj["spec"]["outputDataset"]  # the one-source rule would refuse this, were it run
    assert refused(API.create, obj)[1:] == [
        '<nil>: Invalid value: "null": some validation rules were not checked because the '
        "object was invalid; correct the existing errors to complete validation"
    ]


def test_the_422_status_is_the_one_kube_apiserver_sends():
    with pytest.raises(StatusError) as caught:
        API.create(manifest(parallelism=0, fit="overhang"))
    status = caught.value.body
    assert status["code"] == 422 and status["reason"] == "Invalid" and status["kind"] == "Status"
    assert status["details"]["causes"][1] == {
        "reason": "FieldValueInvalid",
        "message": "Invalid value: 0: spec.parallelism in body should be greater than or equal to 1",
        "field": "spec.parallelism",
    }
    assert status["message"] == (
        'ThresholdJob.blockwise.dev "tj" is invalid: [spec.fit: Unsupported value: "overhang": '
        'supported values: "shrink", "valid", spec.parallelism: Invalid value: 0: '
        "spec.parallelism in body should be greater than or equal to 1, "
        '<nil>: Invalid value: "null": some validation rules were not checked because the '
        "object was invalid; correct the existing errors to complete validation]"
    )


# --- metadata ---


@pytest.mark.parametrize(
    "name, message",
    [
        ("Bad_Name", "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric"),
        ("a" * 254, "must be no more than 253 characters"),
        ("", "Required value: name or generateName is required"),
    ],
)
def test_names_are_dns_subdomains_of_at_most_253(name, message):
    obj = manifest()
    obj["metadata"]["name"] = name
    assert any(c.startswith("metadata.name: ") and message in c for c in refused(API.create, obj))


def test_a_253_character_dotted_name_and_a_generated_name_are_admitted():
    obj = manifest()
    obj["metadata"]["name"] = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(API.create(obj)["metadata"]["name"]) == 253
    obj["metadata"] = {"generateName": "threshold-", "namespace": "lab"}
    name = API.create(obj)["metadata"]["name"]
    assert name.startswith("threshold-") and len(name) == len("threshold-") + 5


def test_the_namespace_comes_from_the_request_and_must_match_it():
    obj = manifest()
    del obj["metadata"]["namespace"]
    assert "metadata.namespace: Required value" in refused(API.create, obj)
    assert API.create(obj, namespace="lab")["metadata"]["namespace"] == "lab"
    assert "does not match the namespace sent on the request" in bad_request(
        API.create, manifest(), namespace="other"
    )


def test_labels_finalizers_and_owner_references_are_checked():
    obj = manifest()
    obj["metadata"].update(
        labels={"bad key!": "ok", "ok": "bad value!"},
        finalizers=["kopf.zalando.org/KopfFinalizerMarker", "a/b/c"],
        ownerReferences=[{"apiVersion": "v1", "kind": "ConfigMap", "name": "cm"}],
    )
    fields = [c.split(":")[0] for c in refused(API.create, obj)]
    assert fields == [
        "metadata.labels",
        "metadata.labels",
        "metadata.ownerReferences.uid",
        "metadata.finalizers",
    ]


def test_metadata_of_the_wrong_json_type_is_a_400():
    obj = manifest()
    obj["metadata"]["labels"] = {"replicas": 3}
    assert "ObjectMeta.metadata.labels of type string" in bad_request(API.create, obj)
    obj["metadata"]["labels"] = ["a"]
    assert bad_request(API.create, obj).endswith(
        "json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type "
        "map[string]string"
    )


def test_an_update_may_not_rename_and_must_carry_a_resource_version():
    old = stored()
    new = copy.deepcopy(old)
    new["metadata"]["name"] = "other"
    del new["metadata"]["resourceVersion"]
    assert refused(API.update, new, old) == [
        'metadata.resourceVersion: Invalid value: "": must be specified for an update',
        'metadata.name: Invalid value: "other": field is immutable',
    ]


# --- a threshold JSON cannot carry ---


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_threshold_is_a_400_as_no_json_decoder_takes_it(value):
    assert bad_request(API.create, manifest(threshold=value)).startswith(
        "the object provided is unrecognized (must be of type ThresholdJob): invalid character"
    )
    with pytest.raises(ValidationError, match="finite number"):
        ThresholdJobSpec.model_validate({**ARRAYS, "threshold": value})


def test_a_number_beyond_float64_is_a_400():
    body = json.dumps(manifest(threshold=0.5)).replace('"threshold": 0.5', '"threshold": 1e400')
    assert bad_request(API.decode, body) == (
        'ThresholdJob in version "v1alpha1" cannot be handled as a ThresholdJob: json: '
        "cannot unmarshal number 1e400 into Go value of type float64"
    )
    assert bad_request(API.decode, '{"spec": {"threshold": NaN}}', patch=True).startswith(
        "the object provided is unrecognized (must be of type ThresholdJob): invalid character 'N'"
    )


# --- the plan is immutable ---

CHANGES = {  # field: (spec it is created with, the change an update tries)
    "inputContainer": ({}, {"inputContainer": "/data/b.zarr"}),
    "inputDataset": ({}, {"inputDataset": "raw2"}),
    "outputContainer": ({}, {"outputContainer": "/data/b.zarr"}),
    "outputDataset": ({}, {"outputDataset": "mask2"}),
    "arrayStore": (
        {"source": {"arrayStore": ARRAY_STORE}},
        {"arrayStore": {**ARRAY_STORE, "iteration": 200000}},
    ),
    "threshold": ({}, {"threshold": 0.6}),
    # A set to kube-apiserver, still pinned in order (whole numbers too: see SETS below).
    "thresholds": (
        {"thresholds": [0, 0.4], "outputDataset": "m_{threshold}"},
        {"thresholds": [0.4, 0]},
    ),
    "roiOffset": ({"roiOffset": [0, 0, 0]}, {"roiOffset": [0, 0, 8]}),
    "roiShape": ({"roiShape": [10, 10, 10]}, {"roiShape": [10, 10, 11]}),
    "blockShape": ({"blockShape": [64, 64, 64]}, {"blockShape": [64, 64, 128]}),
    "fit": ({}, {"fit": "valid"}),
    "partitions": ({"partitions": 8}, {"partitions": 16}),
    "overwrite": ({}, {"overwrite": True}),
    "outputChunks": ({"outputChunks": [8, 8, 8]}, {"outputChunks": [16, 16, 16]}),
    "outputShards": ({"outputShards": [64, 64, 64]}, {"outputShards": [32, 32, 32]}),
    "zarrFormat": ({"zarrFormat": 2}, {"zarrFormat": 3}),
    "omeZarr": ({}, {"omeZarr": True}),
    "verify": ({}, {"verify": {"sample": 3}}),
    "pyramid": ({"omeZarr": True}, {"pyramid": 2}),
    "pyramidFactors": (
        {"omeZarr": True, "pyramid": 2, "pyramidFactors": [2, 2, 2]},
        {"pyramidFactors": [1, 2, 2]},
    ),
    "pyramidMode": ({"omeZarr": True, "pyramid": 2}, {"pyramidMode": "mode"}),
    # What the Jobs are made from: a running Job cannot take a change of these over.
    "pool": ({}, {"pool": "gpu"}),
    "image": ({}, {"image": "registry.example.org/worker:2"}),
    "env": ({}, {"env": [{"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"}]}),
    "envFrom": ({}, {"envFrom": [{"secretRef": {"name": "s3-credentials"}}]}),
    "volumes": ({}, {"volumes": [{"claimName": "lab-data", "mountPath": "/data"}]}),
    "retries": ({}, {"retries": {"perPartition": 1, "maxFailedPartitions": 2}}),
    "ttlSecondsAfterFinished": ({}, {"ttlSecondsAfterFinished": 60}),
    "queueName": ({}, {"queueName": "lab-queue"}),
}


def immutable(field: str) -> str:
    why = "it defines the plan" if field in PLAN_FIELDS else "the Jobs are made from it"
    return (
        f'spec: Invalid value: "object": spec.{field} is immutable: {why}; '
        "create a new ThresholdJob (only parallelism, suspend, retry may change)"
    )


def test_every_field_but_parallelism_suspend_and_retry_has_a_change_here():
    assert set(CHANGES) == set(IMMUTABLE)
    assert set(IMMUTABLE) | {"parallelism", "suspend", "retry"} == set(
        crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
            "properties"
        ]
    )


@pytest.mark.parametrize("field", IMMUTABLE)
def test_each_plan_field_is_refused_when_changed(field):
    created, change = CHANGES[field]
    old = stored(**created)
    assert refused(API.update, edited(old, **change), old) == [immutable(field)]


@pytest.mark.parametrize("field", IMMUTABLE)
def test_each_plan_field_is_accepted_unchanged(field):
    created, _ = CHANGES[field]
    old = stored(**created)
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"touched": "yes"}
    out = API.update(new, old)
    assert out["spec"] == old["spec"] and out["metadata"]["generation"] == 1


def test_a_plan_field_may_be_neither_added_nor_removed():
    old = stored()
    assert refused(API.update, edited(old, partitions=8), old) == [immutable("partitions")]
    old = stored(roiShape=[5])
    new = copy.deepcopy(old)
    del new["spec"]["roiShape"]
    assert refused(API.update, new, old) == [immutable("roiShape")]


def test_a_threshold_written_as_an_integer_or_a_float_is_the_same_threshold():
    old = stored(threshold=1)
    assert API.update(edited(old, threshold=1.0), old)["spec"]["threshold"] == 1


@pytest.mark.parametrize(
    "change", [{"parallelism": 2}, {"suspend": True}, {"retry": 1}], ids=lambda c: next(iter(c))
)
def test_parallelism_suspend_and_retry_may_change_and_bump_the_generation(change):
    old = stored()
    out = API.update(edited(old, **change), old)
    assert out["spec"][next(iter(change))] == next(iter(change.values()))
    assert out["metadata"]["generation"] == 2


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            {**ARRAYS, "arrayStore": ARRAY_STORE},
            "give either the input and output containers and datasets, or arrayStore, not both",
        ),
        (
            {"inputContainer": "/d/a.zarr", "inputDataset": "raw"},
            "give inputContainer, inputDataset, outputContainer and outputDataset, or arrayStore",
        ),
        (
            {"threshold": 0.5},
            "give inputContainer, inputDataset, outputContainer and outputDataset, or arrayStore",
        ),
    ],
    ids=["both", "input-only", "neither"],
)
def test_input_and_output_xor_array_store(spec, message):
    obj = manifest()
    obj["spec"] = spec
    assert refused(API.create, obj) == [f'spec: Invalid value: "object": {message}']
    with pytest.raises(ValidationError, match=message):
        ThresholdJobSpec.model_validate(spec)


def test_retry_only_grows():
    """spec.retry is a counter: bumped, it asks for a retry; lowered or removed it would
    ask for nothing the operator could tell apart, so the CRD refuses it."""
    message = (
        'spec.retry: Invalid value: "object": may only grow: bump it (e.g. by 1) to retry '
        "what failed"
    )
    old = stored(retry=2)
    assert API.update(edited(old, retry=3), old)["spec"]["retry"] == 3
    assert refused(API.update, edited(old, retry=1), old) == [message]
    removed = copy.deepcopy(old)
    del removed["spec"]["retry"]
    assert refused(API.update, removed, old) == [message]
    assert refused(API.create, manifest(retry=-1))[0].startswith("spec.retry: Invalid value")


def test_with_a_queue_suspend_may_be_lifted_but_not_set():
    """Kueue unsuspends what it admitted: a queued ThresholdJob is paused through Kueue
    (its Workload), so the CRD refuses `suspend: true` once one exists; created suspended,
    it may be released."""
    old = stored(queueName="lab-queue")
    assert refused(API.update, edited(old, suspend=True), old) == [
        'spec.suspend: Invalid value: "object": cannot be set once a ThresholdJob with a '
        "queueName exists: Kueue decides when its Jobs run; stop its Workload instead "
        "(kueuectl stop workload, or the Workload's spec.active: false)"
    ]
    held = stored(queueName="lab-queue", suspend=True)
    assert API.update(edited(held, suspend=False), held)["spec"]["suspend"] is False
    assert API.update(edited(old, parallelism=9), old)["spec"]["parallelism"] == 9
    plain = stored()
    assert API.update(edited(plain, suspend=True), plain)["spec"]["suspend"] is True


# --- thresholds are a set: a value given twice is refused at admission ---

SWEEP = {"outputDataset": "m_{threshold}"}


@pytest.mark.parametrize(
    "thresholds, causes",
    [
        ([0.5, 0.5], ["spec.thresholds[1]: Duplicate value: 0.5"]),
        (
            [0.3, 0.5, 0.5, 0.5, 0.3],  # each value once, at its second place
            [
                "spec.thresholds[2]: Duplicate value: 0.5",
                "spec.thresholds[4]: Duplicate value: 0.3",
            ],
        ),
        ([0.0, -0.0], ["spec.thresholds[1]: Duplicate value: -0"]),  # Go's 0.0 == -0.0
        ([1e-300, 1e-300], ["spec.thresholds[1]: Duplicate value: 1e-300"]),
    ],
    ids=["twice", "each-once", "signed-zero", "tiny"],
)
def test_a_threshold_given_twice_is_refused(thresholds, causes):
    assert refused(API.create, manifest(thresholds=thresholds, **SWEEP)) == causes
    with pytest.raises(ValidationError, match="twice"):
        ThresholdJobSpec.model_validate({**ARRAYS, **SWEEP, "thresholds": thresholds})


def test_equal_float64s_written_differently_are_one_threshold():
    """kube compares the decoded values: 0.1000000000000000055511151231257827 is the float64
    0.1, as Go's decoder (and Python's) reads it."""
    body = json.dumps(manifest(**SWEEP)).replace(
        '"spec": {', '"spec": {"thresholds": [0.1, 0.1000000000000000055511151231257827], '
    )
    assert refused(API.create, API.decode(body)) == ["spec.thresholds[1]: Duplicate value: 0.1"]


def test_an_integer_and_a_float_of_one_value_are_two_to_kube():
    """Go keeps 1 (an int64) and 1.0 (a float64) apart in a set, so the server admits them;
    the model refuses them when the operator reads the spec (InvalidSpec, nothing runs)."""
    out = API.create(manifest(thresholds=[1, 1.0], **SWEEP))
    with pytest.raises(ValidationError, match=r"name 1\.0 twice"):
        ThresholdJobSpec.model_validate(out["spec"])


def test_a_sweep_with_whole_numbers_takes_updates_and_status_writes():
    """A whole number in a number set decodes as an int64, which kube's CEL `==` on a set
    does not find among the doubles it compares with: the CRD's rule compares the values."""
    old = stored(thresholds=[0, 0.5, 1], **SWEEP)
    assert API.update(edited(old, parallelism=2), old)["spec"]["thresholds"] == [0, 0.5, 1]
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Running"}
    assert API.update(new, old, subresource="status")["status"]["phase"] == "Running"


# --- the status subresource ---


def test_an_update_keeps_the_stored_status_and_bumps_generation_only_for_spec():
    old = stored()
    old["status"] = {"phase": "Running"}
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Succeeded"}
    new["metadata"]["labels"] = {"a": "b"}
    out = API.update(new, old)
    assert out["status"]["phase"] == "Running" and out["metadata"]["labels"] == {"a": "b"}
    assert out["metadata"]["generation"] == 1
    assert API.update(edited(new, parallelism=2), old)["metadata"]["generation"] == 2


def test_a_status_update_changes_nothing_but_status():
    old = stored()
    new = edited(old, parallelism=99)
    new["status"] = {"phase": "Running"}
    new["metadata"]["labels"] = {"a": "b"}
    out = API.update(new, old, subresource="status")
    assert out["status"]["phase"] == "Running" and out["spec"] == old["spec"]
    assert "labels" not in out["metadata"] and out["metadata"]["generation"] == 1


def test_a_status_update_is_held_to_the_status_schema():
    old = stored()
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Bogus"}
    assert refused(API.update, new, old, subresource="status")[0] == (
        'status.phase: Unsupported value: "Bogus": supported values: "Pending", "Preparing", '
        '"Running", "Suspended", "Succeeded", "Failed"'
    )


# --- what cannot run is refused, by the CRD and by the model alike ---

CANNOT_RUN = [
    ({"queueName": "lab queue"}, "spec.queueName"),
    ({"queueName": "q" * 64}, "spec.queueName"),
    ({"queueName": ""}, "spec.queueName"),
    ({"blockShape": [0, 64, 64]}, "spec.blockShape[0]"),
    ({"roiOffset": [0, 0], "roiShape": [10, 0]}, "spec.roiShape[1]"),
    ({"roiOffset": [0], "roiShape": [10, 10]}, "spec"),
    (
        {
            "volumes": [
                {"claimName": "a", "mountPath": "/data"},
                {"claimName": "b", "mountPath": "/data"},
            ]
        },
        "spec.volumes[1]",
    ),
    ({"volumes": [{"claimName": "a", "mountPath": "/tmp"}]}, "spec.volumes[0].mountPath"),
    ({"volumes": [{"claimName": "a", "mountPath": "data"}]}, "spec.volumes[0].mountPath"),
    ({"volumes": [{"claimName": "a", "mountPath": "/data/"}]}, "spec.volumes[0].mountPath"),
    ({"volumes": [{"claimName": "Lab_Data", "mountPath": "/d"}]}, "spec.volumes[0].claimName"),
    ({"env": [{"name": "1ABC", "value": "x"}]}, "spec.env[0].name"),
    ({"env": [{"name": "A=B", "value": "x"}]}, "spec.env[0].name"),
    ({"env": [{"name": "..", "value": "x"}]}, "spec.env[0].name"),
    (
        {
            "env": [
                {
                    "name": "K",
                    "value": "x",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                }
            ]
        },
        "spec.env[0].valueFrom",
    ),
    (
        {"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "S3", "key": "k"}}}]},
        "spec.env[0].valueFrom.secretKeyRef.name",
    ),
    (
        {"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}}]},
        "spec.env[0].valueFrom.secretKeyRef.key",
    ),
    ({"envFrom": [{"secretRef": {"name": "s3 credentials"}}]}, "spec.envFrom[0].secretRef.name"),
    ({"image": ""}, "spec.image"),
    ({"image": "registry.example.org/worker :1"}, "spec.image"),
    # kube-apiserver trims Unicode spaces (Go's TrimSpace) when it validates a Pod
    ({"image": "\u00a0registry.example.org/worker:1"}, "spec.image"),
    ({"image": "registry.example.org/worker:1\u3000"}, "spec.image"),
    ({"image": "x" * 1025}, "spec.image"),
    # the partition of each pod is Kubernetes', the worker's settings the operator's
    ({"env": [{"name": "JOB_COMPLETION_INDEX", "value": "0"}]}, "spec.env[0].name"),
    ({"env": [{"name": "THRESHOLD_LOG_LEVEL", "value": "DEBUG"}]}, "spec.env[0].name"),
    ({"env": [{"name": "THRESHOLD_RETRY_DELAYS", "value": "1"}]}, "spec.env[0].name"),
    # bounded, so that the whole spec fits where annotations hold it
    ({"env": [{"name": "A", "value": "x" * 1025}]}, "spec.env[0].value"),
    ({"inputDataset": "d" * 1025}, "spec.inputDataset"),
    # where the pods find arrays: an absolute path or a URL, a file URL without a host
    ({"inputContainer": "data/a.zarr"}, "spec.inputContainer"),
    ({"outputContainer": "file://otherhost/data/a.zarr"}, "spec.outputContainer"),
    ({"outputContainer": "/" + "d" * 2048}, "spec.outputContainer"),
    ({"pool": "GPU"}, "spec.pool"),
    ({"ttlSecondsAfterFinished": 2**31}, "spec.ttlSecondsAfterFinished"),
    ({"retries": {"maxFailedPartitions": 100001}}, "spec.retries.maxFailedPartitions"),
    *(
        ({"source": {"arrayStore": {**ARRAY_STORE, "basedir": basedir}}}, "spec.arrayStore.basedir")
        for basedir in ("runs/dacapo", "file://otherhost/data", "dacapo")
    ),
    ({"source": {"arrayStore": {**ARRAY_STORE, "run": "r" * 256}}}, "spec.arrayStore.run"),
]
CANNOT_RUN_IDS = [f"{field}-{i}" for i, (_, field) in enumerate(CANNOT_RUN)]


@pytest.mark.parametrize("change, field", CANNOT_RUN, ids=CANNOT_RUN_IDS)
def test_the_crd_refuses_what_cannot_run_naming_the_field(change, field):
    assert field in [c.split(": ")[0] for c in refused(API.create, manifest(**change))]


@pytest.mark.parametrize("change, field", CANNOT_RUN, ids=CANNOT_RUN_IDS)
def test_the_model_refuses_the_same(change, field):
    with pytest.raises(ValidationError):
        ThresholdJobSpec.model_validate(manifest(**change)["spec"])


CAN_RUN = {
    "queueName": "Lab_queue.v1-" + "x" * 50,
    "volumes": [
        {"claimName": "lab.data-1", "mountPath": "/tmp/scratch"},
        {"claimName": "b", "mountPath": "/data", "readOnly": True},
    ],
    "env": [
        {"name": "my.env-name", "value": "x"},
        {"name": ".hidden", "value": ""},
        {"name": "_X", "value": "", "valueFrom": {"secretKeyRef": {"name": "s3", "key": ".k_1"}}},
        {"name": "MY_THRESHOLD_", "value": "x" * 1024},
    ],
    "envFrom": [{"secretRef": {"name": "s3-credentials"}}],
    "image": "registry.example.org:5000/worker@sha256:abc",
    "inputContainer": "file:///data/a.zarr",
    "outputContainer": "s3://lab-bucket/em/volume.zarr",
    "pool": "a100-80g",
    "roiOffset": [-5, 0],
    "roiShape": [1, 1],
    "blockShape": [1, 1],
}


def test_the_edges_of_what_can_run_are_admitted_by_both():
    out = API.create(manifest(**CAN_RUN))
    assert out["spec"]["queueName"] == CAN_RUN["queueName"] and len(CAN_RUN["queueName"]) == 63
    ThresholdJobSpec.model_validate(manifest(**CAN_RUN)["spec"])


# --- the double's generic machinery, on a small CRD of its own ---


def toy_crd(spec_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "toys.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Toy", "plural": "toys"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", **spec_schema}},
                        }
                    },
                }
            ],
        },
    }


TOY = CustomResourceAdmission(
    toy_crd(
        {
            "properties": {
                "word": {"type": "string", "maxLength": 3},
                "size": {
                    "type": "integer",
                    "x-kubernetes-validations": [{"rule": "self <= 10", "message": "over 10"}],
                },
                "extra": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {
                        "known": {"type": "object", "properties": {"a": {"type": "integer"}}}
                    },
                },
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                        "x-kubernetes-validations": [
                            {"rule": "self.port == oldSelf.port", "message": "port is immutable"}
                        ],
                    },
                },
                "order": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"v": {"type": "integer"}},
                        "x-kubernetes-validations": [{"rule": "self.v == oldSelf.v"}],
                    },
                },
            },
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.word) || self.word != 'bad'",
                    "fieldPath": ".word",
                    "message": "a good word",
                },
                {"rule": "!has(self.word) || self.size >= 0", "message": "a word needs a size"},
            ],
        }
    ),
    version="v1",
)


def toy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Toy",
        "metadata": {"name": "t", "namespace": "ns", "resourceVersion": "1"},
        "spec": spec,
    }


@pytest.mark.parametrize(
    "spec, cause",
    [
        ({"word": "abcd", "size": 1}, "spec.word: Too long: may not be longer than 3"),
        ({"size": 12}, 'spec.size: Invalid value: "integer": over 10'),
        ({"word": "bad", "size": 1}, 'spec.word: Invalid value: "object": a good word'),
        (
            {"word": "ok"},
            'spec: Invalid value: "object": no such key: size evaluating rule: a word needs a size',
        ),
        (
            {"ports": [{"name": "a"}, {"name": "a"}, {"name": "a"}]},
            'spec.ports[1]: Duplicate value: map[string]interface {}{"name":"a"}',
        ),
    ],
)
def test_each_keyword_and_rule_option_refuses(spec, cause):
    assert cause in refused(TOY.create, toy(**spec))


def test_a_repeated_key_is_reported_once():
    ports = [{"name": "a"}] * 3
    assert refused(TOY.create, toy(ports=ports)) == [
        'spec.ports[1]: Duplicate value: map[string]interface {}{"name":"a"}'
    ]


def test_lengths_are_characters_nulls_go_and_unknown_fields_stay_where_preserved():
    extra = {"any": 1, "known": {"a": 1, "b": 2}}
    out = TOY.create(toy(word="ééé", size=1, ports=None, extra=extra))
    assert out["spec"] == {
        "word": "ééé",  # 6 bytes, 3 characters
        "size": 1,
        "extra": {"any": 1, "known": {"a": 1}},
    }


def test_transition_rules_run_on_update_where_an_old_value_correlates():
    old = TOY.create(toy(ports=[{"name": "a", "port": 1}], order=[{"v": 1}]))
    moved = toy(ports=[{"name": "b", "port": 9}, {"name": "a", "port": 1}], order=[{"v": 2}])
    assert TOY.update(moved, old)["spec"]["order"] == [{"v": 2}]  # atomic list: no oldSelf
    changed = toy(ports=[{"name": "b", "port": 9}, {"name": "a", "port": 2}])
    assert refused(TOY.update, changed, old) == [
        'spec.ports[1]: Invalid value: "object": port is immutable'
    ]


SETS = CustomResourceAdmission(
    toy_crd(
        {
            "properties": {
                "tags": {
                    "type": "array",
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string"},
                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "same"}],
                },
                "levels": {
                    "type": "array",
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "number"},
                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "same"}],
                },
                "values": {
                    "type": "array",
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "number"},
                    "x-kubernetes-validations": [
                        {"rule": "self.map(x, x) == oldSelf.map(x, x)", "message": "same"}
                    ],
                },
            }
        }
    ),
    version="v1",
)


def test_a_set_list_refuses_a_repeated_item_and_compares_regardless_of_order():
    assert refused(SETS.create, toy(tags=["a", "b", "a"])) == ['spec.tags[2]: Duplicate value: "a"']
    old = SETS.create(toy(tags=["a", "b"]))
    assert SETS.update(toy(tags=["b", "a"]), old)["spec"]["tags"] == ["b", "a"]
    assert refused(SETS.update, toy(tags=["a", "c"]), old) == [
        'spec.tags: Invalid value: "array": same'
    ]


def test_a_whole_number_in_a_number_set_is_not_equal_to_itself_in_cel():
    """kube's CEL `==` on a set looks the other list's values (doubles) up among its own
    decoded items, where a whole number is an int64: not found. Its values, mapped into a
    plain list, compare as numbers (and in order)."""
    old = SETS.create(toy(levels=[0.5, 0.25], values=[0.5, 0.25]))
    assert SETS.update(toy(levels=[0.25, 0.5], values=[0.5, 0.25]), old)  # floats: found
    old = SETS.create(toy(levels=[1, 0.5], values=[1, 0.5]))
    assert refused(SETS.update, toy(levels=[1, 0.5], values=[1, 0.5]), old) == [
        'spec.levels: Invalid value: "array": same'
    ]
    assert SETS.update(toy(values=[1, 0.5]), old)["spec"]["values"] == [1, 0.5]
    assert refused(SETS.update, toy(values=[0.5, 1]), old) == [
        'spec.values: Invalid value: "array": same'
    ]


@pytest.mark.parametrize(
    "schema, error",
    [
        ({"properties": {"at": {"type": "string", "format": "date-time"}}}, NotImplementedError),
        ({"additionalProperties": {"type": "string"}}, NotImplementedError),
        ({"properties": {"n": {"type": "integer", "multipleOf": 2}}}, NotImplementedError),
        ({"properties": {"s": {"type": "string", "nullable": True}}}, NotImplementedError),
        (
            {
                "properties": {
                    "t": {
                        "type": "array",
                        "x-kubernetes-list-type": "set",
                        "items": {"type": "object"},
                    }
                }
            },
            NotImplementedError,
        ),
        ({"x-kubernetes-validations": [{"rule": "self.split('/') == []"}]}, NotImplementedError),
        (
            {"x-kubernetes-validations": [{"rule": "true", "messageExpression": "'x'"}]},
            NotImplementedError,
        ),
        ({"x-kubernetes-validations": [{"rule": "true", "fieldPath": ".nope"}]}, ValueError),
        (
            {"x-kubernetes-validations": [{"rule": "true", "optionalOldSelf": True}]},
            NotImplementedError,
        ),
    ],
    ids=[
        "format",
        "additional-properties",
        "multiple-of",
        "nullable",
        "list-type-set-of-objects",
        "cel-function",
        "message-expression",
        "field-path",
        "optional-old-self",
    ],
)
def test_what_the_double_does_not_emulate_is_refused_when_it_is_built(schema, error):
    with pytest.raises(error):
        CustomResourceAdmission(toy_crd(schema), version="v1")


@pytest.mark.parametrize(
    "value, printed",
    [
        (0.5, "0.5"),
        (1.0, "1"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1e-5, "1e-05"),
        (1.5e300, "1.5e+300"),
    ],
)
def test_floats_print_as_go_prints_them(value, printed):
    assert go_float(value) == printed


def test_a_sweep_must_name_each_output_with_the_placeholder():
    """Several thresholds need {threshold} in the output's name (outputDataset, or
    arrayStore.parameters, which defaults to DaCapo's threshold_{threshold}); one does not."""
    sweep = {"thresholds": [0.3, 0.4]}
    assert refused(API.create, manifest(**sweep, outputDataset="mask")) == [
        'spec.outputDataset: Invalid value: "object": must name each threshold\'s output with '
        "{threshold}, e.g. threshold_{threshold}"
    ]
    API.create(manifest(**sweep, outputDataset="out/t_{threshold}"))
    API.create(manifest(thresholds=[0.3], outputDataset="mask"))
    store = {"basedir": "/d", "run": "r", "iteration": 1, "dataset": "v"}
    assert (
        API.create(manifest(source={"arrayStore": store}, **sweep))["spec"]["arrayStore"][
            "parameters"
        ]
        == "threshold_{threshold}"
    )
    fixed = {"arrayStore": {**store, "parameters": "threshold_0.5"}}
    assert refused(API.create, manifest(source=fixed, **sweep)) == [
        'spec.arrayStore.parameters: Invalid value: "object": must name each threshold\'s '
        "output with {threshold}, e.g. threshold_{threshold} (or leave it out)"
    ]


@pytest.mark.parametrize(
    ("run", "ok"),
    [(".", False), ("..", False), ("a/b", False), ("../x", False),
     ("...", True), (".hidden", True), ("..x", True), ("run_1", True)],
)  # fmt: skip
def test_an_array_store_run_is_one_folder_name(run, ok):
    """The admission rule and the model agree: a run names a folder of basedir, never a way
    out of it (`../../escape` wrote outside the array store)."""
    doc = manifest(source={"arrayStore": {**ARRAY_STORE, "run": run}})
    if ok:
        API.create(doc)
        assert ThresholdJobSpec.model_validate(doc["spec"]).array_store is not None
    else:
        assert any("must be one folder name" in c for c in refused(API.create, doc))
        with pytest.raises(ValueError, match="must be one folder name"):
            ThresholdJobSpec.model_validate(doc["spec"])
