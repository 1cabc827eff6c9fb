"""The Helm chart rendered by Helm's own Go SDK (helm-python-sdk), as `helm template` would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import yaml

CHART = Path(__file__).parent.parent / "charts" / "threshold-operator"
RELEASE = "tops"
RELEASE_NAMESPACE = "threshold-system"


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's manifests (without CRDs) for a `helm install tops -n threshold-system`."""
    chart = helm_python.Chart.load(str(CHART))
    out = chart.render(values, name=RELEASE, namespace=RELEASE_NAMESPACE, is_install=True)
    docs = []
    for path, text in out.items():
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]
