"""metav1.Status answers shaped the way kube-apiserver shapes them, for the test API server.

Clients branch on these bodies: the kubernetes client raises ApiException(status=code) with the
body, kopf picks its error class by code, and both show `message`. Messages follow
k8s.io/apimachinery/pkg/api/errors (NewNotFound, NewAlreadyExists, NewConflict, NewInvalid,
NewForbidden, NewTooManyRequests...), where a "qualified resource" is `<plural>.<group>`
(`jobs.batch`, `pods`) and `details.kind` is the plural for most errors and the Kind for Invalid.

Validators and admission plugs raise `StatusError`; the test server answers with its body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class StatusError(Exception):
    """An answer other than success: `code` is the HTTP status, `body` the metav1.Status."""

    def __init__(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("message", ""))
        self.body = body
        self.code = int(body["code"])
        self.headers = dict(headers or {})


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


def _details(resource: str, group: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": resource}
    if group:
        out["group"] = group
    if name:
        out["name"] = name
    return out


def not_found(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        status(
            404,
            "NotFound",
            f'{qualified(resource, group)} "{name}" not found',
            _details(resource, group, name),
        )
    )


def already_exists(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        status(
            409,
            "AlreadyExists",
            f'{qualified(resource, group)} "{name}" already exists',
            _details(resource, group, name),
        )
    )


def conflict(resource: str, group: str, name: str, why: str) -> StatusError:
    return StatusError(
        status(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
            _details(resource, group, name),
        )
    )


def forbidden(resource: str, group: str, name: str, why: str) -> StatusError:
    """A resource request refused (RBAC, quota, admission): `<qualified> "name" is forbidden: why`."""
    what = qualified(resource, group) + (f' "{name}"' if name else "")
    return StatusError(
        status(403, "Forbidden", f"{what} is forbidden: {why}", _details(resource, group, name))
    )


def forbidden_path(why: str) -> StatusError:
    """A non-resource request refused (`/healthz`, `/metrics`...)."""
    return StatusError(status(403, "Forbidden", f"forbidden: {why}", {}))


def cause(field: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    """One field.Error as a StatusCause, e.g. cause("metadata.name", 'Invalid value: "a.b": ...')."""
    return {"reason": reason, "message": message, "field": field}


def invalid(kind: str, group: str, name: str, causes: Sequence[dict[str, str]]) -> StatusError:
    """422: `Kind.group "name" is invalid: field: message` (several: `[f1: m1, f2: m2]`)."""
    errors = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    listed = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    details: dict[str, Any] = {"name": name, "kind": kind, "causes": list(causes)}
    if group:
        details["group"] = group
    return StatusError(
        status(422, "Invalid", f'{qualified(kind, group)} "{name}" is invalid: {listed}', details)
    )


def bad_request(message: str) -> StatusError:
    return StatusError(status(400, "BadRequest", message))


def unauthorized() -> StatusError:
    return StatusError(status(401, "Unauthorized", "Unauthorized"))


def unsupported_media_type(content_type: str, accepted: Sequence[str]) -> StatusError:
    return StatusError(
        status(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(accepted)}",
        )
    )


def method_not_allowed(verb: str, resource: str) -> StatusError:
    return StatusError(
        status(405, "MethodNotAllowed", f"{verb} is not supported on resources of kind {resource}")
    )


def too_many_requests(retry_after: int = 1) -> StatusError:
    return StatusError(
        status(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            {"retryAfterSeconds": retry_after},
        ),
        headers={"Retry-After": str(retry_after)},
    )


def internal_error(message: str = "etcdserver: request timed out") -> StatusError:
    return StatusError(
        status(
            500,
            "InternalError",
            f"Internal error occurred: {message}",
            {"causes": [{"message": message}]},
        )
    )


def service_unavailable(
    message: str = "the server is currently unable to handle the request",
) -> StatusError:
    return StatusError(status(503, "ServiceUnavailable", message))
