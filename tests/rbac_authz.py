"""kube-apiserver's RBAC authorization, for the test API server: request attributes and rules.

`request_info` resolves a request the way the apiserver's RequestInfoFactory does
(staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go): `/api` and `/apis` paths
with at least a resource are resource requests with a verb from the method (`get` becomes
`list`, or `watch` with `?watch=true`, when there is no name; `delete` without a name is
`deletecollection`), API group, resource, subresource, namespace and name; anything else
(`/api`, `/apis/g/v`, `/version`, `/healthz`) is a non-resource request whose verb is the
lowercase method.

`Authorizer` answers like the RBAC authorizer (plugin/pkg/auth/authorizer/rbac): a request is
allowed when a rule of a role bound to the user or one of their groups matches it (verbs,
apiGroups, resources as `resource/subresource` or `*/subresource`, resourceNames,
nonResourceURLs with a trailing `*`); ClusterRoleBindings apply everywhere, RoleBindings only
in their namespace, and only ClusterRoleBindings grant non-resource URLs. It starts from the
bootstrap roles every cluster has (cluster-admin for system:masters; system:discovery,
system:basic-user and system:public-info-viewer for authenticated users).

Not emulated: aggregated ClusterRoles (aggregationRule), the `escalate`/`bind`/`impersonate`
verbs, Node and Webhook authorizers, and the `reason` texts RBAC adds in verbose mode.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SPECIAL_VERBS = ("proxy", "watch")
NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class RequestInfo:
    path: str
    verb: str
    resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()


def service_account(namespace: str, name: str) -> User:
    """The user a ServiceAccount token authenticates as."""
    return User(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
    )


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))

_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


def request_info(method: str, path: str, query: Mapping[str, str] | None = None) -> RequestInfo:
    """The attributes kube-apiserver authorizes a request by."""
    query = query or {}
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
    plain = RequestInfo(path=path, verb=method.lower())
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return plain
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return plain
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    if parts[0] in SPECIAL_VERBS and len(parts) >= 2:
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        watch = str(query.get("watch", "")).lower()
        verb = "watch" if watch not in ("", "false", "0") else "list"
        for term in str(query.get("fieldSelector", "")).split(","):
            key, op, value = term.partition("=")
            if key.strip() == "metadata.name" and op and value.strip("="):
                name = value.strip("=")
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestInfo(
        path=path,
        verb=verb,
        resource_request=True,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


def rule_allows(rule: Mapping[str, Any], info: RequestInfo) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and info.verb not in verbs:
        return False
    if not info.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url in ("*", info.path) or (url.endswith("*") and info.path.startswith(url[:-1])):
                return True
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and info.api_group not in groups:
        return False
    combined = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    resources = rule.get("resources") or []
    if not any(
        r in ("*", combined) or (info.subresource and r == f"*/{info.subresource}")
        for r in resources
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or info.name in names


def _subject_matches(subject: Mapping[str, Any], user: User) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        return (
            user.name == f"system:serviceaccount:{subject.get('namespace')}:{subject.get('name')}"
        )
    return False


BOOTSTRAP: list[dict[str, Any]] = [
    {
        "kind": "ClusterRole",
        "metadata": {"name": "cluster-admin"},
        "rules": [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ],
    },
    {
        "kind": "ClusterRole",
        "metadata": {"name": "system:discovery"},
        "rules": [
            {
                "nonResourceURLs": [
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/openapi",
                    "/openapi/*",
                    "/version",
                    "/version/",
                ],
                "verbs": ["get"],
            }
        ],
    },
    {
        "kind": "ClusterRole",
        "metadata": {"name": "system:basic-user"},
        "rules": [
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                "verbs": ["create"],
            },
            {
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["selfsubjectreviews"],
                "verbs": ["create"],
            },
        ],
    },
    {
        "kind": "ClusterRole",
        "metadata": {"name": "system:public-info-viewer"},
        "rules": [
            {
                "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                "verbs": ["get"],
            }
        ],
    },
    *(
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {"kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "Group", "name": g} for g in groups],
        }
        for role, groups in (
            ("cluster-admin", ["system:masters"]),
            ("system:discovery", ["system:authenticated"]),
            ("system:basic-user", ["system:authenticated"]),
            ("system:public-info-viewer", ["system:authenticated", "system:unauthenticated"]),
        )
    ),
]


@dataclass
class Authorizer:
    """RBAC over a set of Role/ClusterRole/RoleBinding/ClusterRoleBinding manifests."""

    cluster_roles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    roles: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    bindings: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_manifests(cls, manifests: Iterable[Mapping[str, Any]]) -> Authorizer:
        """The bootstrap policy plus these manifests (other kinds are ignored)."""
        authz = cls()
        for doc in [*BOOTSTRAP, *manifests]:
            meta = doc.get("metadata") or {}
            if doc.get("kind") == "ClusterRole":
                authz.cluster_roles[meta["name"]] = list(doc.get("rules") or [])
            elif doc.get("kind") == "Role":
                authz.roles[(meta["namespace"], meta["name"])] = list(doc.get("rules") or [])
            elif doc.get("kind") in ("ClusterRoleBinding", "RoleBinding"):
                authz.bindings.append(dict(doc))
        return authz

    def _rules(self, binding: Mapping[str, Any]) -> list[dict[str, Any]]:
        ref = binding["roleRef"]
        if ref["kind"] == "ClusterRole":
            return self.cluster_roles.get(ref["name"], [])
        return self.roles.get((binding["metadata"]["namespace"], ref["name"]), [])

    def allowed(self, user: User, info: RequestInfo) -> bool:
        for binding in self.bindings:
            namespaced = binding["kind"] == "RoleBinding"
            if namespaced and (
                not info.resource_request or binding["metadata"]["namespace"] != info.namespace
            ):
                continue
            if not any(_subject_matches(s, user) for s in binding.get("subjects") or []):
                continue
            if any(rule_allows(rule, info) for rule in self._rules(binding)):
                return True
        return False


def forbidden_reason(user: User, info: RequestInfo) -> str:
    """The apiserver's text for a denied request (authorization.go, forbiddenMessage)."""
    if not info.resource_request:
        return f'User "{user.name}" cannot {info.verb} path "{info.path}"'
    resource = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    where = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
    return (
        f'User "{user.name}" cannot {info.verb} resource "{resource}" '
        f'in API group "{info.api_group}" {where}'
    )
