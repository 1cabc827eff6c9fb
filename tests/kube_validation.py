"""kube-apiserver's create/update validation for the objects the operator tier writes.

The emulated API server (k8s_harness) stores anything; a real kube-apiserver refuses, for
example, Job names over 63 characters. This module is the server's side of that contract for
batch/v1 Jobs (create, spec update, status update), v1 Pods (the test Job simulator's) and
v1 Events (kopf's), as pure functions on JSON dicts: the emulator answers 422 with
``invalid_status`` where a real server would, and 400 for a ``DecodeError``.

Target: Kubernetes 1.29-1.33 with default feature gates. Where these versions differ, the
strictest rule in the range is emulated, so what passes here passes on all of them:
env var names follow the strict IsEnvVarName of 1.29-1.31 (RelaxedEnvironmentVariableValidation
is off there; beta, on, from 1.32); Job status updates get the transition checks of the Job
status strategy with JobManagedBy on (beta, on, from 1.32), including Failed only after
FailureTarget and Complete only after SuccessCriteriaMet, the order the Job controller writes
them in since 1.31 (these two rules are in batch/validation's options; the copy of the
strategy read here predates wiring them, so they follow the 1.31 documentation); messages use
the 1.29-1.33 wording ("must be no more than 63 characters"; 1.35 says "bytes").

Use: ``obj = prepare_create("jobs", body)`` is what the server stores (generated name, uid,
defaults, generated selector, status cleared); ``validate_create("jobs", obj)`` its causes.
For PATCH/PUT: merge onto the stored object ``old``, then ``prepare_update`` and
``validate_update(resource, merged, old, subresource)``. Both validators prepare their input
themselves (idempotently), so raw bodies work too.

| rule | upstream function (kubernetes/kubernetes) |
| --- | --- |
| field error text, 422 body | apimachinery util/validation/field errors.go `ErrorBody`; api/errors `NewInvalid`; util/errors `aggregate.Error` |
| DNS label/subdomain, qualified name, label value, env var name, config key | apimachinery util/validation validation.go `IsDNS1123Label`, `IsDNS1123Subdomain`, `IsQualifiedName`, `IsValidLabelValue`, `IsEnvVarName`, `IsConfigMapKey` |
| names, generateName, namespace, labels, annotations (256 KiB), ownerReferences, finalizers | apimachinery api/validation objectmeta.go `ValidateObjectMetaAccessor`, `ValidateAnnotations`, `ValidateOwnerReferences`; `NameIsDNSSubdomain` (`maskTrailingDash`); api/validation/path `ValidatePathSegmentName`; apiserver `names.SimpleNameGenerator` |
| metadata on update (immutable name/uid, resourceVersion, generation) | objectmeta.go `ValidateObjectMetaAccessorUpdate`; apiserver rest `BeforeCreate`/`BeforeUpdate` |
| Job defaults: completions, parallelism, backoffLimit, completionMode, suspend, podReplacementPolicy, onPodConditions status | pkg/apis/batch/v1 defaults.go `SetDefaults_Job` |
| generated selector and the four job-name/controller-uid template labels (why names > 63 fail) | pkg/registry/batch/job strategy.go `generateSelector`; batch/validation `validateGeneratedSelector` |
| Indexed Job: `<name>-<completions-1>` must be a DNS label | batch/validation `ValidateJob` |
| counts non-negative, completionMode, backoffLimitPerIndex/maxFailedIndexes (Indexed only, 10^5, <= completions, high-completions limits), podReplacementPolicy, restartPolicy OnFailure/Never | batch/validation `validateJobSpec`, `validatePodReplacementPolicy` |
| podFailurePolicy: rules <= 20, action enum, FailIndex needs backoffLimitPerIndex, onExitCodes (operator, containerName, values: 1-255, unique, ordered, no 0 with In), onPodConditions, restartPolicy Never | batch/validation `validatePodFailurePolicy*` |
| selector valid and matching the template labels | batch/validation `ValidateJobSpec`; apimachinery meta/v1/validation `ValidateLabelSelector` |
| spec updates: completions (elastic Indexed only), selector, template (scheduling directives of suspended never-started Jobs excepted), completionMode, podFailurePolicy, backoffLimitPerIndex immutable | batch/validation `ValidateJobSpecUpdate`, `validateCompletions`, `validatePodTemplateUpdate`; strategy `validationOptionsForJob` |
| status updates: counts, completedIndexes/failedIndexes format and overlap, terminal-condition rules | batch/validation `validateJobStatus`, `ValidateJobStatusUpdate`, `validateIndexesFormat`; strategy `getStatusValidationOptions` |
| pod defaults: restartPolicy, dnsPolicy, grace period, pull policy, termination message, volume emptyDir, Pod requests from limits | pkg/apis/core/v1 defaults.go `SetDefaults_PodSpec`, `SetDefaults_Container`, `SetDefaults_Volume`, `SetDefaults_Pod` |
| pod template / pod spec: containers (name, image, unique), init containers, volumes (name, unique, one source), volumeMounts, env, envFrom, resources, security contexts, tolerations, nodeSelector, enums | core/validation validation.go `ValidatePodTemplateSpec`, `ValidatePodSpec`, `validateContainerCommon`, `ValidateVolumes`, `validateVolumeSource`, `ValidateVolumeMounts`, `ValidateEnv`, `ValidateEnvFrom`, `ValidateResourceRequirements`, `validateContainerResourceName`, `ValidateSecurityContext`, `validatePodSpecSecurityContext`, `ValidateTolerations` |
| Pod create (and, on update, metadata) | core/validation `ValidatePodCreate`, `validateContainerOnlyForPod` |
| quantities | apimachinery api/resource quantity.go `ParseQuantity`, `CanonicalizeBytes` |
| Events (core/v1, legacy rules) | core/validation events.go `ValidateEventCreate`, `legacyValidateEvent` |

Not emulated: validation of probes, lifecycle handlers, ports, affinity, topology spread,
DNS config, sysctls, AppArmor, pod annotations (seccomp/AppArmor/mirror), resource claims,
downward-API env sources (counted, not checked), ephemeral and projected volumes beyond their
presence, the inner fields of volume sources other than emptyDir, hostPath,
persistentVolumeClaim, secret, configMap and nfs, Pod spec updates (only metadata and the Pod
itself are checked), Job successPolicy and managedBy, CronJobs, the pod QoS class, Event API
groups other than core/v1, unknown-field and type errors other than quantities (a real server
answers 400 for those), and admission (quota, LimitRange, Pod Security). Messages: values
kube prints with Go's ``%#v`` (structs, maps, quantities) are printed as JSON or as the
quantity's string here.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

Obj = dict[str, Any]

# ------------------------------------------------------------------------- field errors

INVALID, REQUIRED, DUPLICATE = "FieldValueInvalid", "FieldValueRequired", "FieldValueDuplicate"
NOT_SUPPORTED, FORBIDDEN = "FieldValueNotSupported", "FieldValueForbidden"
TOO_LONG, TOO_MANY, NOT_FOUND = "FieldValueTooLong", "FieldValueTooMany", "FieldValueNotFound"
_TITLES = {
    INVALID: "Invalid value",
    REQUIRED: "Required value",
    DUPLICATE: "Duplicate value",
    NOT_SUPPORTED: "Unsupported value",
    FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    NOT_FOUND: "Not found",
}
_OMIT = object()  # field.OmitValueType: the message shows no value


@dataclass(frozen=True)
class Cause:
    """One field.Error: the field path, kube's reason type, and kube's message (ErrorBody)."""

    field: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # Go's %q, for printable text


def _render(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)  # kube: Go's %#v


def _same(a: Any, b: Any) -> bool:
    """apiequality.Semantic.DeepEqual: an empty map or list equals a missing one."""
    return _normal(a) == _normal(b)


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        value = {k: n for k, v in value.items() if (n := _normal(v)) is not None}
    elif isinstance(value, list):
        value = [_normal(v) for v in value]
    return None if value == {} or value == [] else value


class _Errors(list[Cause]):
    """A field.ErrorList with kube's constructors (field.Invalid, field.Required, ...)."""

    def add(self, reason: str, path: str, value: Any = _OMIT, detail: str = "") -> None:
        body = _TITLES[reason] + ("" if value is _OMIT else f": {_render(value)}")
        self.append(Cause(path, reason, body + (f": {detail}" if detail else "")))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.add(INVALID, path, value, detail)

    def required(self, path: str, detail: str = "") -> None:
        self.add(REQUIRED, path, detail=detail)

    def forbidden(self, path: str, detail: str) -> None:
        self.add(FORBIDDEN, path, detail=detail)

    def unsupported(self, path: str, value: Any, valid: Iterable[str]) -> None:
        self.add(NOT_SUPPORTED, path, value, "supported values: " + ", ".join(map(_quote, valid)))

    def each(self, path: str, value: Any, messages: Iterable[str]) -> None:
        for message in messages:
            self.invalid(path, value, message)

    def enum(self, value: Any, path: str, valid: list[str]) -> None:
        """The switch kube writes for enums: "" is required, anything else must be listed."""
        if value in (None, ""):
            self.required(path)
        elif value not in valid:
            self.unsupported(path, value, valid)

    def nonnegative(self, value: Any, path: str) -> None:
        if isinstance(value, int) and value < 0:
            self.invalid(path, value, "must be greater than or equal to 0")

    def immutable(self, new: Any, old: Any, path: str) -> None:
        if not _same(new, old):
            self.invalid(path, new, "field is immutable")


# --------------------------------------------------------------------------- formats

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = _LABEL + r"(\." + _LABEL + ")*"
_QNAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _QNAME + ")?"
_ENV_NAME = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_CONFIG_KEY = "[-._a-zA-Z0-9]+"
_MSG_LABEL = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
_MSG_SUBDOMAIN = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
_MSG_QNAME = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
_MSG_LABEL_VALUE = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
_MSG_ENV = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit"
_MSG_CONFIG_KEY = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"


def _regex_error(message: str, regex: str, *examples: str) -> str:
    shown = "".join((" or " if i else "") + f"'{e}', " for i, e in enumerate(examples))
    return f"{message} (e.g. {shown}regex used for validation is '{regex}')"


def _format(value: str, regex: str, limit: int, message: str, *examples: str) -> list[str]:
    errs = [f"must be no more than {limit} characters"] if len(value) > limit else []
    matched = re.fullmatch(regex, value)
    return errs if matched else [*errs, _regex_error(message, regex, *examples)]


def dns_label(value: str) -> list[str]:
    return _format(value, _LABEL, 63, _MSG_LABEL, "my-name", "123-abc")


def dns_subdomain(value: str) -> list[str]:
    return _format(value, _SUBDOMAIN, 253, _MSG_SUBDOMAIN, "example.com")


def label_value(value: str) -> list[str]:
    return _format(value, _LABEL_VALUE, 63, _MSG_LABEL_VALUE, "MyValue", "my_value", "12345")


def qualified_name(value: str) -> list[str]:
    """Label and annotation keys: an optional DNS-subdomain prefix and '/', then a name."""
    parts, errs = value.split("/"), []
    regex_error = _regex_error(_MSG_QNAME, _QNAME, "MyName", "my.name", "123-abc")
    if len(parts) > 2:
        optional = "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        return [f"a qualified name {regex_error} {optional}"]
    if len(parts) == 2:
        prefix = dns_subdomain(parts[0]) if parts[0] else ["must be non-empty"]
        errs += ["prefix part " + m for m in prefix]
    name = parts[-1]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    return errs if re.fullmatch(_QNAME, name) else [*errs, "name part " + regex_error]


def _chdir_prefix(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"must not be '{value}'"]
    return ["must not start with '..'"] if value.startswith("..") else []


def env_var_name(value: str) -> list[str]:
    """IsEnvVarName, the 1.29-1.31 rule (see the module doc)."""
    examples = ("my.env-name", "MY_ENV.NAME", "MyEnvName1")
    errs = [] if re.fullmatch(_ENV_NAME, value) else [_regex_error(_MSG_ENV, _ENV_NAME, *examples)]
    return errs + _chdir_prefix(value)


def config_map_key(value: str) -> list[str]:
    examples = ("key.name", "KEY_NAME", "key-name")
    return _format(value, _CONFIG_KEY, 253, _MSG_CONFIG_KEY, *examples) + _chdir_prefix(value)


NameFn = Callable[[str, bool], list[str]]


def _subdomain_name(name: str, prefix: bool) -> list[str]:
    """NameIsDNSSubdomain; a generateName has its trailing dash masked (sic: two characters)."""
    if prefix and len(name) > 1 and name.endswith("-"):
        name = name[:-2] + "a"
    return dns_subdomain(name)


def _path_segment_name(name: str, prefix: bool) -> list[str]:
    if not prefix and name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in name]


def generate_name(base: str) -> str:
    """names.SimpleNameGenerator: at most 58 characters of the base, then 5 random ones."""
    return base[:58] + "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


# ------------------------------------------------------------------------- quantities

_QUANTITY = re.compile(r"([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?")
_QUANTITY_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


@dataclass(frozen=True)
class Quantity:
    """A resource.Quantity: an exact value, and the format kube prints it back in."""

    value: Fraction
    format: str = "DecimalSI"

    def __str__(self) -> str:  # CanonicalizeBytes
        if self.value == 0:
            return "0"
        sign, amount = ("-" if self.value < 0 else ""), abs(self.value)
        if self.format == "BinarySI" and amount >= 1024 and amount.denominator == 1:
            number, suffix = int(amount), ""
            for candidate in _BINARY:
                if number % 1024:
                    break
                number, suffix = number // 1024, candidate
            return f"{sign}{number}{suffix}"
        mantissa, exponent = int(amount * 10**9), -9
        while exponent < 18 and mantissa % 1000 == 0:
            mantissa, exponent = mantissa // 1000, exponent + 3
        if self.format == "DecimalExponent":
            return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")
        return f"{sign}{mantissa}" + {v: k for k, v in _DECIMAL.items()}[exponent]


def parse_quantity(text: Any) -> Quantity:
    """ParseQuantity (a JSON number too, as kube's decoder takes it); ValueError otherwise."""
    match = _QUANTITY.fullmatch(str(text)) if isinstance(text, str | int | float) else None
    if not match or isinstance(text, bool):
        raise ValueError(_QUANTITY_ERROR)
    sign, suffix, value = match.group(1), match.group(3) or "", Fraction(match.group(2))
    if suffix in _BINARY:
        value, fmt = value * 1024 ** (_BINARY.index(suffix) + 1), "BinarySI"
    elif suffix[:1] in ("e", "E"):
        value, fmt = value * Fraction(10) ** int(suffix[1:]), "DecimalExponent"
    else:
        value, fmt = value * Fraction(10) ** _DECIMAL[suffix], "DecimalSI"
    value = Fraction(math.ceil(value * 10**9), 10**9)  # nano precision, rounded up
    return Quantity(-value if sign == "-" else value, fmt)


class DecodeError(ValueError):
    """A body kube-apiserver cannot decode: it answers 400 Bad Request, not 422."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f'{kind} in version "v1" cannot be handled as a {kind}: {detail}')

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": str(self),
            "reason": "BadRequest",
            "code": 400,
        }


def _wire(obj: Any) -> Any:
    """A copy as it arrives over HTTP: JSON, so no two fields share one dict."""
    return json.loads(json.dumps(obj))


def _containers(spec: Obj) -> list[Obj]:
    return (spec.get("containers") or []) + (spec.get("initContainers") or [])


def _pod_spec_of(resource: str, obj: Obj) -> Obj | None:
    spec = obj.get("spec") or {}
    if resource == "jobs":
        return (spec.get("template") or {}).get("spec") or {}
    return spec if resource == "pods" else None


def _check_decodable(resource: str, obj: Obj) -> None:
    spec = _pod_spec_of(resource, obj) or {}
    values = list((spec.get("overhead") or {}).values())
    for c in _containers(spec):
        for part in ("limits", "requests"):
            values += list(((c.get("resources") or {}).get(part) or {}).values())
    values += [(v.get("emptyDir") or {}).get("sizeLimit") for v in spec.get("volumes") or []]
    for value in values:
        try:
            parse_quantity(value) if value is not None else None
        except ValueError as e:
            kind = {"jobs": "Job", "pods": "Pod"}[resource]
            raise DecodeError(kind, str(e)) from None


def _by_value(spec: Any) -> Any:
    """A pod spec whose container quantities compare by value (semantic equality)."""
    spec = _wire(spec)
    for c in _containers(spec or {}):
        for part in ("limits", "requests"):
            values = (c.get("resources") or {}).get(part) or {}
            values.update((k, parse_quantity(v).value) for k, v in values.items())
    return spec


# ---------------------------------------------------------------------------- metadata


def _labels(e: _Errors, labels: Obj | None, path: str) -> None:
    for key, value in (labels or {}).items():
        e.each(path, key, qualified_name(key))
        e.each(path, value, label_value(str(value)))


def _annotations(e: _Errors, annotations: Obj | None, path: str) -> None:
    size = 0
    for key, value in (annotations or {}).items():
        e.each(path, key, qualified_name(key.lower()))
        size += len(key.encode()) + len(str(value).encode())
    if size > 256 * 1024:
        e.add(TOO_LONG, path, detail=f"must have at most {256 * 1024} bytes")


def _owner_references(e: _Errors, refs: list[Obj] | None, path: str) -> None:
    controller = ""
    for ref in refs or []:
        api_version, kind = ref.get("apiVersion") or "", ref.get("kind") or ""
        parts = api_version.split("/")
        if not (parts[-1] if len(parts) <= 2 else ""):
            e.invalid(f"{path}.apiVersion", api_version, "version must not be empty")
        if not kind:
            e.invalid(f"{path}.kind", kind, "kind must not be empty")
        for key in ("name", "uid"):
            if not ref.get(key):
                e.invalid(f"{path}.{key}", ref.get(key) or "", f"{key} must not be empty")
        if api_version == "v1" and kind == "Event":
            e.invalid(path, ref, "/v1, Kind=Event is disallowed from being an owner")
        if ref.get("controller") is True:
            here = f"{kind}/{ref.get('name') or ''}"
            if controller:
                found = f'Found "true" in references for {controller} and {here}'
                e.invalid(
                    path, refs, f"Only one reference can have Controller set to true. {found}"
                )
            controller = controller or here


def _finalizers(e: _Errors, names: list[str] | None, path: str) -> None:
    for i, name in enumerate(names or []):
        e.each(path, name, qualified_name(name))
        if "/" not in name and name not in ("kubernetes", "orphan", "foregroundDeletion"):
            detail = "name is neither a standard finalizer name nor is it fully qualified"
            e.invalid(f"{path}[{i}]", name, detail)
    if {"orphan", "foregroundDeletion"} <= set(names or []):
        e.invalid(path, names, "finalizer orphan and foregroundDeletion cannot be both set")


def _meta(e: _Errors, meta: Obj, path: str, name_fn: NameFn) -> None:
    """ValidateObjectMeta for a namespaced object, after name generation."""
    prefix, name, namespace = (meta.get(k) or "" for k in ("generateName", "name", "namespace"))
    if prefix:
        e.each(f"{path}.generateName", prefix, name_fn(prefix, True))
    if not name:
        e.required(f"{path}.name", "name or generateName is required")
    e.each(f"{path}.name", name, name_fn(name, False) if name else [])
    if not namespace:
        e.required(f"{path}.namespace")
    e.each(f"{path}.namespace", namespace, dns_label(namespace) if namespace else [])
    e.nonnegative(meta.get("generation"), f"{path}.generation")
    _labels(e, meta.get("labels"), f"{path}.labels")
    _annotations(e, meta.get("annotations"), f"{path}.annotations")
    _owner_references(e, meta.get("ownerReferences"), f"{path}.ownerReferences")
    _finalizers(e, meta.get("finalizers"), f"{path}.finalizers")


def _meta_update(e: _Errors, new: Obj, old: Obj, path: str = "metadata") -> None:
    if not new.get("resourceVersion"):
        rv = new.get("resourceVersion") or ""
        e.invalid(f"{path}.resourceVersion", rv, "must be specified for an update")
    if (new.get("generation") or 0) < (old.get("generation") or 0):
        e.invalid(f"{path}.generation", new.get("generation") or 0, "must not be decremented")
    for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
        e.immutable(new.get(key) or "", old.get(key) or "", f"{path}.{key}")
    _labels(e, new.get("labels"), f"{path}.labels")
    _annotations(e, new.get("annotations"), f"{path}.annotations")
    _owner_references(e, new.get("ownerReferences"), f"{path}.ownerReferences")


# --------------------------------------------------------------------- label selectors


def _selector(e: _Errors, selector: Obj, path: str) -> None:
    """ValidateLabelSelector."""
    _labels(e, selector.get("matchLabels"), f"{path}.matchLabels")
    for i, req in enumerate(selector.get("matchExpressions") or []):
        p, op, values = f"{path}.matchExpressions[{i}]", req.get("operator"), req.get("values")
        if op in ("In", "NotIn") and not values:
            e.required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist") and values:
            detail = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            e.forbidden(f"{p}.values", detail)
        elif op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            e.invalid(f"{p}.operator", op, "not a valid selector operator")
        e.each(f"{p}.key", req.get("key") or "", qualified_name(req.get("key") or ""))
        for j, value in enumerate(values or []):
            e.each(f"{p}.values[{j}]", value, label_value(value))


def _matches(selector: Obj | None, labels: Obj) -> bool:
    """LabelSelectorAsSelector(...).Matches: a nil selector matches nothing, {} everything."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req.get("key"), req.get("operator"), req.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if (op == "Exists") != (key in labels) and op in ("Exists", "DoesNotExist"):
            return False
    return True


# ------------------------------------------------------------------------- pod defaults

# The volume sources in the order validateVolumeSource checks them (the second is refused).
_VOLUME_SOURCES = (
    "emptyDir", "hostPath", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore", "secret",
    "nfs", "iscsi", "glusterfs", "flocker", "persistentVolumeClaim", "rbd", "cinder", "cephfs",
    "quobyte", "downwardAPI", "fc", "flexVolume", "configMap", "azureFile", "vsphereVolume",
    "photonPersistentDisk", "portworxVolume", "azureDisk", "storageos", "projected", "scaleIO",
    "csi", "ephemeral",
)  # fmt: skip


def _default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec, _Container and _Volume (a volume without a source is emptyDir)."""
    for key, value in (("restartPolicy", "Always"), ("dnsPolicy", "ClusterFirst")):
        spec[key] = spec.get(key) or value
    spec["schedulerName"] = spec.get("schedulerName") or "default-scheduler"
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    for c in _containers(spec):
        if not c.get("imagePullPolicy"):  # ParseImageName: no tag and no digest is :latest
            name, _, digest = (c.get("image") or "").partition("@")
            tag = name.rsplit("/", 1)[-1].partition(":")[2] or ("" if digest else "latest")
            c["imagePullPolicy"] = "Always" if tag == "latest" else "IfNotPresent"
        c["terminationMessagePath"] = c.get("terminationMessagePath") or "/dev/termination-log"
        c["terminationMessagePolicy"] = c.get("terminationMessagePolicy") or "File"
        for env in c.get("env") or []:
            field_ref = (env.get("valueFrom") or {}).get("fieldRef")
            if field_ref is not None and not field_ref.get("apiVersion"):
                field_ref["apiVersion"] = "v1"
    for vol in spec.get("volumes") or []:
        if all(vol.get(k) is None for k in _VOLUME_SOURCES):
            vol["emptyDir"] = {}


def _default_pod(pod: Obj) -> None:
    """SetDefaults_Pod: requests default to limits, on Pods only (not on templates)."""
    spec = pod.setdefault("spec", {})
    for c in spec.get("containers") or []:
        resources = c.get("resources") or {}
        if resources.get("limits"):
            requests = resources.setdefault("requests", {})
            for k, v in resources["limits"].items():
                requests.setdefault(k, v)
    spec.setdefault("enableServiceLinks", True)
    _default_pod_spec(spec)


# ---------------------------------------------------------------------------- pod specs

_SOURCE_PATH = {"cephfs": "cephFS", "downwardAPI": "downwarAPI"}  # kube's own spelling
_SOURCE_NAME = {"hostPath": "path", "persistentVolumeClaim": "claimName", "secret": "secretName", "configMap": "name", "nfs": "server"}  # fmt: skip
_FILE_MODE = "must be a number between 0 and 0777 (octal), both inclusive"


def _volume_source(e: _Errors, vol: Obj, path: str) -> None:
    sources = [k for k in _VOLUME_SOURCES if vol.get(k) is not None]
    for key in sources[1:]:
        e.forbidden(
            f"{path}.{_SOURCE_PATH.get(key, key)}", "may not specify more than 1 volume type"
        )
    if not sources:
        return e.required(path, "must specify a volume type")
    key = sources[0]
    source, p = vol[key], f"{path}.{key}"
    size = source.get("sizeLimit") if key == "emptyDir" else None
    if size is not None and parse_quantity(size).value < 0:
        e.forbidden(f"{p}.sizeLimit", "SizeLimit field must be a valid resource quantity")
    if key in _SOURCE_NAME and not source.get(_SOURCE_NAME[key]):
        e.required(f"{p}.{_SOURCE_NAME[key]}")
    if key == "hostPath" and ".." in (source.get("path") or "").split("/"):
        e.invalid(f"{p}.path", source["path"], "must not contain '..'")
    if key == "nfs" and not (source.get("path") or "").startswith("/"):
        e.invalid(f"{p}.path", source.get("path") or "", "must be an absolute path")
    mode = source.get("defaultMode") if key in ("secret", "configMap") else None
    if mode is not None and not 0 <= mode <= 0o777:
        e.invalid(f"{p}.defaultMode", mode, _FILE_MODE)


def _volumes(e: _Errors, volumes: list[Obj], path: str) -> set[str]:
    """ValidateVolumes: the names of the valid volumes, for the mounts to refer to."""
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        here, p, name = _Errors(), f"{path}[{i}]", vol.get("name") or ""
        _volume_source(here, vol, p)
        if not name:
            here.required(f"{p}.name")
        here.each(f"{p}.name", name, dns_label(name) if name else [])
        if name in names:
            here.add(DUPLICATE, f"{p}.name", name)
        e += here
        if not here:
            names.add(name)
    return names


def _relative(e: _Errors, value: str, path: str) -> None:
    """validateLocalDescendingPath."""
    if value.startswith("/"):
        e.invalid(path, value, "must be a relative path")
    if ".." in value.split("/"):
        e.invalid(path, value, "must not contain '..'")


def _volume_mounts(e: _Errors, c: Obj, volumes: set[str], path: str) -> None:
    """ValidateVolumeMounts: mountPath only needs to be set and unique (no absolute-path or
    ':' rule: that is the kubelet's)."""
    seen: set[str] = set()
    privileged = (c.get("securityContext") or {}).get("privileged") is True
    for i, mount in enumerate(c.get("volumeMounts") or []):
        p, name, mount_path = f"{path}[{i}]", mount.get("name") or "", mount.get("mountPath") or ""
        if not name:
            e.required(f"{p}.name")
        if name not in volumes:
            e.add(NOT_FOUND, f"{p}.name", name)
        if not mount_path:
            e.required(f"{p}.mountPath")
        if mount_path in seen:
            e.invalid(f"{p}.mountPath", mount_path, "must be unique")
        seen.add(mount_path)
        sub, expr = mount.get("subPath") or "", mount.get("subPathExpr") or ""
        if sub:
            _relative(e, sub, f"{path}.subPath")  # sic: kube's path has no index here
        if expr and sub:
            e.invalid(f"{p}.subPathExpr", expr, "subPathExpr and subPath are mutually exclusive")
        if expr:
            _relative(e, expr, f"{path}.subPathExpr")
        propagation = mount.get("mountPropagation")
        if propagation is not None:
            e.enum(
                propagation,
                f"{path}.mountPropagation",
                ["Bidirectional", "HostToContainer", "None"],
            )
            if propagation == "Bidirectional" and not privileged:
                only = "Bidirectional mount propagation is available only to privileged containers"
                e.forbidden(f"{path}.mountPropagation", only)


_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")


def _env(e: _Errors, env: list[Obj], path: str) -> None:
    """ValidateEnv (downward-API sources are counted, not checked)."""
    for i, var in enumerate(env):
        p, name, source = f"{path}[{i}]", var.get("name") or "", var.get("valueFrom")
        if not name:
            e.required(f"{p}.name")
        e.each(f"{p}.name", name, env_var_name(name) if name else [])
        if source is None:
            continue
        p += ".valueFrom"
        for kind in ("configMapKeyRef", "secretKeyRef"):
            ref = source.get(kind)
            if ref is not None:
                name, key = ref.get("name") or "", ref.get("key") or ""
                e.each(f"{p}.{kind}.name", name, dns_subdomain(name))
                if not key:
                    e.required(f"{p}.{kind}.key")
                e.each(f"{p}.{kind}.key", key, config_map_key(key) if key else [])
        kinds = [k for k in _ENV_SOURCES if source.get(k) is not None]
        if not kinds:
            one_of = "`fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
            e.invalid(p, "", f"must specify one of: {one_of}")
        elif var.get("value"):
            e.invalid(p, "", "may not be specified when `value` is not empty")
        elif len(kinds) > 1:
            e.invalid(p, "", "may not have more than one field specified at a time")


def _env_from(e: _Errors, sources: list[Obj], path: str) -> None:
    for i, source in enumerate(sources):
        p, prefix = f"{path}[{i}]", source.get("prefix") or ""
        e.each(f"{p}.prefix", prefix, env_var_name(prefix) if prefix else [])
        kinds = [k for k in ("configMapRef", "secretRef") if source.get(k) is not None]
        for kind in kinds:
            name = source[kind].get("name") or ""
            if not name:
                e.required(f"{p}.{kind}.name")
            e.each(f"{p}.{kind}.name", name, _subdomain_name(name, True) if name else [])
        if not kinds:  # sic: kube reports these at the list's path
            e.invalid(path, "", "must specify one of: `configMapRef` or `secretRef`")
        elif len(kinds) > 1:
            e.invalid(path, "", "may not have more than one field specified at a time")


def _native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _extended(name: str) -> bool:
    return (
        not _native(name)
        and not name.startswith("requests.")
        and not qualified_name("requests." + name)
    )


def _resource_name(e: _Errors, name: str, path: str) -> None:
    """validateContainerResourceName."""
    if qualified_name(name):
        return e.each(path, name, qualified_name(name))
    container = name in ("cpu", "memory", "ephemeral-storage") or name.startswith("hugepages-")
    if "/" in name and not _native(name) and not _extended(name):
        e.invalid(path, name, "doesn't follow extended resource name standard")
    elif "/" not in name and name not in ("storage", "pods", "services") and not container:
        e.invalid(path, name, "must be a standard resource type or fully qualified")
    elif "/" not in name and not container:
        e.invalid(path, name, "must be a standard resource for containers")


def _resources(e: _Errors, resources: Obj, path: str) -> None:
    """ValidateResourceRequirements: requests <= limits; extended resources (nvidia.com/gpu)
    are integers, may not be overcommitted (requests == limits) and need a limit."""
    limits = {k: parse_quantity(v) for k, v in (resources.get("limits") or {}).items()}
    requests = {k: parse_quantity(v) for k, v in (resources.get("requests") or {}).items()}
    for part, quantities in (("limits", limits), ("requests", requests)):
        for name, q in quantities.items():
            p = f"{path}.{part}[{name}]"
            _resource_name(e, name, p)
            if q.value < 0:
                e.invalid(p, str(q), "must be greater than or equal to 0")
            if _extended(name) and math.ceil(q.value * 1000) % 1000:
                e.invalid(p, str(q), "must be an integer")
            if part == "limits":
                continue
            limit, overcommit = limits.get(name), _native(name) and "hugepages-" not in name
            if limit is not None and q.value != limit.value and not overcommit:
                e.invalid(f"{path}.requests", str(q), f"must be equal to {name} limit of {limit}")
            elif limit is not None and q.value > limit.value:
                detail = f"must be less than or equal to {name} limit of {limit}"
                e.invalid(f"{path}.requests", str(q), detail)
            elif limit is None and not overcommit:
                e.required(f"{path}.limits", "Limit must be set for non overcommitable resources")
    names = set(limits) | set(requests)
    if any(n.startswith("hugepages-") for n in names) and not names & {"cpu", "memory"}:
        e.forbidden(path, "HugePages require cpu or memory")


def _ids(e: _Errors, sc: Obj, path: str, keys: Iterable[str]) -> None:
    for key in keys:
        if isinstance(sc.get(key), int) and not 0 <= sc[key] <= 2**31 - 1:
            e.invalid(f"{path}.{key}", sc[key], "must be between 0 and 2147483647, inclusive")


def _seccomp(e: _Errors, sc: Obj, path: str) -> None:
    """validateSeccompProfileField."""
    profile = sc.get("seccompProfile")
    if profile is None:
        return
    path += ".seccompProfile"
    kind, local = profile.get("type") or "", profile.get("localhostProfile")
    if not kind:
        e.required(f"{path}.type", "type is required when seccompProfile is set")
    elif kind not in ("Localhost", "RuntimeDefault", "Unconfined"):
        e.unsupported(f"{path}.type", kind, ["Localhost", "RuntimeDefault", "Unconfined"])
    if kind == "Localhost" and local is None:
        e.required(f"{path}.localhostProfile", "must be set when seccomp type is Localhost")
    elif kind == "Localhost":
        _relative(e, local, f"{path}.localhostProfile")
    elif local is not None:
        only = "can only be set when seccomp type is Localhost"
        e.invalid(f"{path}.localhostProfile", profile, only)


def _container_security(e: _Errors, sc: Obj | None, path: str, host_users: bool) -> None:
    """ValidateSecurityContext (privileged is allowed, as kube-apiserver's default is)."""
    if sc is None:
        return
    _ids(e, sc, path, ("runAsUser", "runAsGroup"))
    proc = sc.get("procMount")
    if proc is not None and proc not in ("Default", "Unmasked"):
        e.unsupported(f"{path}.procMount", proc, ["Default", "Unmasked"])
    elif proc == "Unmasked" and host_users:
        e.invalid(f"{path}.procMount", proc, "`hostUsers` must be false to use `Unmasked`")
    _seccomp(e, sc, path)
    if sc.get("allowPrivilegeEscalation") is False:
        if sc.get("privileged") is True:
            both = "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
            e.invalid(path, sc, both)
        if "CAP_SYS_ADMIN" in ((sc.get("capabilities") or {}).get("add") or []):
            both = "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"
            e.invalid(path, sc, both)


def _pod_security(e: _Errors, sc: Obj | None, path: str) -> None:
    """validatePodSpecSecurityContext."""
    if sc is None:
        return
    _ids(e, sc, path, ("fsGroup", "runAsUser", "runAsGroup"))
    groups = {
        f"supplementalGroups[{i}]": g for i, g in enumerate(sc.get("supplementalGroups") or [])
    }
    _ids(e, groups, path, groups)
    policy = sc.get("fsGroupChangePolicy")
    if policy is not None and policy not in ("Always", "OnRootMismatch"):
        e.unsupported(f"{path}.fsGroupChangePolicy", policy, ["Always", "OnRootMismatch"])
    _seccomp(e, sc, path)


def _tolerations(e: _Errors, tolerations: list[Obj], path: str) -> None:
    """ValidateTolerations."""
    for i, t in enumerate(tolerations):
        p, key, op = f"{path}[{i}]", t.get("key") or "", t.get("operator") or ""
        effect, value = t.get("effect") or "", t.get("value") or ""
        e.each(f"{p}.key", key, qualified_name(key) if key else [])
        if not key and op != "Exists":
            match_all = 'which means "match all values and all keys"'
            e.invalid(
                f"{p}.operator", op, f"operator must be Exists when `key` is empty, {match_all}"
            )
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            only = "effect must be 'NoExecute' when `tolerationSeconds` is set"
            e.invalid(f"{p}.effect", effect, only)
        if op in ("Equal", "") and label_value(value):
            e.invalid(f"{p}.operator", value, ";".join(label_value(value)))
        elif op == "Exists" and value:
            e.invalid(f"{p}.operator", t, "value must be empty when `operator` is 'Exists'")
        elif op not in ("Equal", "", "Exists"):
            e.unsupported(f"{p}.operator", op, ["Equal", "Exists"])
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            e.unsupported(f"{p}.effect", effect, ["NoSchedule", "PreferNoSchedule", "NoExecute"])


def _container(e: _Errors, c: Obj, volumes: set[str], path: str, host_users: bool) -> None:
    """validateContainerCommon."""
    name = c.get("name") or ""
    if not name:
        e.required(f"{path}.name")
    e.each(f"{path}.name", name, dns_label(name) if name else [])
    if not c.get("image"):
        e.required(f"{path}.image")
    policies = ["File", "FallbackToLogsOnError"]
    e.enum(c.get("terminationMessagePolicy"), f"{path}.terminationMessagePolicy", policies)
    _env(e, c.get("env") or [], f"{path}.env")
    _env_from(e, c.get("envFrom") or [], f"{path}.envFrom")
    _volume_mounts(e, c, volumes, f"{path}.volumeMounts")
    e.enum(c.get("imagePullPolicy"), f"{path}.imagePullPolicy", ["Always", "IfNotPresent", "Never"])
    _resources(e, c.get("resources") or {}, f"{path}.resources")
    _container_security(e, c.get("securityContext"), f"{path}.securityContext", host_users)


def _pod_spec(e: _Errors, spec: Obj, path: str) -> None:
    """ValidatePodSpec, after defaulting."""
    if spec.get("terminationGracePeriodSeconds") is None:
        e.required(f"{path}.terminationGracePeriodSeconds")
    host_users = (spec.get("securityContext") or {}).get("hostUsers") is not False
    volumes = _volumes(e, spec.get("volumes") or [], f"{path}.volumes")
    names: set[str] = set()
    if not spec.get("containers"):
        e.required(f"{path}.containers")
    for i, c in enumerate(spec.get("containers") or []):
        p = f"{path}.containers[{i}]"
        _container(e, c, volumes, p, host_users)
        if c.get("name") in names:
            e.add(DUPLICATE, f"{p}.name", c.get("name"))
        names.add(c.get("name"))
        if c.get("restartPolicy") is not None:
            e.forbidden(f"{p}.restartPolicy", "may not be set for non-init containers")
    for i, c in enumerate(spec.get("initContainers") or []):
        p, policy = f"{path}.initContainers[{i}]", c.get("restartPolicy")
        _container(e, c, volumes, p, host_users)
        if policy is not None and policy != "Always":
            e.unsupported(f"{p}.restartPolicy", policy, ["Always"])
        if c.get("name") in names:
            e.add(DUPLICATE, f"{p}.name", c.get("name"))
        names.add(c.get("name"))
        for key in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
            if policy != "Always" and c.get(key) is not None:
                only = "may not be set for init containers without restartPolicy=Always"
                e.forbidden(f"{p}.{key}", only)
    e.enum(spec.get("restartPolicy"), f"{path}.restartPolicy", ["Always", "OnFailure", "Never"])
    dns = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
    e.enum(spec.get("dnsPolicy"), f"{path}.dnsPolicy", dns)
    _labels(e, spec.get("nodeSelector"), f"{path}.nodeSelector")
    _pod_security(e, spec.get("securityContext"), f"{path}.securityContext")
    for key in ("serviceAccountName", "nodeName"):
        e.each(f"{path}.{key}", spec.get(key), dns_subdomain(spec[key]) if spec.get(key) else [])
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= 2**31 - 1:
        between = "must be between 1 and 2147483647, inclusive"
        e.invalid(f"{path}.activeDeadlineSeconds", deadline, between)
    for key in ("hostname", "subdomain"):
        e.each(f"{path}.{key}", spec.get(key), dns_label(spec[key]) if spec.get(key) else [])
    _tolerations(e, spec.get("tolerations") or [], f"{path}.tolerations")
    priority, runtime = spec.get("priorityClassName"), spec.get("runtimeClassName")
    e.each(f"{path}.priorityClassName", priority, dns_subdomain(priority) if priority else [])
    e.each(f"{path}.runtimeClassName", runtime, [] if runtime is None else dns_subdomain(runtime))


def _pod_template(e: _Errors, template: Obj, path: str) -> None:
    """ValidatePodTemplateSpec: its labels are reported at `.labels`, not `.metadata.labels`."""
    meta, spec = template.get("metadata") or {}, template.get("spec") or {}
    _labels(e, meta.get("labels"), f"{path}.labels")
    _annotations(e, meta.get("annotations"), f"{path}.annotations")
    _pod_spec(e, spec, f"{path}.spec")
    if spec.get("ephemeralContainers"):
        only = "ephemeral containers not allowed in pod template"
        e.forbidden(f"{path}.spec.ephemeralContainers", only)


def _validate_pod(e: _Errors, pod: Obj) -> None:
    """ValidatePodCreate."""
    spec = pod.get("spec") or {}
    _meta(e, pod.get("metadata") or {}, "metadata", _subdomain_name)
    _pod_spec(e, spec, "spec")
    for part in ("containers", "initContainers"):
        for i, c in enumerate(spec.get(part) or []):
            if (c.get("image") or "") != (c.get("image") or "").strip():
                whitespace = "must not have leading or trailing whitespace"
                e.invalid(f"spec.{part}[{i}].image", c["image"], whitespace)
    if spec.get("ephemeralContainers"):
        e.forbidden("spec.ephemeralContainers", "cannot be set on create")


# --------------------------------------------------------------------------------- Jobs

LABEL_UID, LABEL_NAME = "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name"
LEGACY_UID, LEGACY_NAME = "controller-uid", "job-name"
_ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
_STATUSES = ["False", "True", "Unknown"]
_HIGH = "when completions are above 100000 and used with backoff limit per index"
_JOB_DEFAULTS = {"completionMode": "NonIndexed", "suspend": False, "manualSelector": False}
_IMMUTABLE = (
    "completionMode",
    "podFailurePolicy",
    "backoffLimitPerIndex",
    "managedBy",
    "successPolicy",
)


def _go_list(values: list[str]) -> str:
    return "[" + " ".join(map(_quote, values)) + "]"  # Go's %q of a []string


def _job_defaults(job: Obj) -> None:
    """SetDefaults_Job (on every write) and the pod template's defaults."""
    spec, meta = job.setdefault("spec", {}), job.setdefault("metadata", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6
    template = spec.setdefault("template", {})
    template_labels = (template.get("metadata") or {}).get("labels")
    if template_labels is not None and not meta.get("labels"):
        meta["labels"] = template_labels  # the same map, as in Go: generated labels land here too
    for key, value in _JOB_DEFAULTS.items():
        spec[key] = value if spec.get(key) is None else spec[key]
    policy = spec.get("podFailurePolicy")
    for rule in (policy or {}).get("rules") or []:
        for pattern in rule.get("onPodConditions") or []:
            pattern["status"] = pattern.get("status") or "True"
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if policy is not None else "TerminatingOrFailed"
    _default_pod_spec(template.setdefault("spec", {}))


def default_job(job: Obj) -> Obj:
    """What the server adds to a created Job before validating it: SetDefaults_Job, the pod
    template defaults, a uid if it has none, then the generated selector and template labels."""
    job = _wire(job)
    _job_defaults(job)
    meta, spec = job["metadata"], job["spec"]
    meta.setdefault("uid", str(uuid.uuid4()))
    if spec.get("manualSelector") is not True:  # generateSelector
        template_meta = spec["template"].setdefault("metadata", {})
        if template_meta.get("labels") is None:
            template_meta["labels"] = {}
        labels = template_meta["labels"]
        for key in (LEGACY_NAME, LABEL_NAME):
            labels.setdefault(key, meta.get("name") or "")
        for key in (LEGACY_UID, LABEL_UID):
            labels.setdefault(key, meta["uid"])
        spec["selector"] = spec.get("selector") or {}
        spec["selector"].setdefault("matchLabels", {}).setdefault(LABEL_UID, meta["uid"])
    return json.loads(json.dumps(job))  # Go aliases the label maps; a stored object does not


def _generated_selector(e: _Errors, job: Obj, require_prefixed: bool) -> None:
    """validateGeneratedSelector."""
    meta, spec = job.get("metadata") or {}, job.get("spec") or {}
    if spec.get("manualSelector") is True or spec.get("selector") is None:
        return
    uid, name = meta.get("uid") or "", meta.get("name") or ""
    if not uid:
        e.required("metadata.uid")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    expected = {LEGACY_UID: uid, LEGACY_NAME: name}
    if require_prefixed:
        expected |= {LABEL_UID: uid, LABEL_NAME: name}
    for key, value in expected.items():
        if key not in labels:
            e.required(f"spec.template.metadata.labels[{key}]", f"must be '{value}'")
        elif labels[key] != value:
            e.invalid(f"spec.template.metadata.labels[{key}]", labels, f"must be '{value}'")
    if not _matches(spec["selector"], expected):
        e.invalid("spec.selector", spec["selector"], "`selector` not auto-generated")


def _exit_codes(e: _Errors, on: Obj, path: str, containers: set[str]) -> None:
    """validatePodFailurePolicyRuleOnExitCodes."""
    op, values = on.get("operator") or "", on.get("values") or []
    if not op:
        e.required(f"{path}.operator", f"valid values: {_go_list(['In', 'NotIn'])}")
    elif op not in ("In", "NotIn"):
        e.unsupported(f"{path}.operator", op, ["In", "NotIn"])
    if on.get("containerName") is not None and on["containerName"] not in containers:
        one_of = "must be one of the container or initContainer names in the pod template"
        e.invalid(f"{path}.containerName", on["containerName"], one_of)
    if not values:
        e.invalid(f"{path}.values", values, "at least one value is required")
    elif len(values) > 255:
        e.add(TOO_MANY, f"{path}.values", len(values), "must have at most 255 items")
    for j, value in enumerate(values):
        if op == "In" and value == 0:
            e.invalid(f"{path}.values[{j}]", value, "must not be 0 for the In operator")
        if value in values[:j]:
            e.add(DUPLICATE, f"{path}.values[{j}]", value)
    if any(a > b for a, b in itertools.pairwise(values)):
        e.invalid(f"{path}.values", values, "must be ordered")


def _pod_failure_policy(e: _Errors, spec: Obj, path: str) -> None:
    """validatePodFailurePolicy."""
    rules = spec["podFailurePolicy"].get("rules") or []
    if len(rules) > 20:
        e.add(TOO_MANY, f"{path}.rules", len(rules), "must have at most 20 items")
    containers = {
        c.get("name") for c in _containers((spec.get("template") or {}).get("spec") or {})
    }
    for i, rule in enumerate(rules):
        p, action = f"{path}.rules[{i}]", rule.get("action") or ""
        if not action:
            e.required(f"{p}.action", f"valid values: {_go_list(_ACTIONS)}")
        elif action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            e.invalid(f"{p}.action", action, "requires the backoffLimitPerIndex to be set")
        elif action not in _ACTIONS:
            e.unsupported(f"{p}.action", action, _ACTIONS)
        on_codes, on_conditions = rule.get("onExitCodes"), rule.get("onPodConditions") or []
        if on_codes is not None:
            _exit_codes(e, on_codes, f"{p}.onExitCodes", containers)
        if len(on_conditions) > 20:
            e.add(
                TOO_MANY, f"{p}.onPodConditions", len(on_conditions), "must have at most 20 items"
            )
        for j, pattern in enumerate(on_conditions):
            q, kind, status = (
                f"{p}.onPodConditions[{j}]",
                pattern.get("type"),
                pattern.get("status"),
            )
            e.each(f"{q}.type", kind or "", qualified_name(kind or ""))
            if not status:
                e.required(f"{q}.status", f"valid values: {_go_list(_STATUSES)}")
            elif status not in _STATUSES:
                e.unsupported(f"{q}.status", status, _STATUSES)
        if on_codes is not None and on_conditions:
            both = "specifying both OnExitCodes and OnPodConditions is not supported"
            e.invalid(p, _OMIT, both)
        if on_codes is None and not on_conditions:
            e.invalid(p, _OMIT, "specifying one of OnExitCodes and OnPodConditions is required")


def _indexed_limits(e: _Errors, spec: Obj, path: str) -> None:
    """validateJobSpec's limits of Indexed Jobs (completedIndexes must stay small)."""
    completions, parallelism = spec.get("completions"), spec.get("parallelism")
    per_index, max_failed = spec.get("backoffLimitPerIndex"), spec.get("maxFailedIndexes")
    if completions is None:
        e.required(f"{path}.completions", "when completion mode is Indexed")
    if parallelism is not None and parallelism > 100_000:
        detail = "must be less than or equal to 100000 when completion mode is Indexed"
        e.invalid(f"{path}.parallelism", parallelism, detail)
    if None not in (completions, max_failed) and max_failed > completions:
        e.invalid(
            f"{path}.maxFailedIndexes", max_failed, "must be less than or equal to completions"
        )
    if max_failed is not None and max_failed > 100_000:
        e.invalid(f"{path}.maxFailedIndexes", max_failed, "must be less than or equal to 100000")
    if completions is not None and completions > 100_000 and per_index is not None:
        if max_failed is None:
            above = "must be specified when completions is above 100000"
            e.required(f"{path}.maxFailedIndexes", above)
        if parallelism is not None and parallelism > 10_000:
            e.invalid(
                f"{path}.parallelism", parallelism, f"must be less than or equal to 10000 {_HIGH}"
            )
        if max_failed is not None and max_failed > 10_000:
            e.invalid(
                f"{path}.maxFailedIndexes",
                max_failed,
                f"must be less than or equal to 10000 {_HIGH}",
            )


def _job_spec(e: _Errors, spec: Obj, path: str) -> None:
    """ValidateJobSpec: validateJobSpec, then the selector."""
    keys = ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit")
    for key in (*keys, "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes"):
        e.nonnegative(spec.get(key), f"{path}.{key}")
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        e.required(f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified")
    mode = spec.get("completionMode")
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        e.unsupported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"])
    if mode == "Indexed":
        _indexed_limits(e, spec, path)
    for key in ("backoffLimitPerIndex", "maxFailedIndexes"):
        if mode in (None, "NonIndexed") and spec.get(key) is not None:
            e.invalid(f"{path}.{key}", spec[key], "requires indexed completion mode")
    policy, replacement = spec.get("podFailurePolicy"), spec.get("podReplacementPolicy")
    if policy is not None:
        _pod_failure_policy(e, spec, f"{path}.podFailurePolicy")
    if replacement is not None and policy is not None and replacement != "Failed":
        e.unsupported(f"{path}.podReplacementPolicy", replacement, ["Failed"])
    elif replacement is not None and replacement not in ("Failed", "TerminatingOrFailed"):
        valid = ["Failed", "TerminatingOrFailed"]
        e.unsupported(f"{path}.podReplacementPolicy", replacement, valid)
    template = spec.get("template") or {}
    _pod_template(e, template, f"{path}.template")
    restart = (template.get("spec") or {}).get("restartPolicy") or ""
    restart_path = f"{path}.template.spec.restartPolicy"
    if restart in ("Always", ""):
        e.required(restart_path, 'valid values: "OnFailure", "Never"')
    elif restart not in ("OnFailure", "Never"):
        e.unsupported(restart_path, restart, ["OnFailure", "Never"])
    elif policy is not None and restart != "Never":
        e.invalid(
            restart_path, restart, 'only "Never" is supported when podFailurePolicy is specified'
        )
    selector = spec.get("selector")
    if selector is None:
        e.required(f"{path}.selector")
    else:
        _selector(e, selector, f"{path}.selector")
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not _matches(selector, labels):
        mismatch = "`selector` does not match template `labels`"
        e.invalid(f"{path}.template.metadata.labels", labels, mismatch)


def _validate_job(e: _Errors, job: Obj, require_prefixed: bool = True) -> None:
    """ValidateJob: an Indexed Job's pod hostnames `<name>-<index>` must be DNS labels."""
    meta, spec = job.get("metadata") or {}, job.get("spec") or {}
    _meta(e, meta, "metadata", _subdomain_name)
    _generated_selector(e, job, require_prefixed)
    _job_spec(e, spec, "spec")
    completions, name = spec.get("completions"), meta.get("name") or ""
    indexed = spec.get("completionMode") == "Indexed" and isinstance(completions, int)
    if indexed and completions > 0 and dns_label(f"{name}-{completions - 1}"):
        detail = f"will not able to create pod with invalid DNS label: {name}-{completions - 1}"
        e.invalid("metadata.name", name, detail)


def _validate_job_update(e: _Errors, new: Obj, old: Obj) -> None:
    """ValidateJob + ValidateJobUpdate, with the options the strategy derives from `old`."""
    old_spec, spec = old.get("spec") or {}, new.get("spec") or {}
    old_labels = ((old_spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    _validate_job(e, new, require_prefixed=LABEL_UID in old_labels and LABEL_NAME in old_labels)
    _meta_update(e, new.get("metadata") or {}, old.get("metadata") or {})
    _job_spec(e, spec, "spec")  # sic: ValidateJobSpecUpdate runs it again
    completions = spec.get("completions")
    if spec.get("completionMode") != "Indexed":
        e.immutable(completions, old_spec.get("completions"), "spec.completions")
    elif completions not in (old_spec.get("completions"), None, spec.get("parallelism")):
        detail = "can only be modified in tandem with spec.parallelism"  # ElasticIndexedJob
        e.invalid("spec.completions", completions, detail)
    e.immutable(spec.get("selector"), old_spec.get("selector"), "spec.selector")
    template, before = spec.get("template") or {}, _wire(old_spec.get("template") or {})
    if old_spec.get("suspend") is True and not (old.get("status") or {}).get("startTime"):
        # A suspended Job that never started may change its scheduling directives (Kueue).
        new_pod, old_pod = template.get("spec") or {}, before.setdefault("spec", {})
        for key in ("nodeSelector", "tolerations", "schedulingGates"):
            old_pod[key] = new_pod.get(key)
        node_affinity = (new_pod.get("affinity") or {}).get("nodeAffinity")
        old_pod["affinity"] = {**(old_pod.get("affinity") or {}), "nodeAffinity": node_affinity}
        for key in ("labels", "annotations"):
            before.setdefault("metadata", {})[key] = (template.get("metadata") or {}).get(key)
    views = [
        {"metadata": t.get("metadata"), "spec": _by_value(t.get("spec"))}
        for t in (template, before)
    ]
    if not _same(*views):
        e.invalid("spec.template", template, "field is immutable")
    for key in _IMMUTABLE:
        e.immutable(spec.get(key), old_spec.get(key), f"spec.{key}")


def _true(status: Obj, kind: str) -> bool:
    conditions = status.get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _indexes(text: str, completions: int) -> list[tuple[int, int]]:
    """validateIndexesFormat (and parseIndexInterval); ValueError with kube's message."""
    intervals: list[tuple[int, int]] = []
    for part in text.split(",") if text else []:
        limits = part.split("-")
        if len(limits) > 2:
            two = "violates the requirement that an index interval can have at most two parts separated by '-'"
            raise ValueError(f"the fragment {_quote(part)} {two}")
        for limit in limits:
            if not re.fullmatch(r"[+-]?\d+", limit):
                raise ValueError(f"cannot convert string to integer for index: {_quote(limit)}")
            if int(limit) >= completions:
                raise ValueError(f"too large index: {_quote(limit)}")
        x, y = int(limits[0]), int(limits[-1])
        previous = intervals[-1][1] if intervals else None
        if (len(limits) == 2 and x >= y) or (previous is not None and previous >= x):
            first, second = (x, y) if len(limits) == 2 and x >= y else (previous, x)
            raise ValueError(f"non-increasing order, previous: {first}, current: {second}")
        intervals.append((x, y))
    return intervals


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _job_status(e: _Errors, new: Obj, old: Obj) -> None:
    """validateJobStatus + ValidateJobStatusUpdate with getStatusValidationOptions: most rules
    only fire when the fields they are about change, as the strategy sets them up."""
    spec, status, before = new.get("spec") or {}, new.get("status") or {}, old.get("status") or {}
    for key in ("active", "succeeded", "failed", "ready", "terminating"):
        e.nonnegative(status.get(key), f"status.{key}")
    uncounted, seen = status.get("uncountedTerminatedPods") or {}, set()
    for part in ("succeeded", "failed"):
        for i, uid in enumerate(uncounted.get(part) or []):
            if not uid:
                e.invalid(f"status.uncountedTerminatedPods.{part}[{i}]", uid, "must not be empty")
            elif uid in seen:
                e.add(DUPLICATE, f"status.uncountedTerminatedPods.{part}[{i}]", uid)
            seen.add(uid)

    def changed(*keys: str) -> bool:
        return any(status.get(k) != before.get(k) for k in keys)

    def flipped(*kinds: str) -> bool:
        return any(_true(status, k) != _true(before, k) for k in kinds)

    conditions = "status.conditions"
    complete, failed = _true(status, "Complete"), _true(status, "Failed")
    criteria, target = _true(status, "SuccessCriteriaMet"), _true(status, "FailureTarget")
    finished = complete or failed
    finish_changed = finished != (_true(before, "Complete") or _true(before, "Failed"))
    completions = spec.get("completions")
    start, end = _when(status.get("startTime")), _when(status.get("completionTime"))
    if complete and failed and flipped("Complete", "Failed"):
        e.invalid(conditions, _OMIT, "cannot set Complete=True and Failed=true conditions")
    if complete and target and flipped("Complete", "FailureTarget"):
        e.invalid(conditions, _OMIT, "cannot set Complete=True and FailureTarget=true conditions")
    if end and not complete and (flipped("Complete") or changed("completionTime")):
        no_complete = "cannot set completionTime when there is no Complete=True condition"
        e.invalid("status.completionTime", status["completionTime"], no_complete)
    if complete and not end and (flipped("Complete") or changed("completionTime")):
        e.required("status.completionTime", "completionTime is required for Complete jobs")
    if start and end and end < start and changed("startTime", "completionTime"):
        before_start = "completionTime cannot be set before startTime"
        e.invalid("status.completionTime", status["completionTime"], before_start)
    if failed and not target and flipped("Failed"):
        without = "cannot set Failed=True condition without the FailureTarget=true condition"
        e.invalid(conditions, _OMIT, without)
    if complete and not criteria and flipped("Complete"):
        without = "cannot set Complete=True condition without the SuccessCriteriaMet=true condition"
        e.invalid(conditions, _OMIT, without)
    if finished and (status.get("active") or 0) > 0 and (finish_changed or changed("active")):
        e.invalid("status.active", status["active"], "active>0 is invalid for finished job")
    zero_suspended = spec.get("suspend") is True and completions == 0
    if finished and not start and (finish_changed or changed("startTime")) and not zero_suspended:
        e.required("status.startTime", "startTime is required for finished job")
    leftover = any(uncounted.get(k) for k in ("succeeded", "failed"))
    if finished and leftover and (finish_changed or changed("uncountedTerminatedPods")):
        needs = "uncountedTerminatedPods needs to be empty for finished job"
        e.invalid("status.uncountedTerminatedPods", uncounted, needs)
    _indexes_status(e, spec, status, changed)
    terminating = status.get("terminating") or 0
    if finished and terminating > 0 and (finish_changed or changed("terminating")):
        e.invalid("status.terminating", terminating, "terminating>0 is invalid for finished job")
    ready = status.get("ready")
    if ready is not None and ready > (status.get("active") or 0) and changed("ready", "active"):
        e.invalid("status.ready", ready, "cannot set more ready pods than active")
    if criteria and failed:
        e.invalid(
            conditions, _OMIT, "cannot set SuccessCriteriaMet=True and Failed=true conditions"
        )
    if criteria and target:
        e.invalid(
            conditions,
            _OMIT,
            "cannot set SuccessCriteriaMet=True and FailureTarget=true conditions",
        )
    for kind in ("Failed", "Complete", "FailureTarget"):  # the transitions
        if _true(before, kind) and not _true(status, kind):
            e.invalid(conditions, _OMIT, f"cannot disable the terminal {kind}=True condition")
    if (status.get("failed") or 0) < (before.get("failed") or 0):
        e.invalid("status.failed", status.get("failed") or 0, "cannot decrease the failed counter")
    scaled_down = spec.get("completionMode") == "Indexed" and completions == spec.get("parallelism")
    if (status.get("succeeded") or 0) < (before.get("succeeded") or 0) and not scaled_down:
        decrease = "cannot decrease the succeeded counter"
        e.invalid("status.succeeded", status.get("succeeded") or 0, decrease)
    if end and before.get("completionTime") and end != _when(before["completionTime"]):
        e.invalid(
            "status.completionTime", status["completionTime"], "completionTime cannot be mutated"
        )
    if before.get("startTime") and changed("startTime") and spec.get("suspend") is not True:
        e.required("status.startTime", "startTime cannot be removed for unsuspended job")
    if _true(before, "SuccessCriteriaMet") and not criteria:
        e.invalid(conditions, _OMIT, "cannot disable the SuccessCriteriaMet=True condition")
    if _true(before, "Complete") and not _true(before, "SuccessCriteriaMet") and criteria:
        already = "cannot set SuccessCriteriaMet=True for Job already has Complete=true conditions"
        e.invalid(conditions, _OMIT, already)


def _indexes_status(e: _Errors, spec: Obj, status: Obj, changed: Callable[..., bool]) -> None:
    """completedIndexes and failedIndexes: format, mode, and no overlap."""
    done_text, failed_text = status.get("completedIndexes") or "", status.get("failedIndexes")
    completions, per_index = spec.get("completions"), spec.get("backoffLimitPerIndex")
    done = failures = None
    if completions is not None:
        try:
            done = _indexes(done_text, completions)
        except ValueError as error:
            if changed("completedIndexes"):
                parsing = f"error parsing completedIndexes: {error}"
                e.invalid("status.completedIndexes", done_text, parsing)
        try:
            failures = _indexes(failed_text, completions) if failed_text is not None else None
        except ValueError as error:
            if changed("failedIndexes") and per_index is not None:
                e.invalid(
                    "status.failedIndexes", failed_text, f"error parsing failedIndexes: {error}"
                )
    if done_text and spec.get("completionMode") != "Indexed" and changed("completedIndexes"):
        non_indexed = "cannot set non-empty completedIndexes when non-indexed completion mode"
        e.invalid("status.completedIndexes", done_text, non_indexed)
    if failed_text is not None and per_index is None and changed("failedIndexes"):
        null = "cannot set non-null failedIndexes when backoffLimitPerIndex is null"
        e.invalid("status.failedIndexes", failed_text, null)
    if done and failures and changed("failedIndexes", "completedIndexes"):
        overlap = [max(a, c) for a, b in done for c, d in failures if a <= d and c <= b]
        if overlap:
            at = f"failedIndexes and completedIndexes overlap at index: {min(overlap)}"
            e.invalid("status.failedIndexes", failed_text, at)


# ------------------------------------------------------------------------------- Events


def _validate_event(e: _Errors, event: Obj) -> None:
    """legacyValidateEvent, all that core/v1 Events get (lengths in bytes, as Go's len)."""
    namespace = (event.get("metadata") or {}).get("namespace") or ""
    involved = (event.get("involvedObject") or {}).get("namespace") or ""
    if not event.get("eventTime"):
        mismatch = involved != namespace if involved else namespace not in ("", "default")
    else:
        mismatch = not involved and namespace not in ("default", "kube-system")
    if mismatch:
        e.invalid("involvedObject.namespace", involved, "does not match event.namespace")
    if event.get("eventTime"):
        component = event.get("reportingComponent") or ""
        if not component:
            e.required("reportingComponent")
        e.each("reportingComponent", component, qualified_name(component))
        limits = {"reportingInstance": 128, "action": 128, "reason": 128, "message": 1024}
        for key, limit in limits.items():
            value = event.get(key) or ""
            if not value and key != "message":
                e.required(key)
            if len(value.encode()) > limit:
                e.invalid(key, "", f"can have at most {limit} characters")
    e.each("namespace", namespace, dns_subdomain(namespace))


# ------------------------------------------------------------------------------ the API

_VALIDATE = {"jobs": _validate_job, "pods": _validate_pod, "events": _validate_event}


def prepare_create(resource: str, obj: Obj) -> Obj:
    """The object as the server stores it on create: a generated name, a uid, the defaults
    (for Jobs, the generated selector too) and the status reset by PrepareForCreate (a Job
    has none, a Pod is Pending). Raises DecodeError for an unparseable quantity."""
    if resource not in _VALIDATE:
        raise ValueError(f"no validation for {resource!r}")
    _check_decodable(resource, obj)
    obj = _wire(obj)
    meta = obj.setdefault("metadata", {})
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = generate_name(meta["generateName"])
    meta.setdefault("uid", str(uuid.uuid4()))
    if resource == "jobs":
        obj = default_job(obj)
        obj.pop("status", None)
    elif resource == "pods":
        _default_pod(obj)
        obj["status"] = {"phase": "Pending"}
    return obj


def prepare_update(resource: str, obj: Obj, old: Obj, subresource: str | None = None) -> Obj:
    """The object as the server stores it on update: defaults, system fields kept from `old`,
    the part the request may not change reset (status; spec for /status), generation bumped
    when a Job's spec changes."""
    if resource not in _VALIDATE:
        raise ValueError(f"no validation for {resource!r}")
    _check_decodable(resource, obj)
    new = _wire(obj)
    meta, old_meta = new.setdefault("metadata", {}), old.get("metadata") or {}
    for key in ("creationTimestamp", "uid"):
        if old_meta.get(key) and not meta.get(key):
            meta[key] = old_meta[key]
    if resource == "jobs":
        _job_defaults(new)
    elif resource == "pods":
        _default_pod(new)
    if resource in ("jobs", "pods"):
        kept = "spec" if subresource == "status" else "status"
        new.pop(kept, None)
        if kept in old:
            new[kept] = _wire(old[kept])
    if resource == "jobs" and not _same(new.get("spec"), old.get("spec")):
        meta["generation"] = (old_meta.get("generation") or 1) + 1
    return new


def validate_create(resource: str, obj: Obj) -> list[Cause]:
    """The causes of kube-apiserver's 422 for this create, [] when it accepts it. The
    resource's validation runs first; the generic metadata check only when that passes."""
    obj, e = prepare_create(resource, obj), _Errors()
    _VALIDATE[resource](e, obj)
    if not e:
        _meta(e, obj["metadata"], "metadata", _path_segment_name)
    return list(e)


def validate_update(
    resource: str, obj: Obj, old: Obj, subresource: str | None = None
) -> list[Cause]:
    """The causes of kube-apiserver's 422 for this update (a PUT, or a PATCH merged onto the
    stored `old`). The common metadata checks come first, then the resource's, duplicates
    included as kube reports them."""
    new, e = prepare_update(resource, obj, old, subresource), _Errors()
    meta, old_meta = new.get("metadata") or {}, old.get("metadata") or {}
    _meta(e, meta, "metadata", _path_segment_name)
    _meta_update(e, meta, old_meta)
    if resource == "jobs" and subresource == "status":
        _meta_update(e, meta, old_meta)
        _job_status(e, new, old)
    elif resource == "jobs":
        _validate_job_update(e, new, old)
    elif resource == "pods":
        _meta_update(e, meta, old_meta)
        if subresource != "status":
            _validate_pod(e, new)
    else:
        _validate_event(e, new)
    return list(e)


def invalid_status(kind: str, group: str, name: str, causes: list[Cause]) -> Obj:
    """kube-apiserver's 422 body (errors.NewInvalid): every cause in the details; the message
    joins their distinct texts, in brackets when there are several."""
    texts = list(dict.fromkeys(map(str, causes)))
    aggregate = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    qualified = f"{kind}.{group}" if group else kind
    details: Obj = {"name": name, **({"group": group} if group else {}), "kind": kind}
    details["causes"] = [
        {"reason": c.reason, "message": c.message, **({"field": c.field} if c.field else {})}
        for c in causes
    ]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"{qualified} {_quote(name)} is invalid" + (f": {aggregate}" if texts else ""),
        "reason": "Invalid",
        "details": details,
        "code": 422,
    }
