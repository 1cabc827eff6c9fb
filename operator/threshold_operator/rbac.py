"""Every Kubernetes API call the operator makes, in one list: RBAC is generated from it.

`kube.Kube`'s methods register themselves here with `uses(...)`; kopf's own needs (watching
ThresholdJobs, posting Events) are declared below. The Helm chart's Role/ClusterRole is
checked against `rules()`, so permissions cannot drift from the code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from .api import GROUP, PLURAL

F = TypeVar("F", bound=Callable[..., Any])

#: (apiGroup, resource) -> verbs
CALLS: dict[tuple[str, str], set[str]] = defaultdict(set)

KOPF_CALLS = [
    (GROUP, PLURAL, "list"),  # kopf: list and watch the custom resource
    (GROUP, PLURAL, "watch"),
    (GROUP, PLURAL, "patch"),  # kopf: progress annotations, finalizers
    (GROUP, f"{PLURAL}/status", "patch"),  # kopf: applies handlers' status patches
    ("", "events", "create"),  # kopf.info / kopf.warn
]


def uses(group: str, resource: str, verb: str) -> Callable[[F], F]:
    """Mark a method as making this API call."""
    CALLS[(group, resource)].add(verb)

    def mark(fn: F) -> F:
        return fn

    return mark


def rules() -> list[dict[str, Any]]:
    """PolicyRules: one per (group, resource), sorted, verbs sorted."""
    from . import kube  # noqa: F401  -- registers its calls

    calls: dict[tuple[str, str], set[str]] = defaultdict(set)
    for key, verbs in CALLS.items():
        calls[key] |= verbs
    for group, resource, verb in KOPF_CALLS:
        calls[(group, resource)].add(verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(calls.items())
    ]
