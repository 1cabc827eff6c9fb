"""kube-apiserver's defaulting and validation of the built-in objects the operator tier writes.

A real kube-apiserver refuses, for example, Job names over 63 characters. This module is the
test API server's side of that contract for batch/v1 Jobs (the operator's: create, spec
update, status update by the Job simulator), v1 Pods (the simulator's) and v1 Events
(kopf's), as pure functions on JSON dicts. k8s_harness plugs it into the emulated server,
which answers 422 with `kube_status.invalid` of the causes, and 400 for a quantity it cannot
decode; `object_meta` and `object_meta_update` serve crd_admission too. Field errors, name
formats and Status bodies are kube_status's.

Target: Kubernetes 1.29-1.33 with default feature gates. Where these versions differ, the
strictest rule in the range is emulated, so what passes here passes on all of them: env var
names follow the strict IsEnvVarName of 1.29-1.31 (RelaxedEnvironmentVariableValidation is
on from 1.32); Job status updates get the transition checks of the Job status strategy with
JobManagedBy on (from 1.32), including Failed only after FailureTarget and Complete only
after SuccessCriteriaMet, the order the Job controller writes them in since 1.31.

Use: `obj = prepare_create("jobs", body)` is what the server stores (generated name, uid,
defaults, generated selector, status cleared); `validate_create("jobs", obj)` its causes.
For PATCH/PUT: merge onto the stored object `old`, then `prepare_update` and
`validate_update(resource, merged, old, subresource)`. Both validators prepare their input
themselves (idempotently), so raw bodies work too.

| rule | upstream function (kubernetes/kubernetes) |
| --- | --- |
| names, generateName (`maskTrailingDash`), namespace, labels, annotations (256 KiB), ownerReferences (one controller, no Event owner), finalizers | apimachinery api/validation objectmeta.go `ValidateObjectMetaAccessor`, `ValidateOwnerReferences`, `ValidateFinalizers`; core/validation `ValidateObjectMeta` (`validateKubeFinalizerName`); api/validation/path `ValidatePathSegmentName` |
| metadata on update (immutable name, namespace, uid, timestamps; resourceVersion given; generation not decremented; no new finalizer while deleting) | objectmeta.go `ValidateObjectMetaAccessorUpdate`; apiserver rest `BeforeCreate`, `BeforeUpdate` |
| Job defaults: completions, parallelism, backoffLimit, completionMode, suspend, podReplacementPolicy, onPodConditions status | pkg/apis/batch/v1 defaults.go `SetDefaults_Job` |
| generated selector and the four job-name/controller-uid template labels (why Job names over 63 fail) | pkg/registry/batch/job strategy.go `generateSelector`; batch/validation `validateGeneratedSelector` |
| Indexed Job: `<name>-<completions-1>` a DNS label | batch/validation `ValidateJob` |
| counts non-negative; completionMode; backoffLimitPerIndex and maxFailedIndexes (Indexed only, 10^5, <= completions, the limits above 10^5 completions); restartPolicy OnFailure or Never | batch/validation `validateJobSpec` |
| podFailurePolicy: at most 20 rules, action enum, FailIndex needs backoffLimitPerIndex, onExitCodes (operator, containerName, 1-255 values, unique, ordered, no 0 with In), onPodConditions, restartPolicy Never; podReplacementPolicy Failed with it | batch/validation `validatePodFailurePolicy*`, `validatePodReplacementPolicy` |
| selector matching the template labels | batch/validation `validateJobSpec`; apimachinery meta/v1 validation `ValidateLabels` |
| spec updates: completions (elastic Indexed Jobs only), selector, template, completionMode, podFailurePolicy, backoffLimitPerIndex immutable | batch/validation `ValidateJobSpecUpdate`, `validateCompletions` |
| status updates: counts, completedIndexes/failedIndexes format and overlap, terminal conditions and their order, start and completion times | batch/validation `validateJobStatus`, `ValidateJobStatusUpdate`, `validateIndexesFormat`; job strategy `getStatusValidationOptions` |
| pod defaults: restartPolicy, dnsPolicy, grace period, pull policy, termination message, Pod requests from limits | pkg/apis/core/v1 defaults.go `SetDefaults_PodSpec`, `SetDefaults_Container`, `SetDefaults_Pod` |
| pod spec: containers (name, image, unique), volumes (name, unique, one source, claimName, emptyDir size), volumeMounts (volume exists, mountPath given and unique, subPath relative), env names and secret/config-map sources, envFrom, resources (names, quantities, requests <= limits, extended resources integral, equal and limited), enums, nodeSelector, tolerations, class and account names | core/validation `ValidatePodSpec`, `validateContainerCommon`, `ValidateVolumes`, `ValidateVolumeMounts`, `ValidateEnv`, `ValidateEnvFrom`, `ValidateResourceRequirements`, `validateContainerResourceName`, `ValidateTolerations`; apimachinery `IsEnvVarName`, `IsConfigMapKey` |
| Pod create (image whitespace) | core/validation `ValidatePodCreate` |
| quantities (a bad one is a 400) | apimachinery api/resource quantity.go `ParseQuantity`, `CanonicalizeBytes` |
| Events (core/v1): namespaces, and for events with eventTime the reporting fields and the lengths of action, reason (128) and message (1024 bytes) | core/validation events.go `ValidateEventCreate`, `legacyValidateEvent` |

Not emulated: security contexts, probes, lifecycle handlers, ports, affinity, topology
spread, DNS config, sysctls, pod annotations, resource claims, init containers beyond the
container checks, ephemeral containers, the inner fields of volume sources other than
emptyDir and persistentVolumeClaim, downward-API env sources (counted, not checked),
matchExpressions of manual selectors (only matched), Pod spec updates (only metadata and the
Pod itself are checked), the relaxed rules for suspended Jobs' templates (Kueue), Job
successPolicy and managedBy, the ready, terminating and uncountedTerminatedPods status
fields, CronJobs, Event API groups other than core/v1, unknown-field and type errors other
than quantities (a real server answers 400 for those), and admission (quota, LimitRange, Pod
Security).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

import kube_status as ks
from kube_status import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    NOT_SUPPORTED,
    OMIT,
    REQUIRED,
    TOO_LONG,
    TOO_MANY,
    Cause,
    dns_label,
    dns_subdomain,
    label_value,
    qualified_name,
)

Obj = dict[str, Any]


class Errors(list[Cause]):
    """A field.ErrorList with kube's constructors (field.Invalid, field.Required, ...)."""

    def add(self, reason: str, path: str, value: Any = OMIT, detail: str = "") -> None:
        self.append(ks.field_error(reason, path, value, detail))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.add(INVALID, path, value, detail)

    def required(self, path: str, detail: str = "") -> None:
        self.add(REQUIRED, path, detail=detail)

    def forbidden(self, path: str, detail: str) -> None:
        self.add(FORBIDDEN, path, detail=detail)

    def unsupported(self, path: str, value: Any, valid: Iterable[str]) -> None:
        listed = ", ".join(map(ks.go_quote, valid))
        self.add(NOT_SUPPORTED, path, value, f"supported values: {listed}")

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


def _same(a: Any, b: Any) -> bool:
    """apiequality.Semantic.DeepEqual: an empty map or list equals a missing one."""
    return _normal(a) == _normal(b)


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        value = {k: n for k, v in value.items() if (n := _normal(v)) is not None}
    elif isinstance(value, list):
        value = [_normal(v) for v in value]
    return None if value == {} or value == [] else value


def _wire(obj: Any) -> Any:
    """A copy as it arrives over HTTP: JSON, so no two fields share one dict."""
    return json.loads(json.dumps(obj))


# ------------------------------------------------------------------------- formats

_ENV_NAME = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_CONFIG_KEY = "[-._a-zA-Z0-9]+"


def _dots(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"must not be '{value}'"]
    return ["must not start with '..'"] if value.startswith("..") else []


def env_var_name(value: str) -> list[str]:
    """IsEnvVarName, the 1.29-1.31 rule (see the module doc)."""
    message = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit"
    examples = ("my.env-name", "MY_ENV.NAME", "MyEnvName1")
    errs = [] if re.fullmatch(_ENV_NAME, value) else [ks.regex_error(message, _ENV_NAME, *examples)]
    return errs + _dots(value)


def config_map_key(value: str) -> list[str]:
    errs = ["must be no more than 253 characters"] if len(value) > 253 else []
    if not re.fullmatch(_CONFIG_KEY, value):
        message = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
        errs.append(ks.regex_error(message, _CONFIG_KEY, "key.name", "KEY_NAME", "key-name"))
    return errs + _dots(value)


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


# ------------------------------------------------------------------------- quantities

_QUANTITY = re.compile(r"([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?")
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
        raise ValueError(
            "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    sign, suffix, value = match.group(1), match.group(3) or "", Fraction(match.group(2))
    if suffix in _BINARY:
        value, fmt = value * 1024 ** (_BINARY.index(suffix) + 1), "BinarySI"
    elif suffix[:1] in ("e", "E"):
        value, fmt = value * Fraction(10) ** int(suffix[1:]), "DecimalExponent"
    else:
        value, fmt = value * Fraction(10) ** _DECIMAL[suffix], "DecimalSI"
    value = Fraction(math.ceil(value * 10**9), 10**9)  # nano precision, rounded up
    return Quantity(-value if sign == "-" else value, fmt)


def _containers(spec: Obj) -> list[Obj]:
    return (spec.get("containers") or []) + (spec.get("initContainers") or [])


def _check_decodable(resource: str, obj: Obj) -> None:
    """A quantity that does not parse fails the decoding: 400, before any validation."""
    spec = obj.get("spec") or {}
    if resource == "jobs":
        spec = (spec.get("template") or {}).get("spec") or {}
    elif resource != "pods":
        return
    values = [(v.get("emptyDir") or {}).get("sizeLimit") for v in spec.get("volumes") or []]
    for c in _containers(spec):
        for part in ("limits", "requests"):
            values += list(((c.get("resources") or {}).get(part) or {}).values())
    for value in values:
        try:
            parse_quantity(value) if value is not None else None
        except ValueError as e:
            kind = {"jobs": "Job", "pods": "Pod"}[resource]
            message = f'{kind} in version "v1" cannot be handled as a {kind}: {e}'
            raise ks.bad_request(message) from None


# ---------------------------------------------------------------------------- metadata


def _labels(e: Errors, labels: Obj | None, path: str) -> None:
    for key, value in (labels or {}).items():
        e.each(path, key, qualified_name(key))
        e.each(path, value, label_value(str(value)))


def _annotations(e: Errors, annotations: Obj | None, path: str) -> None:
    size = 0
    for key, value in (annotations or {}).items():
        e.each(path, key, qualified_name(key.lower()))
        size += len(key.encode()) + len(str(value).encode())
    if size > 256 * 1024:
        e.add(TOO_LONG, path, detail=f"must have at most {256 * 1024} bytes")


def _owner_references(e: Errors, refs: list[Obj] | None, path: str) -> None:
    controller = ""
    for ref in refs or []:
        api_version, kind = ref.get("apiVersion") or "", ref.get("kind") or ""
        parts = api_version.split("/")
        if not (parts[-1] if len(parts) <= 2 else ""):
            e.invalid(f"{path}.apiVersion", api_version, "version must not be empty")
        for key in ("kind", "name", "uid"):
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


def object_meta(
    e: Errors,
    meta: Obj,
    name_fn: NameFn = _subdomain_name,
    namespaced: bool = True,
    kube_finalizers: bool = True,
) -> None:
    """ValidateObjectMetaAccessor (after name generation); `kube_finalizers` adds the core
    kinds' rule that a finalizer is a standard name or qualified (custom resources skip it)."""
    prefix, name, namespace = (meta.get(k) or "" for k in ("generateName", "name", "namespace"))
    if prefix:
        e.each("metadata.generateName", prefix, name_fn(prefix, True))
    if not name:
        e.required("metadata.name", "name or generateName is required")
    e.each("metadata.name", name, name_fn(name, False) if name else [])
    if namespaced and not namespace:
        e.required("metadata.namespace")
    elif namespaced:
        e.each("metadata.namespace", namespace, dns_label(namespace))
    elif namespace:
        e.forbidden("metadata.namespace", "not allowed on this type")
    e.nonnegative(meta.get("generation"), "metadata.generation")
    _labels(e, meta.get("labels"), "metadata.labels")
    _annotations(e, meta.get("annotations"), "metadata.annotations")
    _owner_references(e, meta.get("ownerReferences"), "metadata.ownerReferences")
    names = meta.get("finalizers") or []
    for i, finalizer in enumerate(names):
        e.each("metadata.finalizers", finalizer, qualified_name(finalizer))
        standard = finalizer in ("kubernetes", "orphan", "foregroundDeletion")
        if kube_finalizers and "/" not in finalizer and not standard:
            detail = "name is neither a standard finalizer name nor is it fully qualified"
            e.invalid(f"metadata.finalizers[{i}]", finalizer, detail)
    if {"orphan", "foregroundDeletion"} <= set(names):
        both = "finalizer orphan and foregroundDeletion cannot be both set"
        e.invalid("metadata.finalizers", names, both)


def object_meta_update(e: Errors, new: Obj, old: Obj) -> None:
    """ValidateObjectMetaAccessorUpdate."""
    if old.get("deletionTimestamp"):
        added = sorted(set(new.get("finalizers") or []) - set(old.get("finalizers") or []))
        if added:
            listed = "[]string{" + ", ".join(map(ks.go_quote, added)) + "}"
            detail = f"no new finalizers can be added if the object is being deleted, found new finalizers {listed}"
            e.forbidden("metadata.finalizers", detail)
    if not new.get("resourceVersion"):
        e.invalid("metadata.resourceVersion", "", "must be specified for an update")
    if (new.get("generation") or 0) < (old.get("generation") or 0):
        e.invalid("metadata.generation", new.get("generation") or 0, "must not be decremented")
    for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
        e.immutable(new.get(key) or "", old.get(key) or "", f"metadata.{key}")
    _labels(e, new.get("labels"), "metadata.labels")
    _annotations(e, new.get("annotations"), "metadata.annotations")
    _owner_references(e, new.get("ownerReferences"), "metadata.ownerReferences")


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


# ------------------------------------------------------------------------- pod specs

# The volume sources in the order validateVolumeSource checks them (the second is refused).
_VOLUME_SOURCES = (
    "emptyDir", "hostPath", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore", "secret",
    "nfs", "iscsi", "glusterfs", "flocker", "persistentVolumeClaim", "rbd", "cinder", "cephfs",
    "quobyte", "downwardAPI", "fc", "flexVolume", "configMap", "azureFile", "vsphereVolume",
    "photonPersistentDisk", "portworxVolume", "azureDisk", "storageos", "projected", "scaleIO",
    "csi", "ephemeral",
)  # fmt: skip
_SOURCE_PATH = {"cephfs": "cephFS", "downwardAPI": "downwarAPI"}  # kube's own spelling


def _default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec, _Container and _Volume (a volume without a source is emptyDir), as
    far as validation reads them."""
    for key, value in (("restartPolicy", "Always"), ("dnsPolicy", "ClusterFirst")):
        spec[key] = spec.get(key) or value
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    for c in _containers(spec):
        if not c.get("imagePullPolicy"):  # ParseImageName: no tag and no digest is :latest
            name, _, digest = (c.get("image") or "").partition("@")
            tag = name.rsplit("/", 1)[-1].partition(":")[2] or ("" if digest else "latest")
            c["imagePullPolicy"] = "Always" if tag == "latest" else "IfNotPresent"
        c["terminationMessagePath"] = c.get("terminationMessagePath") or "/dev/termination-log"
        c["terminationMessagePolicy"] = c.get("terminationMessagePolicy") or "File"
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
    _default_pod_spec(spec)


def _volumes(e: Errors, volumes: list[Obj], path: str) -> set[str]:
    """ValidateVolumes: the names of the valid volumes, for the mounts to refer to."""
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        here, p, name = Errors(), f"{path}[{i}]", vol.get("name") or ""
        sources = [k for k in _VOLUME_SOURCES if vol.get(k) is not None]
        for key in sources[1:]:  # none at all cannot be: defaulting made it an emptyDir
            more = "may not specify more than 1 volume type"
            here.forbidden(f"{p}.{_SOURCE_PATH.get(key, key)}", more)
        size = (vol.get("emptyDir") or {}).get("sizeLimit")
        if size is not None and parse_quantity(size).value < 0:
            quantity = "SizeLimit field must be a valid resource quantity"
            here.forbidden(f"{p}.emptyDir.sizeLimit", quantity)
        claim = vol.get("persistentVolumeClaim")
        if claim is not None and not claim.get("claimName"):
            here.required(f"{p}.persistentVolumeClaim.claimName")
        if not name:
            here.required(f"{p}.name")
        here.each(f"{p}.name", name, dns_label(name) if name else [])
        if name in names:
            here.add(DUPLICATE, f"{p}.name", name)
        e += here
        if not here:
            names.add(name)
    return names


def _volume_mounts(e: Errors, c: Obj, volumes: set[str], path: str) -> None:
    """ValidateVolumeMounts: mountPath only needs to be set and unique (no absolute-path or
    ':' rule: that is the kubelet's)."""
    seen: set[str] = set()
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
        sub = mount.get("subPath") or ""  # validateLocalDescendingPath; sic: no index in path
        if sub.startswith("/"):
            e.invalid(f"{path}.subPath", sub, "must be a relative path")
        if ".." in sub.split("/"):
            e.invalid(f"{path}.subPath", sub, "must not contain '..'")


_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")


def _env(e: Errors, env: list[Obj], path: str) -> None:
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


def _env_from(e: Errors, sources: list[Obj], path: str) -> None:
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
    prefixed = qualified_name("requests." + name)
    return not _native(name) and not name.startswith("requests.") and not prefixed


def _resource_name(e: Errors, name: str, path: str) -> None:
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


def _resources(e: Errors, resources: Obj, path: str) -> None:
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


def _tolerations(e: Errors, tolerations: list[Obj], path: str) -> None:
    """ValidateTolerations."""
    effects = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
    for i, t in enumerate(tolerations):
        p, key, op = f"{path}[{i}]", t.get("key") or "", t.get("operator") or ""
        effect, value = t.get("effect") or "", t.get("value") or ""
        e.each(f"{p}.key", key, qualified_name(key) if key else [])
        if not key and op != "Exists":
            match_all = 'which means "match all values and all keys"'
            detail = f"operator must be Exists when `key` is empty, {match_all}"
            e.invalid(f"{p}.operator", op, detail)
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            only = "effect must be 'NoExecute' when `tolerationSeconds` is set"
            e.invalid(f"{p}.effect", effect, only)
        if op in ("Equal", "") and label_value(value):
            e.invalid(f"{p}.operator", value, ";".join(label_value(value)))
        elif op == "Exists" and value:
            e.invalid(f"{p}.operator", t, "value must be empty when `operator` is 'Exists'")
        elif op not in ("Equal", "", "Exists"):
            e.unsupported(f"{p}.operator", op, ["Equal", "Exists"])
        if effect and effect not in effects:
            e.unsupported(f"{p}.effect", effect, effects)


def _container(e: Errors, c: Obj, volumes: set[str], path: str) -> None:
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


def _pod_spec(e: Errors, spec: Obj, path: str) -> None:
    """ValidatePodSpec, after defaulting."""
    if spec.get("terminationGracePeriodSeconds") is None:
        e.required(f"{path}.terminationGracePeriodSeconds")
    volumes = _volumes(e, spec.get("volumes") or [], f"{path}.volumes")
    if not spec.get("containers"):
        e.required(f"{path}.containers")
    names: set[str] = set()
    for part in ("containers", "initContainers"):
        for i, c in enumerate(spec.get(part) or []):
            _container(e, c, volumes, f"{path}.{part}[{i}]")
            if c.get("name") in names:
                e.add(DUPLICATE, f"{path}.{part}[{i}].name", c.get("name"))
            names.add(c.get("name"))
    e.enum(spec.get("restartPolicy"), f"{path}.restartPolicy", ["Always", "OnFailure", "Never"])
    dns = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
    e.enum(spec.get("dnsPolicy"), f"{path}.dnsPolicy", dns)
    _labels(e, spec.get("nodeSelector"), f"{path}.nodeSelector")
    for key in ("serviceAccountName", "priorityClassName"):
        e.each(f"{path}.{key}", spec.get(key), dns_subdomain(spec[key]) if spec.get(key) else [])
    runtime = spec.get("runtimeClassName")
    e.each(f"{path}.runtimeClassName", runtime, [] if runtime is None else dns_subdomain(runtime))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= 2**31 - 1:
        between = "must be between 1 and 2147483647, inclusive"
        e.invalid(f"{path}.activeDeadlineSeconds", deadline, between)
    for key in ("hostname", "subdomain"):
        e.each(f"{path}.{key}", spec.get(key), dns_label(spec[key]) if spec.get(key) else [])
    _tolerations(e, spec.get("tolerations") or [], f"{path}.tolerations")


def _validate_pod(e: Errors, pod: Obj) -> None:
    """ValidatePodCreate."""
    spec = pod.get("spec") or {}
    object_meta(e, pod.get("metadata") or {})
    _pod_spec(e, spec, "spec")
    for i, c in enumerate(spec.get("containers") or []):
        if (c.get("image") or "") != (c.get("image") or "").strip():
            whitespace = "must not have leading or trailing whitespace"
            e.invalid(f"spec.containers[{i}].image", c["image"], whitespace)


# --------------------------------------------------------------------------------- Jobs

LABEL_UID, LABEL_NAME = "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name"
LEGACY_UID, LEGACY_NAME = "controller-uid", "job-name"
_ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
_STATUSES = ["False", "True", "Unknown"]
_HIGH = "when completions are above 100000 and used with backoff limit per index"
_JOB_DEFAULTS = {"completionMode": "NonIndexed", "suspend": False, "manualSelector": False}


def _go_list(values: list[str]) -> str:
    return "[" + " ".join(map(ks.go_quote, values)) + "]"  # Go's %q of a []string


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
    return _wire(job)  # Go aliases the label maps; a stored object does not


def _generated_selector(e: Errors, job: Obj, require_prefixed: bool) -> None:
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


def _exit_codes(e: Errors, on: Obj, path: str, containers: set[str]) -> None:
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


def _pod_failure_policy(e: Errors, spec: Obj, path: str) -> None:
    """validatePodFailurePolicy."""
    rules = spec["podFailurePolicy"].get("rules") or []
    if len(rules) > 20:
        e.add(TOO_MANY, f"{path}.rules", len(rules), "must have at most 20 items")
    template_spec = (spec.get("template") or {}).get("spec") or {}
    containers = {c.get("name") for c in _containers(template_spec)}
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
            twenty = "must have at most 20 items"
            e.add(TOO_MANY, f"{p}.onPodConditions", len(on_conditions), twenty)
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
            e.invalid(p, OMIT, both)
        if on_codes is None and not on_conditions:
            e.invalid(p, OMIT, "specifying one of OnExitCodes and OnPodConditions is required")


def _indexed_limits(e: Errors, spec: Obj, path: str) -> None:
    """validateJobSpec's limits of Indexed Jobs (completedIndexes must stay small)."""
    completions, parallelism = spec.get("completions"), spec.get("parallelism")
    per_index, max_failed = spec.get("backoffLimitPerIndex"), spec.get("maxFailedIndexes")
    if completions is None:
        e.required(f"{path}.completions", "when completion mode is Indexed")
    if parallelism is not None and parallelism > 100_000:
        detail = "must be less than or equal to 100000 when completion mode is Indexed"
        e.invalid(f"{path}.parallelism", parallelism, detail)
    if None not in (completions, max_failed) and max_failed > completions:
        detail = "must be less than or equal to completions"
        e.invalid(f"{path}.maxFailedIndexes", max_failed, detail)
    if max_failed is not None and max_failed > 100_000:
        e.invalid(f"{path}.maxFailedIndexes", max_failed, "must be less than or equal to 100000")
    if completions is not None and completions > 100_000 and per_index is not None:
        if max_failed is None:
            above = "must be specified when completions is above 100000"
            e.required(f"{path}.maxFailedIndexes", above)
        for key in ("parallelism", "maxFailedIndexes"):
            if (spec.get(key) or 0) > 10_000:
                detail = f"must be less than or equal to 10000 {_HIGH}"
                e.invalid(f"{path}.{key}", spec[key], detail)


def _job_spec(e: Errors, spec: Obj, path: str) -> None:
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
    meta, pod = template.get("metadata") or {}, template.get("spec") or {}
    _labels(e, meta.get("labels"), f"{path}.template.labels")  # sic: not .metadata.labels
    _annotations(e, meta.get("annotations"), f"{path}.template.annotations")
    _pod_spec(e, pod, f"{path}.template.spec")
    restart, restart_path = pod.get("restartPolicy") or "", f"{path}.template.spec.restartPolicy"
    if restart in ("Always", ""):
        e.required(restart_path, 'valid values: "OnFailure", "Never"')
    elif restart not in ("OnFailure", "Never"):
        e.unsupported(restart_path, restart, ["OnFailure", "Never"])
    elif policy is not None and restart != "Never":
        never = 'only "Never" is supported when podFailurePolicy is specified'
        e.invalid(restart_path, restart, never)
    selector = spec.get("selector")
    if selector is None:
        e.required(f"{path}.selector")
    else:
        _labels(e, selector.get("matchLabels"), f"{path}.selector.matchLabels")
    if not _matches(selector, meta.get("labels") or {}):
        mismatch = "`selector` does not match template `labels`"
        e.invalid(f"{path}.template.metadata.labels", meta.get("labels") or {}, mismatch)


def _validate_job(e: Errors, job: Obj, require_prefixed: bool = True) -> None:
    """ValidateJob: an Indexed Job's pod hostnames `<name>-<index>` must be DNS labels."""
    meta, spec = job.get("metadata") or {}, job.get("spec") or {}
    object_meta(e, meta)
    _generated_selector(e, job, require_prefixed)
    _job_spec(e, spec, "spec")
    completions, name = spec.get("completions"), meta.get("name") or ""
    indexed = spec.get("completionMode") == "Indexed" and isinstance(completions, int)
    if indexed and completions > 0 and dns_label(f"{name}-{completions - 1}"):
        detail = f"will not able to create pod with invalid DNS label: {name}-{completions - 1}"
        e.invalid("metadata.name", name, detail)


def _validate_job_update(e: Errors, new: Obj, old: Obj) -> None:
    """ValidateJob + ValidateJobUpdate, with the options the strategy derives from `old`."""
    old_spec, spec = old.get("spec") or {}, new.get("spec") or {}
    old_labels = ((old_spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    _validate_job(e, new, require_prefixed=LABEL_UID in old_labels and LABEL_NAME in old_labels)
    object_meta_update(e, new.get("metadata") or {}, old.get("metadata") or {})
    _job_spec(e, spec, "spec")  # sic: ValidateJobSpecUpdate runs it again
    completions = spec.get("completions")
    if spec.get("completionMode") != "Indexed":
        e.immutable(completions, old_spec.get("completions"), "spec.completions")
    elif completions not in (old_spec.get("completions"), None, spec.get("parallelism")):
        detail = "can only be modified in tandem with spec.parallelism"  # ElasticIndexedJob
        e.invalid("spec.completions", completions, detail)
    for key in ("selector", "template", "completionMode", "podFailurePolicy"):
        e.immutable(spec.get(key), old_spec.get(key), f"spec.{key}")
    e.immutable(
        spec.get("backoffLimitPerIndex"),
        old_spec.get("backoffLimitPerIndex"),
        "spec.backoffLimitPerIndex",
    )


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
            raise ValueError(f"the fragment {ks.go_quote(part)} {two}")
        for limit in limits:
            if not re.fullmatch(r"[+-]?\d+", limit):
                raise ValueError(
                    f"cannot convert string to integer for index: {ks.go_quote(limit)}"
                )
            if int(limit) >= completions:
                raise ValueError(f"too large index: {ks.go_quote(limit)}")
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


def _job_status(e: Errors, new: Obj, old: Obj) -> None:
    """validateJobStatus + ValidateJobStatusUpdate with getStatusValidationOptions: most rules
    only fire when the fields they are about change, as the strategy sets them up."""
    spec, status, before = new.get("spec") or {}, new.get("status") or {}, old.get("status") or {}
    for key in ("active", "succeeded", "failed"):
        e.nonnegative(status.get(key), f"status.{key}")

    def changed(*keys: str) -> bool:
        return any(status.get(k) != before.get(k) for k in keys)

    def flipped(*kinds: str) -> bool:
        return any(_true(status, k) != _true(before, k) for k in kinds)

    conditions = "status.conditions"
    complete, failed = _true(status, "Complete"), _true(status, "Failed")
    criteria, target = _true(status, "SuccessCriteriaMet"), _true(status, "FailureTarget")
    finished = complete or failed
    finish_changed = finished != (_true(before, "Complete") or _true(before, "Failed"))
    start, end = _when(status.get("startTime")), _when(status.get("completionTime"))
    for a, b, kinds in (
        (complete, failed, ("Complete", "Failed")),
        (complete, target, ("Complete", "FailureTarget")),
    ):
        if a and b and flipped(*kinds):
            both = f"cannot set {kinds[0]}=True and {kinds[1]}=true conditions"
            e.invalid(conditions, OMIT, both)
    if end and not complete and (flipped("Complete") or changed("completionTime")):
        no_complete = "cannot set completionTime when there is no Complete=True condition"
        e.invalid("status.completionTime", status["completionTime"], no_complete)
    if complete and not end and (flipped("Complete") or changed("completionTime")):
        e.required("status.completionTime", "completionTime is required for Complete jobs")
    if start and end and end < start and changed("startTime", "completionTime"):
        before_start = "completionTime cannot be set before startTime"
        e.invalid("status.completionTime", status["completionTime"], before_start)
    for done, needed, kind in ((failed, target, "Failed"), (complete, criteria, "Complete")):
        if done and not needed and flipped(kind):
            first = "FailureTarget" if kind == "Failed" else "SuccessCriteriaMet"
            without = f"cannot set {kind}=True condition without the {first}=true condition"
            e.invalid(conditions, OMIT, without)
    if finished and (status.get("active") or 0) > 0 and (finish_changed or changed("active")):
        e.invalid("status.active", status["active"], "active>0 is invalid for finished job")
    zero_suspended = spec.get("suspend") is True and spec.get("completions") == 0
    if finished and not start and (finish_changed or changed("startTime")) and not zero_suspended:
        e.required("status.startTime", "startTime is required for finished job")
    _indexes_status(e, spec, status, changed)
    for other in ("Failed", "FailureTarget"):
        if criteria and _true(status, other):
            both = f"cannot set SuccessCriteriaMet=True and {other}=true conditions"
            e.invalid(conditions, OMIT, both)
    for kind in ("Failed", "Complete", "FailureTarget"):  # the transitions
        if _true(before, kind) and not _true(status, kind):
            e.invalid(conditions, OMIT, f"cannot disable the terminal {kind}=True condition")
    if (status.get("failed") or 0) < (before.get("failed") or 0):
        e.invalid("status.failed", status.get("failed") or 0, "cannot decrease the failed counter")
    indexed = spec.get("completionMode") == "Indexed"
    scaled_down = indexed and spec.get("completions") == spec.get("parallelism")
    if (status.get("succeeded") or 0) < (before.get("succeeded") or 0) and not scaled_down:
        decrease = "cannot decrease the succeeded counter"
        e.invalid("status.succeeded", status.get("succeeded") or 0, decrease)
    if end and before.get("completionTime") and end != _when(before["completionTime"]):
        mutated = "completionTime cannot be mutated"
        e.invalid("status.completionTime", status["completionTime"], mutated)
    if before.get("startTime") and changed("startTime") and spec.get("suspend") is not True:
        e.required("status.startTime", "startTime cannot be removed for unsuspended job")
    if _true(before, "SuccessCriteriaMet") and not criteria:
        e.invalid(conditions, OMIT, "cannot disable the SuccessCriteriaMet=True condition")
    if _true(before, "Complete") and not _true(before, "SuccessCriteriaMet") and criteria:
        already = "cannot set SuccessCriteriaMet=True for Job already has Complete=true conditions"
        e.invalid(conditions, OMIT, already)


def _indexes_status(e: Errors, spec: Obj, status: Obj, changed: Callable[..., bool]) -> None:
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
                parsing = f"error parsing failedIndexes: {error}"
                e.invalid("status.failedIndexes", failed_text, parsing)
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


def _validate_event(e: Errors, event: Obj) -> None:
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
    has none, a Pod is Pending). Raises StatusError 400 for an unparseable quantity."""
    if resource not in _VALIDATE:
        raise ValueError(f"no validation for {resource!r}")
    _check_decodable(resource, obj)
    obj = _wire(obj)
    meta = obj.setdefault("metadata", {})
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = ks.generate_name(meta["generateName"])
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
    obj, e = prepare_create(resource, obj), Errors()
    _VALIDATE[resource](e, obj)
    if not e:
        object_meta(e, obj["metadata"], _path_segment_name)
    return list(e)


def validate_update(
    resource: str, obj: Obj, old: Obj, subresource: str | None = None
) -> list[Cause]:
    """The causes of kube-apiserver's 422 for this update (a PUT, or a PATCH merged onto the
    stored `old`). The common metadata checks come first, then the resource's, duplicates
    included as kube reports them."""
    new, e = prepare_update(resource, obj, old, subresource), Errors()
    meta, old_meta = new.get("metadata") or {}, old.get("metadata") or {}
    object_meta(e, meta, _path_segment_name)
    object_meta_update(e, meta, old_meta)
    if resource == "jobs" and subresource == "status":
        object_meta_update(e, meta, old_meta)
        _job_status(e, new, old)
    elif resource == "jobs":
        _validate_job_update(e, new, old)
    elif resource == "pods":
        object_meta_update(e, meta, old_meta)
        if subresource != "status":
            _validate_pod(e, new)
    else:
        _validate_event(e, new)
    return list(e)
