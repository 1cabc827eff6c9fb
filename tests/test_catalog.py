"""The node-pool catalog is checked when the operator starts, as kube-apiserver would check
the pods made from it: a catalog it admits never makes a Job the server refuses."""

from __future__ import annotations

from fractions import Fraction

import pytest
import yaml

from kube_validation import validate_create
from threshold_operator.api import ThresholdJobSpec
from threshold_operator.catalog import CatalogError, PoolSpec, load_catalog
from threshold_operator.jobs import Settings, work_job
from threshold_operator.quantity import parse_quantity

BODY = {"metadata": {"name": "tj", "namespace": "default", "uid": "u-1"}}
SPEC = ThresholdJobSpec.model_validate(
    {
        "inputContainer": "/data/a.zarr",
        "inputDataset": "raw",
        "outputContainer": "/data/a.zarr",
        "outputDataset": "mask",
    }
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("2", Fraction(2)),
        (2, Fraction(2)),
        (0.5, Fraction(1, 2)),
        ("4Gi", Fraction(4 * 2**30)),
        ("1e3", Fraction(1000)),
        ("1.5k", Fraction(1500)),
        (".5", Fraction(1, 2)),
    ],
)
def test_quantities_are_read_exactly(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "2 Gi", "Gi", "2GB", "1e", True, "0x10"])
def test_what_is_not_a_quantity_is_refused(text):
    with pytest.raises(ValueError, match="is not a quantity"):
        parse_quantity(text)


def _catalog(tmp_path, pool: dict) -> dict[str, PoolSpec]:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"pools": {"lab": pool}}))
    return load_catalog(path)


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            {"requests": {"memory": "8Gi"}, "limits": {"memory": "4Gi"}},
            "requests.memory (8Gi) exceeds limits.memory (4Gi)",
        ),
        (
            {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}},
            "requests.cpu (2) exceeds limits.cpu (1500m)",
        ),
        (
            {"requests": {"example.com/fpga": "1"}, "limits": {"example.com/fpga": "2"}},
            "example.com/fpga cannot be overcommitted",
        ),
        ({"limits": {"example.com/fpga": "500m"}}, "example.com/fpga 500m must be a whole number"),
        ({"requests": {"cpu": "fast"}}, "is not a quantity"),
        ({"requests": {"bad name!": "1"}}, "bad name!"),
    ],
)
def test_resources_kube_would_refuse_are_refused_at_start(tmp_path, resources, message):
    with pytest.raises(CatalogError, match=r"node-pool catalog .*lab") as refused:
        _catalog(tmp_path, {"resources": resources})
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "toleration",
    [
        {"operator": "Equal", "value": "x"},  # no key: only Exists matches every taint
        {"key": "k", "operator": "Exists", "value": "x"},
        {"key": "k", "tolerationSeconds": 30, "effect": "NoSchedule"},
        {"key": "k", "operator": "Sometimes"},
        {"key": "bad key"},
    ],
)
def test_tolerations_kube_would_refuse_are_refused_at_start(tmp_path, toleration):
    with pytest.raises(CatalogError, match="tolerations"):
        _catalog(tmp_path, {"tolerations": [toleration]})


def test_a_limit_without_a_request_requests_the_limit_not_the_default(tmp_path):
    """The default request (2Gi memory) is above a 1Gi limit: kube defaults a missing
    request to its limit, and so does the catalog, so the Job is one the server accepts."""
    pool = _catalog(tmp_path, {"resources": {"limits": {"memory": "1Gi"}}})["lab"]
    resources = pool.container_resources()
    assert resources == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    job = work_job(BODY, SPEC, pool, Settings(), 4, "f")
    assert validate_create("jobs", job) == []


def test_every_default_pool_makes_a_job_the_server_accepts():
    for name, pool in load_catalog(None).items():
        job = work_job(BODY, SPEC.model_copy(update={"pool": name}), pool, Settings(), 4, "f")
        assert validate_create("jobs", job) == [], name


def test_what_the_catalog_refuses_kube_apiserver_would_refuse_too():
    """The pool check is not stricter than the server: a pool built past it (no
    validation) makes a Job that kube_validation, kube's rules, refuses."""
    from threshold_operator.catalog import Resources

    resources = Resources(requests={"memory": "8Gi"}, limits={"memory": "4Gi"})
    pool = PoolSpec.model_construct(
        node_selector={},
        tolerations=[],
        resources=resources,
        gpu=False,
        runtime_class_name=None,
        priority_class_name=None,
    )
    causes = validate_create("jobs", work_job(BODY, SPEC, pool, Settings(), 4, "f"))
    assert [c.field for c in causes] == ["spec.template.spec.containers[0].resources.requests"], (
        causes
    )
