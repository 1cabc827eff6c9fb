"""What the operator puts into every Job it builds, from its command line (`jobs.Settings`).
A module of its own, importing nothing, so that `threshold-operator --help` stays quick."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """Operator-wide settings of the worker pods (from the command line / Helm values)."""

    image: str = "threshold-operator:latest"
    image_pull_policy: str = "IfNotPresent"
    worker_service_account: str | None = None
    log_level: str = "INFO"
