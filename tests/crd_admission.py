"""A strict stand-in for kube-apiserver admitting the ThresholdJob custom resource.

It reads the CRD document (the committed YAML, not the pydantic model it was generated from)
and does to a create or an update what apiextensions-apiserver 1.30-1.33 does, in its order:

1. Decode. The body is strict JSON: NaN, Infinity or a number beyond float64 is a 400, as Go's
   decoder answers; an integer beyond int64 becomes a float. `create` and `update` take a dict
   and send it through `json.dumps` first, as the Python client does; `decode` takes the raw
   body (of a patch too, which it only parses).
2. Prune. Fields the schema does not name go, except under `x-kubernetes-preserve-unknown-fields`
   (where named fields are still pruned inside); `metadata` keeps only ObjectMeta's fields, and
   a metadata field of the wrong JSON type is a 400.
3. Nulls and defaults. A null without a default is dropped; a default fills an absent (or
   null) field whose parent object exists, so `default: {}` on an object lets its own fields'
   defaults apply.
4. Strategy. Create drops `status` (status subresource) and sets `metadata.generation` 1. An
   update keeps the stored status and sets generation to the stored one, plus one when anything
   but metadata changed; an update of `/status` keeps all of the stored object but `status`
   (and managedFields). uid, resourceVersion and creationTimestamp are the caller's to assign.
5. Validation, one 422 (`kube_status.invalid`) with kube's causes and message: apiVersion and
   kind; ObjectMeta (kube_validation's `object_meta`, `object_meta_update`); the OpenAPI v3
   schema with kube-openapi's rules and messages (type with JSON number semantics, enum,
   minimum/maximum, minLength/maxLength in characters, pattern as RE2, minItems/maxItems,
   required); `x-kubernetes-list-type` uniqueness: a `map`'s keys, a `set`'s items (scalars,
   compared as Go compares the decoded values: 0.1 and 0.1000000000000000055 are one float64,
   so are 0.0 and -0.0, while 1 (an int64) and 1.0 (a float64) differ), each repeated value
   reported once, at its second place; then, unless a type, required, enum or size error
   already stands, the `x-kubernetes-validations` rules run on cel-python with `self` typed by
   the schema at the rule's node and `oldSelf` the correlated old value (object fields by name,
   map-list items by key), transition rules only on update and only where the old value
   exists, honouring `message` and `fieldPath`. A `map` or `set` list compares with `==`
   regardless of order, as kube's CEL values do; a `set` looks the other list's CEL values up
   among its own decoded ones, so a whole number of a `number` set (an int64, once decoded)
   is not equal to itself in CEL.

The schema keywords are those the committed CRD uses (SCHEMA_KEYWORDS); a CRD with any other
(`additionalProperties`, `nullable`, `multipleOf`, `format`, `allOf`, list-type `set` of
objects or lists, a rule's `messageExpression` or `reason`...) or a CEL function cel-python
lacks is refused when the double is built, never half-checked. Not emulated either: the CRD's own admission (structural
schema, CEL type checking and cost), validation ratcheting (kube 1.30+ forgives unchanged
invalid fields on update; here an update must be valid as a whole, list types excepted),
server-side apply and managedFields, `fieldValidation=Strict`, resourceVersion conflicts
(k8s_emulator's), version conversion and the scale subresource.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import re2
import yaml
from celpy import celtypes

import kube_status as ks
from kube_status import INVALID, OMIT, Cause, field_error
from kube_validation import Errors, object_meta, object_meta_update

PRESERVE = "x-kubernetes-preserve-unknown-fields"
RULES = "x-kubernetes-validations"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SCHEMA_KEYWORDS = {
    "type", "description", "default", "properties", "items", "required", "enum",
    "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    RULES, PRESERVE, "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
}  # fmt: skip
RULE_KEYWORDS = {"rule", "message", "fieldPath"}
# CEL names cel-python provides: its functions plus the macros.
CEL_NAMES = set(celpy.evaluation.base_functions) | {
    "has", "all", "exists", "exists_one", "map", "filter", "dyn",
}  # fmt: skip
# Schema errors after which kube does not run the CEL rules (strategy.go hasBlockingErr).
BLOCKING = {ks.NOT_SUPPORTED, ks.REQUIRED, ks.TOO_LONG, ks.TOO_MANY, ks.TYPE_INVALID}
_TEXT, _COUNT = (str, "string", None, ""), (int, "int64", None, "")
_LABELS = (dict, "map[string]string", str, "string")
OBJECT_META = {  # field -> its JSON type and Go's name of it, and the same of its items
    **dict.fromkeys(("name", "generateName", "namespace", "selfLink", "uid"), _TEXT),
    **dict.fromkeys(("resourceVersion", "creationTimestamp", "deletionTimestamp"), _TEXT),
    **dict.fromkeys(("generation", "deletionGracePeriodSeconds"), _COUNT),
    **dict.fromkeys(("labels", "annotations"), _LABELS),
    "ownerReferences": (list, "[]v1.OwnerReference", dict, "v1.OwnerReference"),
    "finalizers": (list, "[]string", str, "string"),
    "managedFields": (list, "[]v1.ManagedFieldsEntry", dict, "v1.ManagedFieldsEntry"),
}
NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def go_equal(a: Any, b: Any) -> bool:
    """reflect.DeepEqual of decoded JSON: 1 (int64) and 1.0 (float64) differ."""
    if json_type(a) != json_type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(go_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(go_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def stored(v: Any) -> Any:
    """What reading the object back gives: Go writes an integral float64 below 1e21 as "1"."""
    if isinstance(v, dict):
        return {k: stored(x) for k, x in v.items()}
    if isinstance(v, list):
        return [stored(x) for x in v]
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return int(v)
    return v


# --- CEL --------------------------------------------------------------------------------------


class UnorderedList(celtypes.ListType):
    """A `list-type: map` list: CEL equality ignores order."""

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, list) or len(self) != len(other):
            return False
        return all(any(_cel_eq(a, b) for b in other) for a in self) and all(
            any(_cel_eq(b, a) for a in self) for b in other
        )

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)


class SetList(celtypes.ListType):
    """A `list-type: set` list, as kube's CEL value of one (unstructuredSetList): `==` ignores
    order and looks each CEL value of the other list up among this list's decoded items by
    Go's map-key equality. A whole number of a `number` set is decoded as an int64 and seen
    as a double, so such a set is not `==` to an equal one, not even to itself."""

    def __init__(self, items: list[Any], decoded: list[Any]) -> None:
        super().__init__(items)
        self.keys = {go_key(x) for x in decoded}

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, list) or len(self) != len(other):
            return False
        return all(go_key(_native(x)) in self.keys for x in other)

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)


def go_key(value: Any) -> tuple[str, Any]:
    """A decoded JSON scalar as a Go map key: its Go type and value (0.0 and -0.0 are one
    key, 1 (int64) and 1.0 (float64) two)."""
    return json_type(value), value


def _native(value: Any) -> Any:
    """A CEL value's Go value (ref.Val.Value()): a double is a float64, an int an int64."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    return value


def _cel_eq(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except TypeError:
        return False


@dataclass
class Rule:
    """One x-kubernetes-validations entry, compiled."""

    spec: dict[str, Any]
    program: Any
    uses_old_self: bool
    field_path: str

    @property
    def error_string(self) -> str:  # ruleErrorString
        return (self.spec.get("message") or self.spec["rule"]).strip()


def _compile(environment: celpy.Environment, source: str, where: str) -> tuple[Any, bool]:
    ast = environment.compile(source)
    for node in ast.iter_subtrees():
        if node.data in ("ident_arg", "member_dot_arg"):
            name = str(node.children[0] if node.data == "ident_arg" else node.children[1])
            if name not in CEL_NAMES:
                raise NotImplementedError(f"{where}: CEL function {name}() is not emulated")
    uses_old = any(
        str(tok) == "oldSelf" for node in ast.find_data("ident") for tok in node.children
    )
    return environment.program(ast), uses_old


def _field_path(path: str, schema: dict[str, Any], where: str) -> str:
    """A rule's fieldPath (".a.b") as kube's field path suffix, checked on the schema."""
    if not re.fullmatch(r"(\.[A-Za-z0-9_]+)+", path):
        raise NotImplementedError(f"{where}: fieldPath {path} is not emulated")
    for key in path.split(".")[1:]:
        if key not in schema.get("properties", {}):
            raise ValueError(f"{where}: fieldPath {path} does not refer to a valid field")
        schema = schema["properties"][key]
    return path


def to_cel(value: Any, schema: dict[str, Any] | None, root: bool = False) -> Any:
    """A decoded value as the CEL value kube gives rules: typed by the schema, not by JSON."""
    schema = schema or {}
    typ = schema.get("type")
    if value is None:
        return None
    if not typ and schema.get(PRESERVE):
        return celpy.json_to_cel(value)
    if isinstance(value, dict):
        props, out = schema.get("properties", {}), {}
        for k, v in value.items():
            sub = props.get(k)
            if root and k == "metadata":  # rules see only name and generateName
                out[celtypes.StringType(k)] = celpy.json_to_cel(
                    {m: v[m] for m in ("name", "generateName") if m in v}
                )
            elif sub is not None:
                out[celtypes.StringType(k)] = to_cel(v, sub)
            elif schema.get(PRESERVE):
                out[celtypes.StringType(k)] = celpy.json_to_cel(v)
        return celtypes.MapType(out)
    if isinstance(value, list):
        items = [to_cel(x, schema.get("items")) for x in value]
        if schema.get("x-kubernetes-list-type") == "set":
            return SetList(items, value)
        kind = UnorderedList if schema.get("x-kubernetes-list-type") == "map" else celtypes.ListType
        return kind(items)
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if typ == "number":
        return celtypes.DoubleType(float(value))
    if typ == "integer":
        return celtypes.IntType(int(value))
    return celpy.json_to_cel(value)


def _cel_error_text(error: celpy.CELEvalError) -> str:
    message = str(error.args[0]) if error.args else str(error)
    if len(error.args) > 1 and error.args[1] is KeyError:
        found = re.search(r"'(.*)'", message)
        return f"no such key: {found.group(1) if found else message}"
    if "no matching overload" in message:
        return f"no such overload: {message}"
    return message


def _evaluate(program: Any, activation: dict[str, Any]) -> Any:
    try:
        return program.evaluate(activation)
    except celpy.CELEvalError as error:
        return error


# --- the double -------------------------------------------------------------------------------


class CustomResourceAdmission:
    """Admits objects of one custom resource kind the way kube-apiserver does (see the module)."""

    def __init__(self, crd: dict[str, Any], version: str = "v1alpha1") -> None:
        spec = crd["spec"]
        self.group, self.kind = spec["group"], spec["names"]["kind"]
        self.version = version
        self.api_version = f"{self.group}/{version}"
        self.namespaced = spec.get("scope", "Namespaced") == "Namespaced"
        versions = {v["name"]: v for v in spec["versions"] if v.get("served", True)}
        if version not in versions:
            raise ValueError(f"{crd['metadata']['name']} serves no version {version}")
        served = versions[version]
        self.schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
        subresources = served.get("subresources") or {}
        if "scale" in subresources:
            raise NotImplementedError("the scale subresource is not emulated")
        self.status_subresource = "status" in subresources
        self._cel = celpy.Environment()
        self._rules: dict[int, list[Rule]] = {}
        self._prepare(self.schema, "")

    @classmethod
    def from_file(cls, path: Path, version: str = "v1alpha1") -> CustomResourceAdmission:
        return cls(yaml.safe_load(Path(path).read_text()), version)

    def _prepare(self, schema: dict[str, Any], where: str) -> None:
        """Refuse what is not emulated; compile patterns and rules (as the CRD's admission would)."""
        unknown = set(schema) - SCHEMA_KEYWORDS
        list_type = schema.get("x-kubernetes-list-type")
        if list_type not in (None, "atomic", "map", "set"):
            unknown.add("x-kubernetes-list-type: " + list_type)
        if list_type == "set" and (schema.get("items") or {}).get("type") in (
            None,
            "object",
            "array",
        ):
            unknown.add("x-kubernetes-list-type: set of objects or lists")
        if unknown:
            raise NotImplementedError(f"{where or '<root>'}: {sorted(unknown)} not emulated")
        if "pattern" in schema:
            re2.compile(schema["pattern"])
        rules = []
        for spec in schema.get(RULES, []):
            if set(spec) - RULE_KEYWORDS:
                raise NotImplementedError(
                    f"{where}: {sorted(set(spec) - RULE_KEYWORDS)} not emulated"
                )
            program, uses_old = _compile(self._cel, spec["rule"], where)
            path = _field_path(spec["fieldPath"], schema, where) if spec.get("fieldPath") else ""
            rules.append(Rule(spec, program, uses_old, path))
        if rules:
            self._rules[id(schema)] = rules
        for name, sub in schema.get("properties", {}).items():
            self._prepare(sub, f"{where}.{name}".lstrip("."))
        if "items" in schema:
            self._prepare(schema["items"], f"{where}[]")

    # --- requests ---

    def decode(self, body: bytes | str, patch: bool = False) -> Any:
        """The request body as kube's JSON decoder reads it, or the 400 it answers (a patch
        is only parsed: it names no kind)."""
        text = body.decode() if isinstance(body, bytes) else body
        summary = text if len(text) <= 30 else text[:30] + " ..."
        if not text.startswith("{"):
            summary = text.encode().hex() if len(text) <= 30 else text[:30].encode().hex() + " ..."
        unrecognized = f"the object provided is unrecognized (must be of type {self.kind})"
        try:
            doc = json.loads(
                text, parse_constant=_refuse_constant, parse_float=_float, parse_int=_int
            )
        except _NotJSON as error:
            raise ks.bad_request(f"{unrecognized}: {error} ({summary})") from None
        except json.JSONDecodeError as error:
            raise ks.bad_request(f"{unrecognized}: invalid JSON: {error.msg} ({summary})") from None
        except _OutOfRange as error:
            raise self._decode_error(
                f"cannot unmarshal number {error} into Go value of type float64"
            ) from None
        if patch:
            return doc
        if not isinstance(doc, dict):
            raise ks.bad_request(
                f"{unrecognized}: json: cannot unmarshal {json_type(doc)} ({summary})"
            )
        if not doc.get("kind"):
            raise ks.bad_request(
                f"{unrecognized}: Object 'Kind' is missing in '{text}' ({summary})"
            )
        if doc.get("apiVersion") != self.api_version:
            raise ks.bad_request(
                f"the API version in the data ({doc.get('apiVersion', '')}) does not match "
                f"the expected API version ({self.api_version})"
            )
        return doc

    def create(self, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """POST: the object to store (pruned, defaulted, generation 1), or a StatusError (422,
        400). `namespace` is the request URL's: it fills an empty metadata.namespace and must
        match a given one."""
        new = self._coerce(self.decode(json.dumps(obj)))
        meta = new["metadata"]
        self._match_namespace(meta, namespace)
        if self.status_subresource:
            new.pop("status", None)
        meta["generation"] = 1
        meta.pop("deletionTimestamp", None)
        meta.pop("deletionGracePeriodSeconds", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = ks.generate_name(meta["generateName"])
        e = Errors()
        if not self._type_meta(new, e):
            object_meta(e, meta, namespaced=self.namespaced, kube_finalizers=False)
            self._check(new, self.schema, "", e)
        self._list_types(new, self.schema, "", e)
        self._cel_rules(new, None, e)
        if e:
            raise ks.invalid(self.kind, self.group, meta.get("name", ""), e)
        return stored(new)

    def update(
        self,
        obj: dict[str, Any],
        old: dict[str, Any],
        subresource: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """PUT (a PATCH already applied to `old`) of the object or of its `/status`. `old` is
        the stored object. Returns the object to store, with metadata.generation as kube sets
        it; raises a StatusError (422, 400)."""
        if subresource not in (None, "status") or (subresource and not self.status_subresource):
            raise NotImplementedError(f"subresource {subresource} is not emulated")
        new = self._coerce(self.decode(json.dumps(obj)))
        old = self._coerce(copy.deepcopy(old))
        meta, old_meta = new["metadata"], old["metadata"]
        self._match_namespace(meta, namespace)
        if subresource == "status":
            status, managed = new.get("status", OMIT), meta.get("managedFields")
            new = copy.deepcopy(old)
            meta = new["metadata"]
            if managed is not None:
                meta["managedFields"] = managed
            new.pop("status", None)
            if status is not OMIT:
                new["status"] = status
        else:
            meta["generation"] = old_meta.get("generation", 0)
            if self.status_subresource:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
            outside = [{k: v for k, v in o.items() if k != "metadata"} for o in (new, old)]
            if not go_equal(*outside):
                meta["generation"] += 1
        if not meta.get("uid") and old_meta.get("uid"):
            meta["uid"] = old_meta["uid"]
        for key in ("creationTimestamp", "deletionTimestamp"):
            if key in old_meta:
                meta[key] = old_meta[key]
        if "deletionGracePeriodSeconds" in old_meta:
            meta.setdefault("deletionGracePeriodSeconds", old_meta["deletionGracePeriodSeconds"])
        e = Errors()
        object_meta(e, meta, namespaced=self.namespaced, kube_finalizers=False)
        object_meta_update(e, meta, old_meta)
        typed = not self._type_meta(new, e)
        if typed and subresource != "status":
            self._check(new, self.schema, "", e)
        elif typed and "status" in new:  # messages name the field from status, as kube's do
            inner = Errors()
            self._check(new["status"], self.schema["properties"]["status"], "", inner)
            e += [Cause(f"status.{c.field}", c.message, c.reason) for c in inner]
        old_lists = Errors()
        self._list_types(old, self.schema, "", old_lists)
        if not old_lists:  # list-type errors ratchet (strategy.go)
            self._list_types(new, self.schema, "", e)
        self._cel_rules(new, old, e)
        if e:
            raise ks.invalid(self.kind, self.group, meta.get("name", ""), e)
        return stored(new)

    # --- decoding into the schema ---

    def _coerce(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Prune, coerce ObjectMeta, drop nulls that have no default, apply defaults."""
        keep = {k: doc.pop(k) for k in ("apiVersion", "kind") if k in doc}
        meta = self._object_meta(doc.pop("metadata", None))
        _prune(doc, self.schema)
        _default(doc, self.schema)
        return {**keep, "metadata": meta, **doc}

    def _object_meta(self, meta: Any) -> dict[str, Any]:
        """ObjectMeta's fields, each of its JSON type (a 400 otherwise)."""
        if meta is None:
            return {}
        if not isinstance(meta, dict):
            detail = f"cannot unmarshal {json_type(meta)} into Go struct field .metadata"
            raise self._decode_error(detail)
        out: dict[str, Any] = {}
        for key, (kind, go_kind, inner, go_inner) in OBJECT_META.items():
            value = meta.get(key)
            if value is None:
                continue
            wrong, into = [value], go_kind
            if isinstance(value, kind) and not isinstance(value, bool):
                items = (value.values() if isinstance(value, dict) else value) if inner else []
                wrong, into = [v for v in items if not isinstance(v, inner)], go_inner
            if wrong:
                field = f"ObjectMeta.metadata.{key}"
                detail = f"cannot unmarshal {json_type(wrong[0])} into Go struct field {field} of type {into}"
                raise self._decode_error(detail)
            out[key] = value
        return out

    def _decode_error(self, detail: str) -> ks.StatusError:
        in_version = f'{self.kind} in version "{self.version}"'
        return ks.bad_request(f"{in_version} cannot be handled as a {self.kind}: json: {detail}")

    @staticmethod
    def _match_namespace(meta: dict[str, Any], namespace: str | None) -> None:
        if namespace is None:
            return
        if not meta.get("namespace"):
            meta["namespace"] = namespace
        elif meta["namespace"] != namespace:
            raise ks.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )

    def _type_meta(self, obj: dict[str, Any], e: Errors) -> bool:
        before = len(e)
        if obj.get("kind") != self.kind:
            e.invalid("kind", obj.get("kind"), f"must be {self.kind}")
        if obj.get("apiVersion") != self.api_version:
            e.invalid("apiVersion", obj.get("apiVersion"), f"must be {self.api_version}")
        return len(e) > before

    # --- OpenAPI v3 schema (kube-openapi's validators and messages) ---

    def _check(self, value: Any, s: dict[str, Any], path: str, e: Errors) -> None:
        typ, shown = s.get("type"), path.lstrip(".")
        if value is None:
            if typ:
                e.append(_type_error(shown, typ, "null"))
            if "enum" in s:
                e.append(_not_supported(shown, None, s["enum"]))
            return
        actual = json_type(value)
        int_as_number = typ == "number" and actual == "integer"
        float_as_int = typ == "integer" and actual == "number" and value.is_integer()
        if typ and actual != typ and not (int_as_number or (float_as_int and abs(value) < 2**53)):
            e.append(_type_error(shown, typ, actual))
        if isinstance(value, str):
            _check_string(value, s, shown, e)
        if actual in ("integer", "number"):
            _check_number(value, s, shown, e)
        if isinstance(value, list):
            for i, item in enumerate(value):
                self._check(item, s.get("items") or {}, f"{path}[{i}]", e)
            if len(value) < s.get("minItems", 0):
                detail = f"{shown} in body should have at least {s['minItems']} items"
                e.invalid(shown, len(value), detail)
            if "maxItems" in s and len(value) > s["maxItems"]:
                e.add(ks.TOO_MANY, shown, len(value), f"must have at most {s['maxItems']} items")
        if "enum" in s and not any(
            go_equal(value, x) or _number_equal(value, x) for x in s["enum"]
        ):
            e.append(_not_supported(shown, value, s["enum"]))
        if isinstance(value, dict):
            for key, sub in s.get("properties", {}).items():
                if key in value:
                    self._check(value[key], sub, f"{path}.{key}", e)
            for key in s.get("required", []):
                if key not in value:
                    e.required(f"{path}.{key}".lstrip("."))

    # --- x-kubernetes-list-type: map and set ---

    def _list_types(self, value: Any, s: dict[str, Any] | None, path: str, e: Errors) -> None:
        if s is None:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                sub = s.get("properties", {}).get(key)
                self._list_types(item, sub, f"{path}.{key}".lstrip("."), e)
        elif isinstance(value, list):
            if s.get("x-kubernetes-list-type") == "map":
                e += _map_list_errors(value, s.get("x-kubernetes-list-map-keys", []), path)
            if s.get("x-kubernetes-list-type") == "set":
                e += _set_list_errors(value, path)
            for i, item in enumerate(value):
                self._list_types(item, s.get("items"), f"{path}[{i}]", e)

    # --- x-kubernetes-validations ---

    def _cel_rules(self, new: dict[str, Any], old: dict[str, Any] | None, e: Errors) -> None:
        if any(c.reason in BLOCKING for c in e):
            e.append(Cause("<nil>", f'Invalid value: "null": {NOT_CHECKED}'))
            return
        self._cel_node(new, old, self.schema, "", e, root=True)

    def _cel_node(
        self,
        value: Any,
        old: Any,
        s: dict[str, Any] | None,
        path: str,
        e: Errors,
        root: bool = False,
    ) -> None:
        if s is None or value is None:
            return
        for rule in self._rules.get(id(s), []):
            if rule.uses_old_self and old is None:
                continue  # a transition rule needs an old value to compare with
            self._run_rule(rule, value, old, s, path, e, root)
        if isinstance(value, dict):
            props = s.get("properties", {})
            for key, item in value.items():
                before = old.get(key) if isinstance(old, dict) else None
                self._cel_node(item, before, props.get(key), f"{path}.{key}".lstrip("."), e)
        elif isinstance(value, list):
            keys, olds = s.get("x-kubernetes-list-map-keys", []), {}
            if s.get("x-kubernetes-list-type") == "map" and isinstance(old, list):
                olds = {_map_key(o, keys): o for o in old if isinstance(o, dict)}
            for i, item in enumerate(value):
                before = olds.get(_map_key(item, keys)) if isinstance(item, dict) else None
                self._cel_node(item, before, s.get("items"), f"{path}[{i}]", e)

    def _run_rule(
        self, rule: Rule, value: Any, old: Any, s: dict[str, Any], path: str, e: Errors, root: bool
    ) -> None:
        kind = s.get("type", "")
        activation = {"self": to_cel(value, s, root)}
        if rule.uses_old_self:
            activation["oldSelf"] = to_cel(old, s, root)
        result = _evaluate(rule.program, activation)
        if isinstance(result, celpy.CELEvalError):
            text = _cel_error_text(result)
            if text.startswith("no such overload"):
                detail = (
                    f"'{text}': call arguments did not match a supported operator, function or "
                    f"macro signature for rule: {rule.error_string}"
                )
            else:
                detail = f"{text} evaluating rule: {rule.error_string}"
            e.invalid(path, kind, detail)
        elif not (result is True or (isinstance(result, celtypes.BoolType) and bool(result))):
            where = (path + rule.field_path).lstrip(".")
            message = rule.spec.get("message", "").strip()
            e.invalid(where, kind, message or f"failed rule: {rule.error_string}")


# --- helpers of the decoding and validation passes -------------------------------------------


class _NotJSON(Exception):
    pass


class _OutOfRange(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    if name == "-Infinity":
        raise _NotJSON("invalid character 'I' in numeric literal")
    raise _NotJSON(f"invalid character '{name[0]}' looking for beginning of value")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _OutOfRange(text)
    return value


def _int(text: str) -> int | float:
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else _float(text)


def _prune(x: Any, s: dict[str, Any] | None) -> None:
    """pruning.Prune: drop what the schema does not name (under preserve-unknown-fields, keep
    unknown fields and prune inside the known ones); nulls without a default go too
    (PruneNonNullableNullsWithoutDefaults)."""
    preserve = bool(s and s.get(PRESERVE))
    if isinstance(x, dict):
        props = (s or {}).get("properties", {})
        for key in list(x):
            if key in props and x[key] is None and "default" not in props[key]:
                del x[key]
            elif key in props:
                _prune(x[key], props[key])
            elif not preserve:
                del x[key]
    elif isinstance(x, list):
        for item in x:
            _prune(item, (s or {}).get("items"))


def _default(x: Any, s: dict[str, Any] | None) -> None:
    """defaulting.Default: absent (or null) fields of existing objects."""
    if s is None:
        return
    if isinstance(x, dict):
        for key, prop in s.get("properties", {}).items():
            if "default" in prop and x.get(key) is None:
                x[key] = copy.deepcopy(prop["default"])
            if key in x:
                _default(x[key], prop)
    elif isinstance(x, list):
        for item in x:
            _default(item, s.get("items"))


def _check_string(value: str, s: dict[str, Any], shown: str, e: Errors) -> None:
    """First failure only: maxLength, minLength, pattern (kube-openapi's stringValidator)."""
    if "maxLength" in s and len(value) > s["maxLength"]:
        e.add(ks.TOO_LONG, shown, value, f"may not be longer than {s['maxLength']}")
    elif "minLength" in s and len(value) < s["minLength"]:
        e.invalid(shown, value, f"{shown} in body should be at least {s['minLength']} chars long")
    elif "pattern" in s and not re2.search(s["pattern"], value):
        e.invalid(shown, value, f"{shown} in body should match '{s['pattern']}'")


def _check_number(value: float, s: dict[str, Any], shown: str, e: Errors) -> None:
    """minimum and maximum; Go converts the bound to the value's type to print it."""
    for key, outside, word in (("minimum", -1, "greater"), ("maximum", 1, "less")):
        if key in s:
            bound = int(s[key]) if isinstance(value, int) else float(s[key])
            if (value > bound) - (value < bound) == outside:
                detail = f"{shown} in body should be {word} than or equal to {ks.go_value(bound)}"
                e.invalid(shown, value, detail)


def _type_error(path: str, expected: str, actual: str) -> Cause:
    detail = f"{path} in body must be of type {expected}: {ks.go_quote(actual)}"
    return field_error(ks.TYPE_INVALID, path, actual, detail)


def _not_supported(path: str, value: Any, enum: list[Any]) -> Cause:
    allowed = [x if isinstance(x, str) else json.dumps(x) for x in enum]
    detail = "supported values: " + ", ".join(map(ks.go_quote, allowed))
    return field_error(ks.NOT_SUPPORTED, path, value, detail)


def _number_equal(a: Any, b: Any) -> bool:
    numbers = (int, float)
    plain = not isinstance(a, bool) and not isinstance(b, bool)
    return isinstance(a, numbers) and isinstance(b, numbers) and plain and a == b


def _map_key(item: dict[str, Any], keys: list[str]) -> str:
    return json.dumps({k: item[k] for k in keys if k in item}, sort_keys=True)


def _map_list_errors(items: list[Any], keys: list[str], path: str) -> list[Cause]:
    """listtype.validateListMap: items are objects, each key set once."""
    for i, item in enumerate(items):
        if item is not None and not isinstance(item, dict):
            detail = "must be an object for an array of list-type map"
            return [field_error(INVALID, f"{path}[{i}]", item, detail)]
    seen: dict[str, int] = {}
    causes = []
    for i, item in enumerate(items):
        key = _map_key(item or {}, keys)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:  # each key's second appearance, as kube reports it
            found = {k: item[k] for k in keys if k in item} if item else {}
            causes.append(field_error(ks.DUPLICATE, f"{path}[{i}]", found))
    return causes


def _set_list_errors(items: list[Any], path: str) -> list[Cause]:
    """listtype.validateListSet on scalars: each repeated value once, at its second place."""
    seen: dict[tuple[str, Any], int] = {}
    causes = []
    for i, item in enumerate(items):
        key = go_key(item)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            causes.append(field_error(ks.DUPLICATE, f"{path}[{i}]", item))
    return causes
