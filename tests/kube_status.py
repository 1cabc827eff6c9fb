"""What kube-apiserver answers, in its words: metav1.Status bodies, field errors, name formats.

The test API server (k8s_emulator) and its validators (kube_validation for built-in kinds,
crd_admission for ThresholdJobs) share this module, so each of these facts is said once:

| here | upstream (kubernetes/kubernetes) |
| --- | --- |
| `StatusError`, the Status builders | apimachinery pkg/api/errors `NewNotFound`, `NewAlreadyExists`, `NewConflict`, `NewForbidden`, `NewInvalid`, `NewBadRequest`, `NewTooManyRequests`... |
| `Cause`, `field_error` (a field.Error and its text) | apimachinery pkg/util/validation/field errors.go `ErrorBody`, `ToAggregate` |
| `go_quote`, `go_float`, `go_value` | how `ErrorBody` prints a bad value: Go's `%q`, `%v`, `%#v` |
| `dns_label`, `dns_subdomain`, `qualified_name`, `label_value` | apimachinery pkg/util/validation validation.go `IsDNS1123Label`, `IsDNS1123Subdomain`, `IsQualifiedName`, `IsValidLabelValue` (messages of 1.29-1.33: "characters", 1.35 says "bytes") |
| `generate_name` | apiserver pkg/storage/names `SimpleNameGenerator` |

Clients branch on these bodies: the kubernetes client raises ApiException(status=code) with
the body, kopf picks its error class by code, and both show `message`. A "qualified resource"
is `<plural>.<group>` (`jobs.batch`, `pods`); `details.kind` is the plural for most errors
and the Kind for Invalid. Not emulated: Go's `%#v` of typed structs (a bad value that is a
map or a list is printed as Go prints decoded JSON, `map[string]interface {}{...}`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# --------------------------------------------------------------------- Go's printing


def go_quote(text: str) -> str:
    """strconv.Quote."""
    named = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}
    out = []
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\") or ch in named:
            out.append("\\" + named.get(ch, ch))
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def go_float(value: float) -> str:
    """%v of a float64 (strconv's shortest 'g'): with an exponent when it is < -4 or >= 6."""
    if math.isnan(value) or math.isinf(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text, lead = "".join(map(str, digits)), "-" if sign else ""
    point = len(text) + int(exponent)  # digits before the decimal point
    if not -4 <= point - 1 < 6:
        mantissa, x = text[0] + ("." + text[1:] if len(text) > 1 else ""), point - 1
        return f"{lead}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{lead}0.{'0' * -point}{text}"
    if point >= len(text):
        return lead + text + "0" * (point - len(text))
    return f"{lead}{text[:point]}.{text[point:]}"


def _go_sharp(value: Any) -> str:
    """%#v of decoded JSON (interface{} in Go)."""
    if isinstance(value, dict):
        inner = ", ".join(f"{go_quote(k)}:{_go_sharp(value[k])}" for k in sorted(value))
        return "map[string]interface {}{" + inner + "}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(map(_go_sharp, value)) + "}"
    return "interface {}(nil)" if value is None else go_value(value)


def go_value(value: Any) -> str:
    """How ErrorBody prints a bad value: nil as "null", strings quoted, numbers and booleans
    with %v, anything else with %#v."""
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    return go_quote(value) if isinstance(value, str) else _go_sharp(value)


# ---------------------------------------------------------------------- field errors

INVALID, REQUIRED, DUPLICATE = "FieldValueInvalid", "FieldValueRequired", "FieldValueDuplicate"
NOT_SUPPORTED, FORBIDDEN = "FieldValueNotSupported", "FieldValueForbidden"
TOO_LONG, TOO_MANY, NOT_FOUND = "FieldValueTooLong", "FieldValueTooMany", "FieldValueNotFound"
TYPE_INVALID = "FieldValueTypeInvalid"
_TITLES = {
    INVALID: "Invalid value",
    TYPE_INVALID: "Invalid value",
    REQUIRED: "Required value",
    DUPLICATE: "Duplicate value",
    NOT_SUPPORTED: "Unsupported value",
    FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    NOT_FOUND: "Not found",
}
OMIT = object()  # field.OmitValueType: the message shows no value


@dataclass(frozen=True)
class Cause:
    """One field.Error as a metav1.StatusCause: the field path, kube's text, its type."""

    field: str
    message: str
    reason: str = INVALID

    def __str__(self) -> str:  # field.Error.Error(), even with an empty field
        return f"{self.field}: {self.message}"


def field_error(reason: str, path: str, value: Any = OMIT, detail: str = "") -> Cause:
    """field.Error's ErrorBody: the type, the bad value (Required, Forbidden and TooLong show
    none), then the detail."""
    body = _TITLES[reason]
    if value is not OMIT and reason not in (REQUIRED, FORBIDDEN, TOO_LONG):
        body += f": {go_value(value)}"
    return Cause(path, body + (f": {detail}" if detail else ""), reason)


# ---------------------------------------------------------------------- name formats

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = _LABEL + r"(\." + _LABEL + ")*"
_QNAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = f"({_QNAME})?"
_ALNUM_ENDS = "and must start and end with an alphanumeric character"
_QNAME_MSG = f"must consist of alphanumeric characters, '-', '_' or '.', {_ALNUM_ENDS}"


def regex_error(message: str, regex: str, *examples: str) -> str:
    """validation.RegexError: the message, the examples, the regular expression."""
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{regex}')"


def _format(value: str, regex: str, limit: int, message: str, *examples: str) -> list[str]:
    errs = [f"must be no more than {limit} characters"] if len(value) > limit else []
    if not re.fullmatch(regex, value):
        errs.append(regex_error(message, regex, *examples))
    return errs


def dns_label(value: str) -> list[str]:
    what = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"
    return _format(value, _LABEL, 63, f"{what}, {_ALNUM_ENDS}", "my-name", "123-abc")


def dns_subdomain(value: str) -> list[str]:
    what = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
    return _format(value, _SUBDOMAIN, 253, f"{what}, {_ALNUM_ENDS}", "example.com")


def label_value(value: str) -> list[str]:
    what = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"
    return _format(
        value, _LABEL_VALUE, 63, f"{what}, {_ALNUM_ENDS}", "MyValue", "my_value", "12345"
    )


def qualified_name(value: str) -> list[str]:
    """Label and annotation keys, finalizers: an optional DNS-subdomain prefix and '/', then
    a name of at most 63 characters."""
    parts, errs = value.split("/"), []
    name_error = regex_error(_QNAME_MSG, _QNAME, "MyName", "my.name", "123-abc")
    if len(parts) > 2:
        prefixed = "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        return [f"a qualified name {name_error} {prefixed}"]
    if len(parts) == 2:
        errs += ["prefix part " + m for m in dns_subdomain(parts[0]) if parts[0]]
        errs += [] if parts[0] else ["prefix part must be non-empty"]
    name = parts[-1]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    return errs if re.fullmatch(_QNAME, name) else [*errs, "name part " + name_error]


def generate_name(base: str) -> str:
    """names.SimpleNameGenerator: at most 58 characters of the base, then 5 random ones."""
    return base[:58] + "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


# --------------------------------------------------------------------------- Status


class StatusError(Exception):
    """An answer other than success: `code` is the HTTP status, `body` the metav1.Status."""

    def __init__(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("message", ""))
        self.body = body
        self.code = int(body["code"])
        self.headers = dict(headers or {})

    @property
    def causes(self) -> list[Cause]:
        found = (self.body.get("details") or {}).get("causes") or []
        return [Cause(c.get("field", ""), c["message"], c["reason"]) for c in found]


def status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _error(code: int, reason: str, resource: str, group: str, name: str, text: str) -> StatusError:
    details = {"name": name, "group": group, "kind": resource}
    return StatusError(status(code, reason, text, {k: v for k, v in details.items() if v}))


def not_found(resource: str, group: str, name: str) -> StatusError:
    text = f'{qualified(resource, group)} "{name}" not found'
    return _error(404, "NotFound", resource, group, name, text)


def already_exists(resource: str, group: str, name: str) -> StatusError:
    text = f'{qualified(resource, group)} "{name}" already exists'
    return _error(409, "AlreadyExists", resource, group, name, text)


def conflict(resource: str, group: str, name: str, why: str) -> StatusError:
    text = f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}'
    return _error(409, "Conflict", resource, group, name, text)


def forbidden(resource: str, group: str, name: str, why: str) -> StatusError:
    """A resource request refused (RBAC, quota, admission): `<qualified> "name" is forbidden: why`."""
    what = qualified(resource, group) + (f' "{name}"' if name else "")
    return _error(403, "Forbidden", resource, group, name, f"{what} is forbidden: {why}")


def forbidden_path(why: str) -> StatusError:
    """A non-resource request refused (`/healthz`, `/metrics`...)."""
    return StatusError(status(403, "Forbidden", f"forbidden: {why}"))


def invalid(kind: str, group: str, name: str, causes: Sequence[Cause]) -> StatusError:
    """422: `Kind.group "name" is invalid: field: message`; several causes are listed in
    brackets, each distinct text once (ToAggregate), every cause in the details."""
    texts = list(dict.fromkeys(map(str, causes)))
    listed = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details: dict[str, Any] = {"name": name, **({"group": group} if group else {}), "kind": kind}
    details["causes"] = [
        {"reason": c.reason, "message": c.message, **({"field": c.field} if c.field else {})}
        for c in causes
    ]
    message = f'{qualified(kind, group)} "{name}" is invalid' + (f": {listed}" if texts else "")
    return StatusError(status(422, "Invalid", message, details))


def bad_request(message: str) -> StatusError:
    return StatusError(status(400, "BadRequest", message))


def unauthorized() -> StatusError:
    return StatusError(status(401, "Unauthorized", "Unauthorized"))


def unsupported_media_type(accepted: Sequence[str]) -> StatusError:
    accepted_types = ", ".join(accepted)
    message = f"the body of the request was in an unknown format - accepted media types include: {accepted_types}"
    return StatusError(status(415, "UnsupportedMediaType", message))


def method_not_allowed(verb: str, resource: str) -> StatusError:
    message = f"{verb} is not supported on resources of kind {resource}"
    return StatusError(status(405, "MethodNotAllowed", message))


def too_many_requests(retry_after: int = 1) -> StatusError:
    message = "Too many requests, please try again later."
    details = {"retryAfterSeconds": retry_after}
    body = status(429, "TooManyRequests", message, details)
    return StatusError(body, headers={"Retry-After": str(retry_after)})


def internal_error(message: str = "etcdserver: request timed out") -> StatusError:
    details = {"causes": [{"message": message}]}
    return StatusError(status(500, "InternalError", f"Internal error occurred: {message}", details))


def service_unavailable(
    message: str = "the server is currently unable to handle the request",
) -> StatusError:
    return StatusError(status(503, "ServiceUnavailable", message))
