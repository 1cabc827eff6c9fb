"""A strict stand-in for kube-apiserver admitting one kind of custom resource.

It reads the CRD document (the committed YAML, not the pydantic model it was generated from)
and does to a create or an update what apiextensions-apiserver 1.30-1.33 does, in its order:

1. Decode. The body is strict JSON: NaN, Infinity or a number beyond float64 is a 400, as Go's
   decoder answers; an integer beyond int64 becomes a float. ``create`` and ``update`` take a
   dict and send it through ``json.dumps`` first, as the Python client does; ``decode`` takes
   the raw body.
2. Prune. Fields the schema does not name go, except under ``x-kubernetes-preserve-unknown-fields``
   (where named fields are still pruned inside); ``metadata`` keeps only ObjectMeta's fields and
   a metadata field of the wrong JSON type is a 400.
3. Nulls and defaults. A null without a default where the schema is not nullable is dropped; a
   default fills an absent (or non-nullable null) field whose parent object exists, so
   ``default: {}`` on an object lets its own fields' defaults apply.
4. Strategy. Create drops ``status`` (status subresource) and sets ``metadata.generation`` 1. An
   update keeps the stored status and sets generation to the stored one, plus one when anything
   but metadata changed; an update of ``/status`` keeps all of the stored object but ``status``
   (and managedFields). The returned object carries that generation; uid, resourceVersion and
   creationTimestamp are the caller's to assign.
5. Validation, one 422 :class:`Invalid` with kube's causes and message: apiVersion and kind;
   ObjectMeta (name a DNS-1123 subdomain, namespace a DNS-1123 label, labels, annotations,
   finalizers, ownerReferences; on update name, namespace and uid immutable and resourceVersion
   given); the OpenAPI v3 schema with kube-openapi's rules and messages (type with JSON number
   semantics, enum, minimum/maximum and their exclusive forms, multipleOf, minLength/maxLength in
   characters, pattern as RE2, minItems/maxItems, required, minProperties/maxProperties,
   additionalProperties); ``x-kubernetes-list-type`` set and map uniqueness; then, unless a type,
   required, enum or size error already stands, the ``x-kubernetes-validations`` rules run on
   cel-python with ``self`` typed by the schema at the rule's node and ``oldSelf`` the correlated
   old value (object fields by name, ``list-type: map`` items by key), transition rules only on
   update and only where the old value exists, honouring ``message``, ``messageExpression``,
   ``fieldPath`` and ``reason``.

Not emulated: the CRD's own admission (structural-schema rules; CEL type checking and cost
estimation, so a rule naming a missing field fails only when it runs), CEL runtime cost limits,
validation ratcheting (kube 1.30+ forgives unchanged invalid fields on update; here an update
must be valid as a whole), server-side apply and managedFields, ``fieldValidation=Strict``
(unknown fields are pruned silently), resourceVersion conflicts, version conversion, the scale
subresource, and ``format``, ``allOf``/``anyOf``/``oneOf``/``not``, ``uniqueItems``,
``x-kubernetes-int-or-string``, embedded resources, ``optionalOldSelf`` and CEL functions
cel-python lacks: a CRD using any of those is refused when the double is built, not half-checked.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import celpy
import re2
import yaml
from celpy import celtypes

PRESERVE = "x-kubernetes-preserve-unknown-fields"
RULES = "x-kubernetes-validations"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UNSUPPORTED = (
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "format",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
)
# CEL names cel-python provides: its functions plus the macros.
CEL_NAMES = set(celpy.evaluation.base_functions) | {
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "dyn",
}
# Schema errors after which kube does not run the CEL rules (strategy.go hasBlockingErr).
BLOCKING = {
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
}
WORDS = {
    "FieldValueNotFound": "Not found",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "FieldValueTypeInvalid": "Invalid value",
}
OBJECT_META = {  # field -> JSON type it must have (metav1.ObjectMeta)
    "name": str,
    "generateName": str,
    "namespace": str,
    "selfLink": str,
    "uid": str,
    "resourceVersion": str,
    "generation": int,
    "creationTimestamp": str,
    "deletionTimestamp": str,
    "deletionGracePeriodSeconds": int,
    "labels": dict,
    "annotations": dict,
    "ownerReferences": list,
    "finalizers": list,
    "managedFields": list,
}
OWNER_REFERENCE = ("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")
MANAGED_FIELDS = ("manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1")
DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = DNS_LABEL + "(\\." + DNS_LABEL + ")*"
QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


# --- errors, as kube-apiserver reports them -------------------------------------------------


class _Omit:
    pass


OMIT = _Omit()


@dataclass(frozen=True)
class Cause:
    """One field error: a metav1.StatusCause (reason is its type, message the error body)."""

    field: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def cause(reason: str, path: str, value: Any = OMIT, detail: str = "") -> Cause:
    """field.Error's ErrorBody: the type, the bad value (Go-printed) unless omitted, the detail."""
    body = WORDS[reason]
    silent = ("FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong")
    if reason not in silent and value is not OMIT:
        body += f": {go_value(value)}"
    if detail:
        body += f": {detail}"
    return Cause(path, reason, body)


class StatusError(Exception):
    """An answer other than 2xx, as a metav1.Status body."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


class BadRequest(StatusError):
    """400: the body could not be decoded into the kind."""

    code = 400
    reason = "BadRequest"


class Invalid(StatusError):
    """422: the object failed validation; ``causes`` lists every field error."""

    code = 422
    reason = "Invalid"

    def __init__(self, group: str, kind: str, name: str, causes: list[Cause]) -> None:
        self.group, self.kind, self.name, self.causes = group, kind, name, list(causes)
        super().__init__(self._message(name))

    def _message(self, name: str) -> str:
        texts = list(dict.fromkeys(str(c) for c in self.causes))  # ToAggregate drops repeats
        joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
        return f'{self.kind}.{self.group} "{name}" is invalid: {joined}'

    def to_status(self, name: str | None = None) -> dict[str, Any]:
        name = self.name if name is None else name
        status = {**super().to_status(), "message": self._message(name)}
        status["details"] = {
            "name": name,
            "group": self.group,
            "kind": self.kind,
            "causes": [
                {
                    "reason": c.reason,
                    "message": c.message,
                    **({"field": c.field} if c.field else {}),
                }
                for c in self.causes
            ],
        }
        return status

    def fields(self) -> list[str]:
        return [c.field for c in self.causes]


# --- Go's printing of values (fmt %v, %q, %#v) ----------------------------------------------


def go_float(f: float) -> str:
    """fmt's %v of a float64 (strconv 'g', shortest): %e when the exponent is < -4 or >= 6."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    sign, digits, exponent = Decimal(repr(f)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)  # digits before the decimal point
    lead = "-" if sign else ""
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        x = point - 1
        return f"{lead}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{lead}0.{'0' * -point}{text}"
    if point >= len(text):
        return lead + text + "0" * (point - len(text))
    return f"{lead}{text[:point]}.{text[point:]}"


def go_quote(s: str) -> str:
    """strconv.Quote."""
    named = {
        "\a": "\\a",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
    }
    out = []
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in named:
            out.append(named[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def go_sharp(v: Any) -> str:
    """%#v of a decoded JSON value (interface{} in Go)."""
    if isinstance(v, dict):
        inner = ", ".join(f"{go_quote(k)}:{go_sharp(v[k])}" for k in sorted(v))
        return "map[string]interface {}{" + inner + "}"
    if isinstance(v, list):
        return "[]interface {}{" + ", ".join(go_sharp(x) for x in v) + "}"
    if v is None:
        return "interface {}(nil)"
    return go_value(v)


def go_value(v: Any) -> str:
    """How field.Error prints a bad value."""
    if v is None:
        return '"null"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, str):
        return go_quote(v)
    return go_sharp(v)


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


# --- apimachinery's name checks -------------------------------------------------------------


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    text = msg + " (e.g. " + " or ".join(f"'{e}', " for e in examples)
    return text + "regex used for validation is '" + fmt + "')"


def dns_subdomain(value: str) -> list[str]:
    errs = ["must be no more than 253 characters"] if len(value) > 253 else []
    if not re2.fullmatch(DNS_SUBDOMAIN, value):
        errs.append(
            regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character",
                DNS_SUBDOMAIN,
                "example.com",
            )
        )
    return errs


def dns_label(value: str) -> list[str]:
    errs = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not re2.fullmatch(DNS_LABEL, value):
        errs.append(
            regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character",
                DNS_LABEL,
                "my-name",
                "123-abc",
            )
        )
    return errs


def qualified_name(value: str) -> list[str]:
    message = (
        "must consist of alphanumeric characters, '-', '_' or '.', "
        "and must start and end with an alphanumeric character"
    )
    parts = value.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + regex_error(message, QUALIFIED_NAME, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    errs = []
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        errs += [f"prefix part {m}" for m in (dns_subdomain(prefix) if prefix else [])]
    name = parts[-1]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not re2.fullmatch(QUALIFIED_NAME, name):
        errs.append(
            "name part " + regex_error(message, QUALIFIED_NAME, "MyName", "my.name", "123-abc")
        )
    return errs


def label_value(value: str) -> list[str]:
    errs = ["must be no more than 63 characters"] if len(value) > 63 else []
    fmt = f"({QUALIFIED_NAME})?"
    if not re2.fullmatch(fmt, value):
        message = (
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
        errs.append(regex_error(message, fmt, "MyValue", "my_value", "12345"))
    return errs


# --- CEL --------------------------------------------------------------------------------------


class UnorderedList(celtypes.ListType):
    """A ``list-type: set`` or ``map`` list: CEL equality ignores order."""

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, list) or len(self) != len(other):
            return False
        return all(any(_cel_eq(a, b) for b in other) for a in self) and all(
            any(_cel_eq(b, a) for a in self) for b in other
        )

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)


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
    message_program: Any
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
    """A rule's fieldPath (".a.b", ".a['b']") as kube's field path suffix, checked on the schema."""
    step = re.compile(r"\.([^.\[\]]+)|\['((?:[^'\\]|\\.)*)'\]")
    if not re.fullmatch(f"(?:{step.pattern})+", path):
        raise ValueError(f"{where}: fieldPath {path} is not a JSON path of fields")
    out = ""
    for name, quoted in step.findall(path):
        key = name or quoted.replace("\\'", "'")
        if key in schema.get("properties", {}):
            schema, out = schema["properties"][key], f"{out}.{key}"
        elif isinstance(schema.get("additionalProperties"), dict):
            schema, out = schema["additionalProperties"], f"{out}[{key}]"
        else:
            raise ValueError(f"{where}: fieldPath {path} does not refer to a valid field")
    return out


def to_cel(value: Any, schema: dict[str, Any] | None, root: bool = False) -> Any:
    """A decoded value as the CEL value kube gives rules: typed by the schema, not by JSON."""
    schema = schema or {}
    typ = schema.get("type")
    if value is None:
        return None
    if not typ and schema.get(PRESERVE):
        return celpy.json_to_cel(value)
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        out = {}
        for k, v in value.items():
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if root and k == "metadata":  # rules see only name and generateName
                v = {m: v[m] for m in ("name", "generateName") if m in v}
                sub = {"type": "object", "additionalProperties": {"type": "string"}}
            if sub is not None:
                out[celtypes.StringType(k)] = to_cel(v, sub)
            elif schema.get(PRESERVE):
                out[celtypes.StringType(k)] = celpy.json_to_cel(v)
        return celtypes.MapType(out)
    if isinstance(value, list):
        unordered = schema.get("x-kubernetes-list-type") in ("set", "map")
        kind = UnorderedList if unordered else celtypes.ListType
        return kind([to_cel(x, schema.get("items")) for x in value])
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


# --- the double -------------------------------------------------------------------------------


@dataclass
class _Context:
    """What one validation pass collects."""

    causes: list[Cause] = field(default_factory=list)

    def add(self, *causes: Cause) -> None:
        self.causes.extend(causes)


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
        for key in UNSUPPORTED:
            if key in schema:
                raise NotImplementedError(f"{where or '<root>'}: {key} is not emulated")
        if schema.get("uniqueItems"):
            raise NotImplementedError(f"{where}: uniqueItems is forbidden in CRDs")
        if "pattern" in schema:
            re2.compile(schema["pattern"])
        rules = []
        for spec in schema.get(RULES, []):
            if spec.get("optionalOldSelf"):
                raise NotImplementedError(f"{where}: optionalOldSelf is not emulated")
            program, uses_old = _compile(self._cel, spec["rule"], where)
            message_program = None
            if spec.get("messageExpression"):
                message_program, _ = _compile(self._cel, spec["messageExpression"], where)
            path = _field_path(spec["fieldPath"], schema, where) if spec.get("fieldPath") else ""
            rules.append(Rule(spec, program, uses_old, message_program, path))
        if rules:
            self._rules[id(schema)] = rules
        for name, sub in schema.get("properties", {}).items():
            self._prepare(sub, f"{where}.{name}".lstrip("."))
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                self._prepare(schema[key], f"{where}[]")

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
            raise BadRequest(f"{unrecognized}: {error} ({summary})") from None
        except json.JSONDecodeError as error:
            raise BadRequest(f"{unrecognized}: invalid JSON: {error.msg} ({summary})") from None
        except _OutOfRange as error:
            head = json.loads(text, parse_float=lambda s: 0.0, parse_int=lambda s: 0)
            kind, version = head.get("kind", ""), str(head.get("apiVersion", "")).split("/")[-1]
            raise BadRequest(
                f'{kind} in version "{version}" cannot be handled as a {self.kind}: '
                f"json: cannot unmarshal number {error} into Go value of type float64"
            ) from None
        if patch:
            return doc
        if not isinstance(doc, dict):
            raise BadRequest(f"{unrecognized}: json: cannot unmarshal {json_type(doc)} ({summary})")
        if not doc.get("kind"):
            raise BadRequest(f"{unrecognized}: Object 'Kind' is missing in '{text}' ({summary})")
        if doc.get("apiVersion") != self.api_version:
            raise BadRequest(
                f"the API version in the data ({doc.get('apiVersion', '')}) does not match "
                f"the expected API version ({self.api_version})"
            )
        return doc

    def create(self, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """POST: the object to store (pruned, defaulted, generation 1), or Invalid/BadRequest.

        ``namespace`` is the request URL's: it fills an empty metadata.namespace and must
        match a given one.
        """
        new = self._coerce(self.decode(json.dumps(obj)))
        meta = new["metadata"]
        self._match_namespace(meta, namespace)
        if self.status_subresource:
            new.pop("status", None)
        meta["generation"] = 1
        meta.pop("deletionTimestamp", None)
        meta.pop("deletionGracePeriodSeconds", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = _generate_name(meta["generateName"])
        ctx = _Context()
        if not self._type_meta(new, ctx):
            self._meta(meta, ctx)
            self._check(new, self.schema, "", ctx)
        self._list_types(new, self.schema, "", ctx)
        self._cel_rules(new, None, ctx)
        if ctx.causes:
            raise Invalid(self.group, self.kind, meta.get("name", ""), ctx.causes)
        return stored(new)

    def update(
        self,
        obj: dict[str, Any],
        old: dict[str, Any],
        subresource: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """PUT (a PATCH already applied to ``old``) of the object or of its ``/status``.

        ``old`` is the stored object. Returns the object to store, with metadata.generation
        as kube sets it; raises Invalid or BadRequest.
        """
        if subresource not in (None, "status") or (subresource and not self.status_subresource):
            raise NotImplementedError(f"subresource {subresource} is not emulated")
        new = self._coerce(self.decode(json.dumps(obj)))
        old = self._coerce(copy.deepcopy(old))
        meta, old_meta = new["metadata"], old["metadata"]
        self._match_namespace(meta, namespace)
        if subresource == "status":
            status = new.get("status", OMIT)
            managed = meta.get("managedFields")
            new = copy.deepcopy(old)
            meta = new["metadata"]
            if managed is not None:
                meta["managedFields"] = managed
            if status is OMIT:
                new.pop("status", None)
            else:
                new["status"] = status
        else:
            meta["generation"] = old_meta.get("generation", 0)
            if self.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
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
        ctx = _Context()
        self._meta(meta, ctx)
        self._meta_update(meta, old_meta, ctx)
        if not self._type_meta(new, ctx):
            if subresource == "status":
                if "status" in new:
                    status_ctx = _Context()
                    status_schema = self.schema.get("properties", {}).get("status", {})
                    self._check(new["status"], status_schema, "", status_ctx)
                    ctx.add(*(_prefixed("status", c) for c in status_ctx.causes))
            else:
                self._check(new, self.schema, "", ctx)
        old_lists = _Context()
        self._list_types(old, self.schema, "", old_lists)
        if not old_lists.causes:  # list-type errors ratchet (strategy.go)
            self._list_types(new, self.schema, "", ctx)
        self._cel_rules(new, old, ctx)
        if ctx.causes:
            raise Invalid(self.group, self.kind, meta.get("name", ""), ctx.causes)
        return stored(new)

    def read(self, obj: dict[str, Any]) -> dict[str, Any]:
        """GET: a stored object as served (pruned and defaulted again, never validated)."""
        return stored(self._coerce(copy.deepcopy(obj)))

    # --- decoding into the schema ---

    def _coerce(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Prune, coerce ObjectMeta, drop nulls that have no default, apply defaults."""
        keep = {k: doc.pop(k) for k in ("apiVersion", "kind") if k in doc}
        meta = self._object_meta(doc.pop("metadata", None))
        _prune(doc, self.schema)
        _prune_nulls(doc, self.schema)
        _default(doc, self.schema)
        return {**keep, "metadata": meta, **doc}

    def _object_meta(self, meta: Any) -> dict[str, Any]:
        if meta is None:
            return {}
        if not isinstance(meta, dict):
            raise self._decode_error(
                f"cannot unmarshal {json_type(meta)} into Go struct field .metadata"
            )
        out: dict[str, Any] = {}
        for key, kind in OBJECT_META.items():
            value = meta.get(key)
            if value is None:
                continue
            if not isinstance(value, kind) or isinstance(value, bool):
                raise self._decode_error(
                    f"cannot unmarshal {json_type(value)} into Go struct field "
                    f"ObjectMeta.metadata.{key} of type {kind.__name__}"
                )
            if key in ("labels", "annotations"):
                bad = [v for v in value.values() if not isinstance(v, str)]
                if bad:
                    raise self._decode_error(
                        f"cannot unmarshal {json_type(bad[0])} into Go struct field "
                        f"ObjectMeta.metadata.{key} of type string"
                    )
            if key in ("ownerReferences", "managedFields", "finalizers"):
                inner = str if key == "finalizers" else dict
                bad = [v for v in value if not isinstance(v, inner)]
                if bad:
                    raise self._decode_error(
                        f"cannot unmarshal {json_type(bad[0])} into Go struct field "
                        f"ObjectMeta.metadata.{key} of type {inner.__name__}"
                    )
            if key == "ownerReferences":
                value = [{k: r[k] for k in OWNER_REFERENCE if k in r} for r in value]
            if key == "managedFields":
                value = [
                    {k: m[k] for k in (*MANAGED_FIELDS, "subresource") if k in m} for m in value
                ]
            out[key] = value
        return out

    def _decode_error(self, detail: str) -> BadRequest:
        return BadRequest(
            f'{self.kind} in version "{self.version}" cannot be handled as a {self.kind}: '
            f"json: {detail}"
        )

    def _match_namespace(self, meta: dict[str, Any], namespace: str | None) -> None:
        if namespace is None:
            return
        if not meta.get("namespace"):
            meta["namespace"] = namespace
        elif meta["namespace"] != namespace:
            raise BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
            )

    # --- metadata ---

    def _type_meta(self, obj: dict[str, Any], ctx: _Context) -> bool:
        bad = []
        if obj.get("kind") != self.kind:
            bad.append(cause("FieldValueInvalid", "kind", obj.get("kind"), f"must be {self.kind}"))
        if obj.get("apiVersion") != self.api_version:
            bad.append(
                cause(
                    "FieldValueInvalid",
                    "apiVersion",
                    obj.get("apiVersion"),
                    f"must be {self.api_version}",
                )
            )
        ctx.add(*bad)
        return bool(bad)

    def _meta(self, meta: dict[str, Any], ctx: _Context) -> None:
        """ValidateObjectMetaAccessor with the custom resources' name rule (a DNS subdomain)."""
        generate = meta.get("generateName", "")
        if generate:
            masked = generate[:-1] + "a" if generate.endswith("-") else generate
            for msg in dns_subdomain(masked):
                ctx.add(cause("FieldValueInvalid", "metadata.generateName", generate, msg))
        name = meta.get("name", "")
        if not name:
            ctx.add(
                cause(
                    "FieldValueRequired", "metadata.name", detail="name or generateName is required"
                )
            )
        for msg in dns_subdomain(name) if name else []:
            ctx.add(cause("FieldValueInvalid", "metadata.name", name, msg))
        namespace = meta.get("namespace", "")
        if self.namespaced and not namespace:
            ctx.add(cause("FieldValueRequired", "metadata.namespace"))
        elif self.namespaced:
            for msg in dns_label(namespace):
                ctx.add(cause("FieldValueInvalid", "metadata.namespace", namespace, msg))
        elif namespace:
            ctx.add(
                cause(
                    "FieldValueForbidden", "metadata.namespace", detail="not allowed on this type"
                )
            )
        if meta.get("generation", 0) < 0:
            ctx.add(
                cause(
                    "FieldValueInvalid",
                    "metadata.generation",
                    meta["generation"],
                    "must be greater than or equal to 0",
                )
            )
        for key, value in (meta.get("labels") or {}).items():
            for msg in qualified_name(key):
                ctx.add(cause("FieldValueInvalid", "metadata.labels", key, msg))
            for msg in label_value(value):
                ctx.add(cause("FieldValueInvalid", "metadata.labels", value, msg))
        annotations = meta.get("annotations") or {}
        for key in annotations:
            for msg in qualified_name(key.lower()):
                ctx.add(cause("FieldValueInvalid", "metadata.annotations", key, msg))
        if sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items()) > 256 * 1024:
            ctx.add(
                cause(
                    "FieldValueTooLong",
                    "metadata.annotations",
                    "",
                    "must have at most 262144 bytes",
                )
            )
        self._owner_references(meta.get("ownerReferences") or [], ctx)
        for finalizer in meta.get("finalizers") or []:
            for msg in qualified_name(finalizer):
                ctx.add(cause("FieldValueInvalid", "metadata.finalizers", finalizer, msg))

    @staticmethod
    def _owner_references(refs: list[dict[str, Any]], ctx: _Context) -> None:
        path, controller = "metadata.ownerReferences", ""
        for ref in refs:
            if not str(ref.get("apiVersion", "")).split("/")[-1]:
                ctx.add(
                    cause(
                        "FieldValueInvalid",
                        f"{path}.apiVersion",
                        ref.get("apiVersion", ""),
                        "version must not be empty",
                    )
                )
            for key in ("kind", "name", "uid"):
                if not ref.get(key):
                    ctx.add(
                        cause(
                            "FieldValueInvalid",
                            f"{path}.{key}",
                            ref.get(key, ""),
                            "must not be empty",
                        )
                    )
            if ref.get("controller"):
                this = f"{ref.get('kind')}/{ref.get('name')}"
                if controller:
                    ctx.add(
                        cause(
                            "FieldValueInvalid",
                            path,
                            refs,
                            'Only one reference can have Controller set to true. Found "true" in '
                            f"references for {controller} and {this}",
                        )
                    )
                else:
                    controller = this

    @staticmethod
    def _meta_update(meta: dict[str, Any], old: dict[str, Any], ctx: _Context) -> None:
        if old.get("deletionTimestamp"):
            extra = sorted(set(meta.get("finalizers") or []) - set(old.get("finalizers") or []))
            if extra:
                listed = "[]string{" + ", ".join(go_quote(f) for f in extra) + "}"
                ctx.add(
                    cause(
                        "FieldValueForbidden",
                        "metadata.finalizers",
                        detail=f"no new finalizers can be added if the object is being deleted, found new finalizers {listed}",
                    )
                )
        if not meta.get("resourceVersion"):
            ctx.add(
                cause(
                    "FieldValueInvalid",
                    "metadata.resourceVersion",
                    "",
                    "must be specified for an update",
                )
            )
        for key in ("name", "namespace", "uid"):
            if meta.get(key, "") != old.get(key, ""):
                ctx.add(
                    cause(
                        "FieldValueInvalid",
                        f"metadata.{key}",
                        meta.get(key, ""),
                        "field is immutable",
                    )
                )

    # --- OpenAPI v3 schema (kube-openapi's validators and messages) ---

    def _check(self, value: Any, s: dict[str, Any], path: str, ctx: _Context) -> None:
        typ = s.get("type")
        shown = path.lstrip(".")
        if value is None:
            if typ and not s.get("nullable"):
                ctx.add(_type_error(shown, typ, "null"))
            if "enum" in s:
                ctx.add(_not_supported(shown, None, s["enum"]))
            return
        actual = json_type(value)
        if typ and actual != typ:
            int_as_number = typ == "number" and actual == "integer"
            float_as_int = (
                typ == "integer"
                and actual == "number"
                and value.is_integer()
                and abs(value) < 2**53
            )
            if not (int_as_number or float_as_int):
                ctx.add(_type_error(shown, typ, actual))
        if isinstance(value, str):
            self._check_string(value, s, shown, ctx)
        if actual in ("integer", "number"):
            self._check_number(value, s, shown, ctx)
        if isinstance(value, list):
            for i, item in enumerate(value):
                if "items" in s:
                    self._check(item, s["items"], f"{path}[{i}]", ctx)
            if "minItems" in s and len(value) < s["minItems"]:
                ctx.add(
                    cause(
                        "FieldValueInvalid",
                        shown,
                        len(value),
                        f"{shown} in body should have at least {s['minItems']} items",
                    )
                )
            if "maxItems" in s and len(value) > s["maxItems"]:
                ctx.add(
                    cause(
                        "FieldValueTooMany",
                        shown,
                        len(value),
                        f"must have at most {s['maxItems']} items",
                    )
                )
        if "enum" in s and not any(
            go_equal(value, e) or _number_equal(value, e) for e in s["enum"]
        ):
            ctx.add(_not_supported(shown, value, s["enum"]))
        if isinstance(value, dict):
            self._check_object(value, s, path, ctx)

    @staticmethod
    def _check_string(value: str, s: dict[str, Any], shown: str, ctx: _Context) -> None:
        """First failure only, maxLength, minLength, pattern (kube-openapi's stringValidator)."""
        if "maxLength" in s and len(value) > s["maxLength"]:
            ctx.add(
                cause("FieldValueTooLong", shown, value, f"may not be longer than {s['maxLength']}")
            )
        elif "minLength" in s and len(value) < s["minLength"]:
            detail = f"{shown} in body should be at least {s['minLength']} chars long"
            ctx.add(cause("FieldValueInvalid", shown, value, detail))
        elif "pattern" in s and not re2.search(s["pattern"], value):
            ctx.add(
                cause(
                    "FieldValueInvalid",
                    shown,
                    value,
                    f"{shown} in body should match '{s['pattern']}'",
                )
            )

    @staticmethod
    def _check_number(value: float, s: dict[str, Any], shown: str, ctx: _Context) -> None:
        as_int = isinstance(value, int)

        def bound(b: float) -> Any:
            return int(b) if as_int else float(b)  # Go converts the bound to the value's type

        def text(b: float) -> str:
            return go_value(bound(b))

        if "multipleOf" in s:
            factor = s["multipleOf"]
            ok = (
                value % int(factor) == 0
                if as_int and int(factor)
                else (value / factor).is_integer()
            )
            if not ok:
                ctx.add(
                    cause(
                        "FieldValueInvalid",
                        shown,
                        value,
                        f"{shown} in body should be a multiple of {text(factor)}",
                    )
                )
        if "minimum" in s:
            low, exclusive = bound(s["minimum"]), s.get("exclusiveMinimum", False)
            if value < low or (exclusive and value == low):
                word = "greater than" if exclusive else "greater than or equal to"
                ctx.add(
                    cause(
                        "FieldValueInvalid",
                        shown,
                        value,
                        f"{shown} in body should be {word} {text(low)}",
                    )
                )
        if "maximum" in s:
            high, exclusive = bound(s["maximum"]), s.get("exclusiveMaximum", False)
            if value > high or (exclusive and value == high):
                word = "less than" if exclusive else "less than or equal to"
                ctx.add(
                    cause(
                        "FieldValueInvalid",
                        shown,
                        value,
                        f"{shown} in body should be {word} {text(high)}",
                    )
                )

    def _check_object(
        self, value: dict[str, Any], s: dict[str, Any], path: str, ctx: _Context
    ) -> None:
        shown = path.lstrip(".")
        if "minProperties" in s and len(value) < s["minProperties"]:
            detail = f"{shown} in body should have at least {s['minProperties']} properties"
            ctx.add(cause("FieldValueInvalid", shown, len(value), detail))
            return
        if "maxProperties" in s and len(value) > s["maxProperties"]:
            ctx.add(
                cause(
                    "FieldValueTooMany",
                    shown,
                    len(value),
                    f"must have at most {s['maxProperties']} items",
                )
            )
            return
        props, extra = s.get("properties", {}), s.get("additionalProperties")
        for key in value:
            if key not in props and extra is False:
                detail = f"{shown}.{key} in body is a forbidden property"
                ctx.add(cause("FieldValueInvalid", shown, key, detail))
            elif key not in props and isinstance(extra, dict):
                self._check(value[key], extra, f"{path}.{key}", ctx)
        for key, sub in props.items():
            if key in value:
                self._check(value[key], sub, f"{path}.{key}", ctx)
        for key in s.get("required", []):
            if key not in value:
                ctx.add(cause("FieldValueRequired", f"{path}.{key}".lstrip(".")))

    # --- x-kubernetes-list-type ---

    def _list_types(self, value: Any, s: dict[str, Any] | None, path: str, ctx: _Context) -> None:
        if s is None:
            return
        if isinstance(value, dict):
            props, extra = s.get("properties", {}), s.get("additionalProperties")
            for key, item in value.items():
                if key in props:
                    self._list_types(item, props[key], f"{path}.{key}".lstrip("."), ctx)
                elif isinstance(extra, dict):
                    self._list_types(item, extra, f"{path}[{key}]", ctx)
        elif isinstance(value, list):
            kind = s.get("x-kubernetes-list-type")
            if kind == "set":
                for i in _repeats(value):
                    ctx.add(cause("FieldValueDuplicate", f"{path}[{i}]", value[i]))
            elif kind == "map":
                ctx.add(*_map_list_errors(value, s.get("x-kubernetes-list-map-keys", []), path))
            for i, item in enumerate(value):
                self._list_types(item, s.get("items"), f"{path}[{i}]", ctx)

    # --- x-kubernetes-validations ---

    def _cel_rules(self, new: dict[str, Any], old: dict[str, Any] | None, ctx: _Context) -> None:
        if any(c.reason in BLOCKING for c in ctx.causes):
            ctx.add(Cause("<nil>", "FieldValueInvalid", f'Invalid value: "null": {NOT_CHECKED}'))
            return
        self._cel_node(new, old, self.schema, "", ctx, root=True)

    def _cel_node(
        self,
        value: Any,
        old: Any,
        s: dict[str, Any] | None,
        path: str,
        ctx: _Context,
        root: bool = False,
    ) -> None:
        if s is None or value is None:
            return
        for rule in self._rules.get(id(s), []):
            if rule.uses_old_self and old is None:
                continue  # a transition rule needs an old value to compare with
            self._run_rule(rule, value, old, s, path, ctx, root)
        if isinstance(value, dict):
            props, extra = s.get("properties", {}), s.get("additionalProperties")
            correlated = isinstance(old, dict) and s.get("x-kubernetes-map-type") != "atomic"
            for key, item in value.items():
                before = old.get(key) if correlated else None
                if key in props:
                    self._cel_node(item, before, props[key], f"{path}.{key}".lstrip("."), ctx)
                elif isinstance(extra, dict):
                    self._cel_node(item, before, extra, f"{path}[{key}]", ctx)
        elif isinstance(value, list):
            keys = s.get("x-kubernetes-list-map-keys", [])
            olds = {}
            if s.get("x-kubernetes-list-type") == "map" and isinstance(old, list):
                olds = {_map_key(o, keys): o for o in old if isinstance(o, dict)}
            for i, item in enumerate(value):
                before = olds.get(_map_key(item, keys)) if isinstance(item, dict) else None
                self._cel_node(item, before, s.get("items"), f"{path}[{i}]", ctx)

    def _run_rule(
        self,
        rule: Rule,
        value: Any,
        old: Any,
        s: dict[str, Any],
        path: str,
        ctx: _Context,
        root: bool,
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
            ctx.add(cause("FieldValueInvalid", path, kind, detail))
            return
        if result is True or (isinstance(result, celtypes.BoolType) and bool(result)):
            return
        where = path + rule.field_path if path else rule.field_path.lstrip(".")
        detail = ""
        if rule.message_program is not None:
            message = _evaluate(rule.message_program, activation)
            if isinstance(message, str) and message.strip() and "\n" not in message.strip():
                detail = message.strip()
        if not detail:
            detail = rule.spec.get("message", "").strip() or f"failed rule: {rule.error_string}"
        reason = rule.spec.get("reason", "FieldValueInvalid")
        if reason == "FieldValueDuplicate":
            ctx.add(cause(reason, where, kind))
        elif reason in ("FieldValueForbidden", "FieldValueRequired"):
            ctx.add(cause(reason, where, detail=detail))
        else:
            ctx.add(cause("FieldValueInvalid", where, kind, detail))


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


def _generate_name(base: str) -> str:
    """names.SimpleNameGenerator: the prefix (at most 58) and five random characters."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return base[:58] + "".join(random.choice(alphabet) for _ in range(5))


def _prune(x: Any, s: dict[str, Any] | None) -> None:
    """pruning.Prune: drop what the schema does not name."""
    if s is not None and s.get(PRESERVE):
        _skip_prune(x, s)
    elif isinstance(x, dict):
        if s is None:
            x.clear()
            return
        props, extra = s.get("properties", {}), s.get("additionalProperties")
        for key in list(x):
            if key in props:
                _prune(x[key], props[key])
            elif extra is not None and extra is not False:
                _prune(x[key], extra if isinstance(extra, dict) else None)
            else:
                del x[key]
    elif isinstance(x, list):
        for item in x:
            _prune(item, s.get("items") if s else None)


def _skip_prune(x: Any, s: dict[str, Any] | None) -> None:
    """Under preserve-unknown-fields: keep unknown fields, prune inside the known ones."""
    if s is None:
        return
    if isinstance(x, dict):
        props, extra = s.get("properties", {}), s.get("additionalProperties")
        for key in list(x):
            if key in props:
                _prune(x[key], props[key])
            elif isinstance(extra, dict):
                _prune(x[key], extra)
    elif isinstance(x, list):
        for item in x:
            _skip_prune(item, s.get("items"))


def _sub_schema(s: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if s is None:
        return None
    if key in s.get("properties", {}):
        return s["properties"][key]
    extra = s.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _prune_nulls(x: Any, s: dict[str, Any] | None) -> None:
    """PruneNonNullableNullsWithoutDefaults."""
    if isinstance(x, dict):
        for key in list(x):
            sub = _sub_schema(s, key)
            if (
                x[key] is None
                and sub is not None
                and not sub.get("nullable")
                and "default" not in sub
            ):
                del x[key]
            else:
                _prune_nulls(x[key], sub)
    elif isinstance(x, list):
        for item in x:
            _prune_nulls(item, s.get("items") if s else None)


def _default(x: Any, s: dict[str, Any] | None) -> None:
    """defaulting.Default: absent (or non-nullable null) fields of existing objects."""
    if s is None:
        return
    if isinstance(x, dict):
        for key, prop in s.get("properties", {}).items():
            if "default" in prop and (
                key not in x or (x[key] is None and not prop.get("nullable"))
            ):
                x[key] = copy.deepcopy(prop["default"])
        extra = s.get("additionalProperties")
        for key in list(x):
            if key in s.get("properties", {}):
                _default(x[key], s["properties"][key])
            elif isinstance(extra, dict):
                if x[key] is None and not extra.get("nullable"):
                    x[key] = copy.deepcopy(extra.get("default"))
                _default(x[key], extra)
    elif isinstance(x, list) and isinstance(s.get("items"), dict):
        items = s["items"]
        for i, item in enumerate(x):
            if item is None and not items.get("nullable"):
                x[i] = copy.deepcopy(items.get("default"))
            _default(x[i], items)


def _type_error(path: str, expected: str, actual: str) -> Cause:
    detail = f"{path} in body must be of type {expected}: {go_quote(actual)}"
    return cause("FieldValueTypeInvalid", path, actual, detail)


def _not_supported(path: str, value: Any, enum: list[Any]) -> Cause:
    allowed = [e if isinstance(e, str) else json.dumps(e) for e in enum]
    detail = "supported values: " + ", ".join(go_quote(a) for a in allowed)
    return cause("FieldValueNotSupported", path, value, detail)


def _number_equal(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def _canonical(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def _repeats(items: list[Any]) -> list[int]:
    """Indexes of each value's second appearance (listtype.validateListSet)."""
    seen: dict[str, int] = {}
    out = []
    for i, item in enumerate(items):
        key = json_type(item) + _canonical(item)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            out.append(i)
    return out


def _map_key(item: dict[str, Any], keys: list[str]) -> str:
    return _canonical({k: item[k] for k in keys if k in item})


def _map_list_errors(items: list[Any], keys: list[str], path: str) -> list[Cause]:
    for i, item in enumerate(items):
        if item is not None and not isinstance(item, dict):
            return [
                cause(
                    "FieldValueInvalid",
                    f"{path}[{i}]",
                    item,
                    "must be an object for an array of list-type map",
                )
            ]
    if len(items) <= 1:
        return []
    found = [{k: item[k] for k in keys if k in item} if item else {} for item in items]
    return [cause("FieldValueDuplicate", f"{path}[{i}]", found[i]) for i in _repeats(found)]


def _prefixed(prefix: str, c: Cause) -> Cause:
    return Cause(f"{prefix}.{c.field}" if c.field else prefix, c.reason, c.message)


def _evaluate(program: Any, activation: dict[str, Any]) -> Any:
    try:
        return program.evaluate(activation)
    except celpy.CELEvalError as error:
        return error
