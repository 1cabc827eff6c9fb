"""Prometheus metrics of the operator (served on --metrics-port)."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import Counter, Gauge

from .api import PHASES

JOBS = Gauge("threshold_jobs", "ThresholdJobs by phase", ["phase"])
BLOCKS_DONE = Gauge("threshold_job_blocks_done", "Blocks done", ["namespace", "name"])
BLOCKS_TOTAL = Gauge("threshold_job_blocks_total", "Blocks in the plan", ["namespace", "name"])
BLOCKS_PER_SECOND = Gauge(
    "threshold_job_blocks_per_second",
    "Blocks done per second over the recent window (0 when not running)",
    ["namespace", "name"],
)
VOXELS_PER_SECOND = Gauge(
    "threshold_job_voxels_per_second",
    "Voxels done per second over the recent window (0 when not running)",
    ["namespace", "name"],
)
RECONCILE_ERRORS = Counter(
    "threshold_operator_reconcile_errors_total", "Reconcile passes that raised"
)
RECONCILES = Counter("threshold_operator_reconciles_total", "Reconcile passes")

_phases: dict[tuple[str, str], str] = {}


def observe(namespace: str, name: str, status: dict[str, Any]) -> None:
    _phases[(namespace, name)] = status.get("phase") or "Pending"
    blocks = status.get("blocks") or {}
    BLOCKS_DONE.labels(namespace, name).set(blocks.get("done", 0))
    BLOCKS_TOTAL.labels(namespace, name).set(blocks.get("total", 0))
    running = status.get("phase") == "Running"
    rate = (status.get("rate") or {}) if running else {}
    BLOCKS_PER_SECOND.labels(namespace, name).set(rate.get("blocksPerSecond") or 0)
    VOXELS_PER_SECOND.labels(namespace, name).set(rate.get("voxelsPerSecond") or 0)
    _refresh()


def forget(namespace: str, name: str) -> None:
    _phases.pop((namespace, name), None)
    for gauge in (BLOCKS_DONE, BLOCKS_TOTAL, BLOCKS_PER_SECOND, VOXELS_PER_SECOND):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    _refresh()


def _refresh() -> None:
    for phase in PHASES:
        JOBS.labels(phase).set(sum(1 for p in _phases.values() if p == phase))
