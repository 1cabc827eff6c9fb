"""Generate the ThresholdJob CRD from the pydantic model (kubebuilder-style: the API
types are the one source of truth; `threshold-operator crd` prints the YAML)."""

from __future__ import annotations

from typing import Any

import yaml

from .api import (
    CATEGORIES,
    GROUP,
    IMMUTABLE,
    KIND,
    KUEUE_SUSPEND_RULE,
    MUTABLE,
    ONE_SOURCE_RULES,
    PLAN_FIELDS,
    PLURAL,
    RETRY_RULE,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    ThresholdJobSpec,
    ThresholdJobStatus,
)

CRD_NAME = f"{PLURAL}.{GROUP}"
DROP = {"title", "$defs"}


def _structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's JSON schema -> a structural OpenAPI v3 schema (no refs, no nulls)."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        if len(options) == 1:
            return _structural({**options[0], **rest}, defs)
        raise ValueError(f"unions are not structural: {schema}")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in DROP:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _structural(value, defs)
        elif key == "additionalProperties" and value is False:
            continue  # structural schemas prune unknown fields anyway
        elif key == "const":
            out["enum"] = [value]
        elif key == "default" and value is None:
            continue
        elif key == "minLength" and schema.get("type") == "array":
            out["minItems"] = value
        elif key == "maxLength" and schema.get("type") == "array":
            out["maxItems"] = value
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _model_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="serialization")
    return _structural(raw, raw.get("$defs", {}))


def _unchanged(field: str, schema: dict[str, Any]) -> str:
    """CEL for "spec.<field> is as it was". A list-type set compares as a list of its CEL
    values, in order (`map(x, x)` makes plain CEL lists, compared item by item), because of
    kube's `==` on a set, as read in upstream code (not run here: no kube-apiserver):
    `unstructuredSetList.Equal` (k8s.io/apiserver/pkg/cel/common/values.go; cel-go's `==`
    calls the left side's Equal) ignores order and looks up each of the other list's CEL
    values, for a `number` item the float64 of a `types.Double`, in a Go map keyed by this
    list's decoded JSON items. kube decodes a whole number in JSON as an int64
    (k8s.io/apimachinery/pkg/util/json, convertNumber), and Go writes a float64 such as 1.0
    as `1`, so after a trip through storage a number set with a whole number does not find
    it, not even in itself: `self.thresholds == oldSelf.thresholds` would refuse every
    update, the operator's status writes too."""
    if schema.get("x-kubernetes-list-type") == "set":
        return f"self.{field}.map(x, x) == oldSelf.{field}.map(x, x)"
    return f"self.{field} == oldSelf.{field}"


def _spec_rules(properties: dict[str, Any]) -> list[dict[str, str]]:
    """Transition rules that pin every field but parallelism, suspend and retry, Kueue's
    rule on suspend, retry's (it only grows), then the one-source rules."""
    may_change = ", ".join(MUTABLE)
    rules = []
    for field in IMMUTABLE:
        why = "it defines the plan" if field in PLAN_FIELDS else "the Jobs are made from it"
        rules.append(
            {
                "rule": f"has(self.{field}) == has(oldSelf.{field}) && "
                f"(!has(self.{field}) || {_unchanged(field, properties[field])})",
                "message": f"spec.{field} is immutable: {why}; create a new ThresholdJob "
                f"(only {may_change} may change)",
            }
        )
    rules.append(dict(KUEUE_SUSPEND_RULE))
    rules.append(dict(RETRY_RULE))
    rules.extend(dict(rule) for rule in ONE_SOURCE_RULES)
    return rules


def crd() -> dict[str, Any]:
    spec = _model_schema(ThresholdJobSpec)
    spec["description"] = "What to threshold, and how to run it"
    spec["x-kubernetes-validations"] = [
        *spec.get("x-kubernetes-validations", []),
        *_spec_rules(spec["properties"]),
    ]
    status = _model_schema(ThresholdJobStatus)  # strict: kopf keeps nothing in it (handlers.py)
    schema = {
        "type": "object",
        "description": "Blockwise thresholding of a zarr array: output = input > threshold (uint8).",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Blocks",
            "type": "string",
            "jsonPath": ".status.progress",
            "description": "blocks done/total",
        },
        {
            "name": "ETA",
            "type": "string",
            "jsonPath": ".status.eta",
            "description": "estimated completion time, from the recent rate",
        },
        {"name": "Pool", "type": "string", "jsonPath": ".spec.pool"},
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_yaml() -> str:
    header = "# Generated by `threshold-operator crd` from threshold_operator.api; do not edit.\n"
    return header + yaml.dump(crd(), Dumper=_NoAliases, sort_keys=False, width=100)
