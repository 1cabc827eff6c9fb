"""Every Kubernetes API call the operator makes, in one list: RBAC is generated from it.

`kube.Kube`'s methods declare their calls with `kube.uses(...)`; kopf's own needs (watching
ThresholdJobs and Jobs) are declared below. The Helm chart's Role/ClusterRole is
checked against `rules()`, so permissions cannot drift from the code.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .api import GROUP, PLURAL
from .kube import CALLS

KOPF_CALLS = [
    (GROUP, PLURAL, "list"),  # kopf: list and watch the custom resource
    (GROUP, PLURAL, "watch"),
    (GROUP, PLURAL, "patch"),  # kopf: removes the finalizer that older versions added
    ("batch", "jobs", "list"),  # kopf: list and watch the Jobs, to follow their status
    ("batch", "jobs", "watch"),
]


def rules() -> list[dict[str, Any]]:
    """PolicyRules: one per (group, resource), sorted, verbs sorted."""
    calls: dict[tuple[str, str], set[str]] = defaultdict(set)
    for key, verbs in CALLS.items():
        calls[key] |= verbs
    for group, resource, verb in KOPF_CALLS:
        calls[(group, resource)].add(verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(calls.items())
    ]
