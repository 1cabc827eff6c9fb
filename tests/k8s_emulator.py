"""A test double of kube-apiserver: kmock's in-memory KubernetesEmulator, made as strict as the
real server where the operator touches it.

Every request goes through the stages of the real server's handler chain, in its order:

1. authentication: a bearer token names a `User` (no token: system:anonymous; an unknown
   token: 401);
2. injected faults (`Fault`): the next N requests matching a verb and resource answer
   429 with Retry-After, 500, 503, any other Status, or lose their connection;
3. authorization: RBAC (`rbac_authz.Authorizer`), 403 with kube's message otherwise;
4. the registry: unknown resources 404, unsupported verbs 405, a missing object 404
   NotFound, a duplicate create 409 AlreadyExists, a stale resourceVersion 409 Conflict, a
   namespace that does not exist 404; server-set fields (uid, resourceVersion, generation,
   creationTimestamp, generateName); status subresource separation (the main resource
   ignores status, `/status` ignores everything else; create drops status);
5. admission (`Admission` callables per resource): on create and on update (PATCH as a JSON
   merge patch or a JSON patch, PUT as a replacement) they see the resulting object and the
   old one, may return a changed object (defaults, pruning) and refuse with a
   `kube_status.StatusError` (422 Invalid, 403 Forbidden...);
6. garbage collection after a delete: dependents whose owners are all gone are deleted
   (background propagation, recursively: ThresholdJob -> Jobs -> Pods), objects with
   finalizers get a deletionTimestamp instead, dangling references next to a live owner are
   removed; `propagationPolicy: Orphan` (the default for batch/v1 Jobs) orphans them.

Answers are metav1.Status bodies with kube's codes and messages (`kube_status`), so the
kubernetes client and kopf see what a real server would send.

Lists take equality-based label selectors and field selectors; a field selector may name
only the fields kube-apiserver indexes for that resource (`FIELD_SELECTORS`: metadata.name and
metadata.namespace everywhere, involvedObject.*, reason, type... for Events), anything else
is a 400 "field label not supported", as kube answers.

Not emulated: strategic merge patch semantics (applied as a JSON merge patch to built-in
kinds; refused with 415 for custom resources, as kube does), server-side apply, foreground
deletion (served as background), dry-run, PUT's required resourceVersion for custom
resources (any PUT without one is unconditional), field selectors on watches, set-based
label selectors, watch bookmarks, the events a resumed watch missed (a watch from a
resourceVersion gets each object changed since once, as MODIFIED, and no deletion),
managedFields, reading namespaces over HTTP (kmock cannot route /api/v1/namespaces; they
exist as the scope of other objects), namespace deletion, and validation itself (k8s_harness
plugs kube_validation and crd_admission in as admission). The garbage collector runs right after the request that removed an owner,
where kube's runs soon after.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
from kmock._internal import enums, rendering
from kmock._internal.apps import RawHandler

import kube_status as ks
from rbac_authz import ANONYMOUS, Authorizer, RequestInfo, User, forbidden_reason, request_info

RESOURCES = {
    "blockwise.dev/v1alpha1/thresholdjobs": kmock.ResourceInfo(
        kind="ThresholdJob",
        namespaced=True,
        singular="thresholdjob",
        shortnames={"tj"},
        categories={"blockwise"},
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
    ),
    "batch/v1/jobs": kmock.ResourceInfo(
        kind="Job",
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
    ),
    "v1/pods": kmock.ResourceInfo(
        kind="Pod",
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
    ),
    "v1/events": kmock.ResourceInfo(
        kind="Event", namespaced=True, verbs={"get", "list", "watch", "create", "patch", "delete"}
    ),
    "v1/namespaces": kmock.ResourceInfo(
        kind="Namespace", namespaced=False, verbs={"get", "list", "watch", "create", "delete"}
    ),
}
#: Fields a list's fieldSelector may name, per resource (kube's field label conversion funcs:
#: pkg/apis/core/v1/conversion.go, pkg/apis/batch/v1/conversion.go); every resource takes
#: metadata.name and metadata.namespace.
FIELD_SELECTORS = {
    "v1/events": {
        *(f"involvedObject.{f}" for f in ("kind", "namespace", "name", "uid", "apiVersion")),
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "v1/pods": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "status.phase"},
    "batch/v1/jobs": {"status.successful"},
}
#: Resources whose DELETE orphans dependents unless told otherwise (kube's batch/v1 Jobs).
ORPHAN_BY_DEFAULT = {"batch/v1/jobs"}
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


@dataclass(frozen=True)
class AdmissionRequest:
    """What an admission plug sees: the object as it would be stored, and the old one."""

    operation: str  # CREATE or UPDATE
    resource: str  # "batch/v1/jobs", as in RESOURCES
    subresource: str  # "" or "status"
    namespace: str
    name: str
    object: dict[str, Any]
    old_object: dict[str, Any] | None
    user: User
    body: bytes = b""  # the request's body as sent (a patch, for PATCH)
    content_type: str = ""


#: Returns the object to store (None: unchanged), or raises kube_status.StatusError.
Admission = Callable[[AdmissionRequest], "dict[str, Any] | None"]


@dataclass
class Fault:
    """Answer the next `times` requests matching (verb, resource) with an error (None: all).

    `resource` is "jobs" or "thresholdjobs/status"; `answer` is 429, 500, 503, "drop" (the
    connection closes without an answer) or a StatusError.
    """

    verb: str
    resource: str
    answer: int | str | ks.StatusError
    times: int | None = 1
    retry_after: int = 1
    hits: int = 0

    def matches(self, info: RequestInfo) -> bool:
        resource = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
        return (
            info.resource_request
            and (self.times is None or self.hits < self.times)
            and info.verb == self.verb
            and resource == self.resource
        )

    def error(self) -> ks.StatusError:
        if isinstance(self.answer, ks.StatusError):
            return self.answer
        return {
            429: lambda: ks.too_many_requests(self.retry_after),
            500: ks.internal_error,
            503: ks.service_unavailable,
        }[int(self.answer)]()


@dataclass(frozen=True)
class Call:
    """One request as the server saw it, for assertions (`code` 0: connection dropped)."""

    user: str
    verb: str
    resource: str  # "jobs", "thresholdjobs/status", or the path of a non-resource request
    namespace: str
    name: str
    code: int
    content_type: str = ""
    injected: bool = False  # answered by a Fault


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource_key(resource: Any) -> str:
    return f"{resource.group}/{resource.version}/{resource.plural}".lstrip("/")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, null deletes, anything else replaces (a new object: the stored
    one stays as it was, for admission to compare with)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _top_level_ops(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """A JSON patch that turns old into new, for kmock's store (it applies PATCH bodies)."""
    ops: list[dict[str, Any]] = [
        {"op": "remove", "path": "/" + _escape(k)} for k in old if k not in new
    ]
    ops += [{"op": "add", "path": "/" + _escape(k), "value": v} for k, v in new.items()]
    return ops


def _replace(request: Any, **changes: Any) -> Any:
    """Change a parsed request in place: kmock finds its reactions by the request's identity."""
    for name, value in changes.items():
        object.__setattr__(request, name, value)
    return request


@dataclass
class _Request:
    """The parts of a request the registry stage works on."""

    info: RequestInfo
    key: str
    user: User
    content_type: str
    body: bytes = b""


class _RecentRequests(RawHandler):
    """kmock finds a request's reaction by scanning views over every request it ever served:
    each request costs time in proportion to all before it, and a run of hundreds of
    ThresholdJobs slows to a crawl. Right before that match (nothing awaits in between) the
    history is cut to the request at hand; `Emulator.calls` is the log tests read."""

    async def _handle(self, request: Any) -> Any:
        self._requests[:] = [request]
        return await super()._handle(request)


class Emulator(kmock.KubernetesEmulator, _RecentRequests):
    """See the module docstring. `users` maps bearer tokens to users; `authorizer` None
    allows everything; `admission` maps resource keys to plugs applied in order."""

    def __init__(
        self,
        *,
        users: Mapping[str, User] | None = None,
        authorizer: Authorizer | None = None,
        admission: Mapping[str, Sequence[Admission]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.users = dict(users or {})
        self.authorizer = authorizer
        self.admission = {k: list(v) for k, v in (admission or {}).items()}
        self.faults: list[Fault] = []
        self.calls: list[Call] = []
        self._versions = itertools.count(1)

    # -- the handler chain ------------------------------------------------------------------

    async def _handle(self, request: Any) -> Any:
        info = request_info(request.method, request.url.path, request.params)
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        user = ANONYMOUS
        try:
            user = self._authenticate(request)
            fault = next((f for f in self.faults if f.matches(info)), None)
            if fault is not None:
                return self._inject(fault, request, user, info, content_type)
            self._authorize(user, info)
            state = None
            if info.resource_request and request.resource is not None:
                key = resource_key(request.resource)
                state = _Request(info, key, user, content_type, request.body or b"")
                request = await self._registry(request, state)
            if info.verb == "watch":  # a stream answers when it ends: log it as it starts
                self._log(user, info, 200, content_type)
            response = await super()._handle(request)
            if state is not None and info.verb in ("delete", "patch", "update"):
                await self._collect_garbage()
        except ks.StatusError as e:
            self._log(user, info, e.code, content_type)
            return aiohttp.web.json_response(e.body, status=e.code, headers=e.headers)
        if info.verb != "watch":
            self._log(user, info, getattr(response, "status", 200), content_type)
        return response

    def _inject(
        self, fault: Fault, request: Any, user: User, info: RequestInfo, content_type: str
    ) -> Any:
        fault.hits += 1
        if fault.answer == "drop":
            self._log(user, info, 0, content_type, injected=True)
            request._raw_request.transport.close()
            return aiohttp.web.Response(status=500)  # never sent: the connection is gone
        error = fault.error()
        self._log(user, info, error.code, content_type, injected=True)
        return aiohttp.web.json_response(error.body, status=error.code, headers=error.headers)

    def _authorize(self, user: User, info: RequestInfo) -> None:
        if self.authorizer is None or self.authorizer.allowed(user, info):
            return
        reason = forbidden_reason(user, info)
        if info.resource_request:
            raise ks.forbidden(info.resource, info.api_group, info.name, reason)
        raise ks.forbidden_path(reason)

    def _log(
        self, user: User, info: RequestInfo, code: int, content_type: str, injected: bool = False
    ) -> None:
        resource = info.path
        if info.resource_request:
            resource = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
        self.calls.append(
            Call(
                user.name,
                info.verb,
                resource,
                info.namespace,
                info.name,
                code,
                content_type,
                injected,
            )
        )

    def _authenticate(self, request: Any) -> User:
        header = request.headers.get("Authorization") or ""
        if not header:
            return ANONYMOUS
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self.users:
            raise ks.unauthorized()
        return self.users[token.strip()]

    # -- the registry -----------------------------------------------------------------------

    def _current(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource) if isinstance(resource, str) else resource, namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            return copy.deepcopy(self.objects[key].raw)
        return None

    async def _registry(self, request: Any, state: _Request) -> Any:
        info, namespace = state.info, state.info.namespace or None
        res = self.resources.get(state.key)
        if res is None or (info.subresource and info.subresource not in res.subresources):
            raise ks.StatusError(
                ks.status(404, "NotFound", "the server could not find the requested resource")
            )
        on_subresource = info.subresource and info.verb in ("get", "patch", "update")
        if info.verb not in res.verbs and not on_subresource:
            raise ks.method_not_allowed(info.verb, info.resource)
        if info.verb == "create":
            if res.namespaced and not self._current("v1/namespaces", None, info.namespace):
                raise ks.not_found("namespaces", "", info.namespace)
            return await self._create(request, state, res)
        if info.verb in ("get", "patch", "update", "delete") and not self._current(
            request.resource, namespace, info.name
        ):
            raise ks.not_found(info.resource, info.api_group, info.name)
        if info.verb in ("patch", "update"):
            return await self._update(request, state, res)
        if info.verb == "delete":
            self._orphan_if_asked(request, state)
        return request

    async def _create(self, request: Any, state: _Request, res: Any) -> Any:
        info, body = state.info, request.data
        if not isinstance(body, dict):
            raise ks.bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace") and info.namespace and meta["namespace"] != info.namespace:
            raise ks.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = ks.generate_name(meta["generateName"])
        if not meta.get("name"):
            raise ks.invalid(
                res.kind,
                info.api_group,
                "",
                [
                    ks.field_error(
                        ks.REQUIRED, "metadata.name", detail="name or generateName is required"
                    )
                ],
            )
        name = meta["name"]
        if self._current(request.resource, info.namespace or None, name) is not None:
            raise ks.already_exists(info.resource, info.api_group, name)
        if res.namespaced:
            meta["namespace"] = info.namespace
        for server_set in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(server_set, None)
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=now(),
            generation=1,
            resourceVersion=str(next(self._versions)),
        )
        if "status" in res.subresources:
            obj.pop("status", None)
        obj = self._admit("CREATE", state, obj, None)
        return _replace(request, data=obj)

    async def _update(self, request: Any, state: _Request, res: Any) -> Any:
        info = state.info
        old = self._current(request.resource, info.namespace or None, info.name)
        if old is None:
            raise ks.not_found(info.resource, info.api_group, info.name)
        body = request.data
        if request.method.upper() == "PUT":
            if not isinstance(body, dict):
                raise ks.bad_request("the body of the request must be a JSON object")
            new, sent_version = (
                copy.deepcopy(body),
                (body.get("metadata") or {}).get("resourceVersion"),
            )
        else:
            new, sent_version = self._apply_patch(old, body, state)
        if sent_version and sent_version != old["metadata"].get("resourceVersion"):
            raise ks.conflict(
                info.resource,
                info.api_group,
                info.name,
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        if "status" in res.subresources:
            if info.subresource == "status":
                new = {
                    **{k: v for k, v in old.items() if k != "status"},
                    "status": new.get("status"),
                }
                if new["status"] is None:
                    del new["status"]
            else:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = old["status"]
        meta = new.setdefault("metadata", {})
        for fixed in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
            else:
                meta.pop(fixed, None)
        body_changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in old.items() if k not in ("metadata", "status")
        }
        generation = int(old["metadata"].get("generation", 1))
        meta["generation"] = generation + 1 if body_changed else generation
        meta["resourceVersion"] = str(next(self._versions))
        new = self._admit("UPDATE", state, new, old)
        return _replace(request, data=_top_level_ops(old, new), action=enums.action.UPDATE)

    def _apply_patch(
        self, old: dict[str, Any], body: Any, state: _Request
    ) -> tuple[dict[str, Any], str | None]:
        kind = state.content_type
        custom = "." in state.info.api_group and not state.info.api_group.endswith(".k8s.io")
        if kind == STRATEGIC_PATCH and custom:
            raise ks.unsupported_media_type([JSON_PATCH, MERGE_PATCH])
        if kind == JSON_PATCH:
            if not isinstance(body, list):
                raise ks.bad_request("the body of a JSON patch must be a JSON array")
            try:
                new = jsonpatch.apply_patch(copy.deepcopy(old), body)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise ks.StatusError(ks.status(422, "Invalid", str(e))) from None
            return new, None
        if kind not in (MERGE_PATCH, STRATEGIC_PATCH):
            raise ks.unsupported_media_type([JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH])
        if not isinstance(body, dict):
            raise ks.bad_request("the body of a merge patch must be a JSON object")
        return merge_patch(old, body), (body.get("metadata") or {}).get("resourceVersion")

    def _admit(
        self, operation: str, state: _Request, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        for plug in self.admission.get(state.key, []):
            review = AdmissionRequest(
                operation=operation,
                resource=state.key,
                subresource=state.info.subresource,
                namespace=state.info.namespace,
                name=obj["metadata"]["name"],
                object=copy.deepcopy(obj),
                old_object=copy.deepcopy(old),
                user=state.user,
                body=state.body,
                content_type=state.content_type,
            )
            changed = plug(review)
            if changed is not None:
                obj = changed
        return obj

    # -- garbage collection -----------------------------------------------------------------

    def _orphan_if_asked(self, request: Any, state: _Request) -> None:
        options = request.data if isinstance(request.data, dict) else {}
        policy = request.params.get("propagationPolicy") or options.get("propagationPolicy")
        if options.get("orphanDependents") is True:
            policy = "Orphan"
        if policy is None:
            policy = "Orphan" if state.key in ORPHAN_BY_DEFAULT else "Background"
        if policy != "Orphan":
            return
        owner = self._current(request.resource, state.info.namespace or None, state.info.name)
        uid = (owner or {}).get("metadata", {}).get("uid")
        for obj in self.objects.values():
            if obj.deleted:
                continue
            refs = obj.raw.get("metadata", {}).get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                kept = [r for r in refs if r.get("uid") != uid]
                obj.patch({"metadata": {"ownerReferences": kept or None}})

    async def _collect_garbage(self) -> None:
        """Background propagation, until nothing changes (dependents of dependents too)."""
        changed = True
        while changed:
            changed = False
            async with self._lock:
                live = {
                    o.raw.get("metadata", {}).get("uid")
                    for o in self.objects.values()
                    if not o.deleted
                }
                for (resource, _, _), obj in list(self.objects.items()):
                    if obj.deleted:
                        continue
                    meta = obj.raw.get("metadata", {})
                    refs = meta.get("ownerReferences") or []
                    gone = [r for r in refs if r.get("uid") not in live]
                    if not gone:
                        continue
                    version = str(next(self._versions))
                    if len(gone) < len(refs):
                        kept = [r for r in refs if r not in gone]
                        obj.patch(
                            {"metadata": {"ownerReferences": kept, "resourceVersion": version}}
                        )
                        event = "MODIFIED"
                    elif meta.get("finalizers"):
                        if meta.get("deletionTimestamp"):
                            continue
                        obj.patch(
                            {"metadata": {"deletionTimestamp": now(), "resourceVersion": version}}
                        )
                        event = "MODIFIED"
                    else:
                        obj.patch({"metadata": {"resourceVersion": version}})
                        raw = obj.raw
                        obj.delete()
                        await self._buses[resource].put({"type": "DELETED", "object": raw})
                        changed = True
                        continue
                    await self._buses[resource].put({"type": event, "object": obj.raw})
                    changed = True

    # -- lists and watches ------------------------------------------------------------------

    async def _serve_watch(self, request: Any) -> Any:
        """kmock's watch, resumed as kube resumes one: from a resourceVersion (kopf's watch
        after its listing, and each reconnection), only the objects changed since, each once
        as MODIFIED, then the live events; not every object again."""
        since = request.params.get("resourceVersion") or ""
        if not since.isdigit() or since == "0":
            async for item in super()._serve_watch(request):
                yield item
            return
        yield b""  # the headers: the stream is open
        async with self._lock:
            objs = self._KubernetesEmulator__get_objs(request, strict=False)  # type: ignore[attr-defined]
            changed = [
                obj.raw
                for obj in objs
                if not obj.deleted
                and int(obj.raw["metadata"].get("resourceVersion") or 0) > int(since)
            ]
        for raw in changed:
            yield {"type": "MODIFIED", "object": raw}
        check = self._KubernetesEmulator__check  # type: ignore[attr-defined]
        async for event in self._buses[request.resource]:
            meta = event.get("object", {}).get("metadata", {})
            if check(
                request, request.resource, meta.get("namespace"), meta.get("name"), strict=False
            ):
                yield event

    async def _serve_create(self, request: Any) -> Any:
        # Real API servers answer POST with 201 Created; the client reads a body only then.
        return rendering.Response(status=201, payload=await super()._serve_create(request))

    async def _serve_list(self, request: Any) -> Any:
        result = await super()._serve_list(request)
        info = self.resources[request.resource]
        group, version = request.resource.group, request.resource.version
        result["kind"] = f"{info.kind}List"
        result["apiVersion"] = f"{group}/{version}" if group else version
        result["metadata"] = {"resourceVersion": str(next(self._versions))}
        selector = request.params.get("labelSelector")
        if selector:
            result["items"] = [i for i in result["items"] if selects(selector, i)]
        fields = request.params.get("fieldSelector")
        if fields:
            allowed = {"metadata.name", "metadata.namespace"}
            allowed |= FIELD_SELECTORS.get(resource_key(request.resource), set())
            result["items"] = [i for i in result["items"] if selects_fields(fields, i, allowed)]
        return result


def selects_fields(selector: str, obj: Mapping[str, Any], allowed: set[str]) -> bool:
    """Field selectors: `a.b=v`, `a.b==v`, `a.b!=v`, joined by commas, on the fields kube
    indexes (`allowed`); another field is a 400, as kube answers it."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        key, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
        key = key.strip()
        if key not in allowed:
            raise ks.bad_request(f"field label not supported: {key}")
        node: Any = obj
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        text = node.get("component", "") if key == "source" and isinstance(node, Mapping) else node
        if (str(text or "") == value.strip()) == negate:
            return False
    return True


def selects(selector: str, obj: Mapping[str, Any]) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, joined by commas."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            ok = labels.get(key) != value
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            ok = labels.get(key) == value
        elif term.startswith("!"):
            ok = term[1:].strip() not in labels
        else:
            ok = term in labels
        if not ok:
            return False
    return True
