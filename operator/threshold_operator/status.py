"""Status of a ThresholdJob, derived from its Jobs: pure functions, no API calls.

Progress comes from the work Job's `completedIndexes`/`failedIndexes` interval strings
("0-3,5", read by `threshold_worker.intervals`); blocks per partition are the planner's
arithmetic (`plan.partition_range`), so status stays a few hundred bytes for any number of
blocks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from threshold_worker.intervals import Run, count, parse_runs
from threshold_worker.plan import partition_range

MAX_INTERVAL_CHARS = 512
FINAL_PHASES = ("Succeeded", "Failed")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def blocks_in(runs: Iterable[Run], partitions: int, total_blocks: int) -> int:
    """Blocks in runs of partitions: a run [a, b] of partitions is one range of blocks."""
    return sum(
        partition_range(b, partitions, total_blocks).stop
        - partition_range(a, partitions, total_blocks).start
        for a, b in runs
    )


def clip(text: str) -> str:
    return text if len(text) <= MAX_INTERVAL_CHARS else text[: MAX_INTERVAL_CHARS - 3] + "..."


def describe_partitions(runs: list[Run], partitions: int, total_blocks: int, limit: int = 3) -> str:
    """ "partition 2 (blocks 8-11), partitions 5-6 (blocks 20-27)", the first few runs."""
    parts = []
    for a, b in runs[:limit]:
        lo = partition_range(a, partitions, total_blocks).start
        hi = partition_range(b, partitions, total_blocks).stop - 1
        which = f"partition {a}" if a == b else f"partitions {a}-{b}"
        parts.append(f"{which} (blocks {lo}-{hi})")
    more = count(runs[limit:])
    if more:
        parts.append(f"and {more} more")
    return ", ".join(parts)


def job_condition(job: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """The Job's condition of this type when it is True (Complete, Failed, Suspended...)."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def set_condition(
    conditions: list[dict[str, Any]],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """metav1 semantics: lastTransitionTime changes only when status flips."""
    value = "True" if status else "False"
    out = [c for c in conditions if c.get("type") != kind]
    old = next((c for c in conditions if c.get("type") == kind), None)
    changed = old is None or old.get("status") != value
    out.append(
        {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now() if changed else old.get("lastTransitionTime", now()),
            "observedGeneration": generation,
        }
    )
    return sorted(out, key=lambda c: c["type"])


def work_progress(
    work: dict[str, Any] | None, partitions: int, total_blocks: int
) -> dict[str, Any]:
    """Counts and intervals from the work Job's status."""
    status = (work or {}).get("status") or {}
    done = parse_runs(status.get("completedIndexes"))
    failed = parse_runs(status.get("failedIndexes"))
    return {
        "blocks": {
            "total": total_blocks,
            "done": blocks_in(done, partitions, total_blocks),
            "failed": blocks_in(failed, partitions, total_blocks),
        },
        "partitions": {
            "total": partitions,
            "completed": count(done),
            "failed": count(failed),
            "completedIndexes": clip(status.get("completedIndexes") or ""),
            "failedIndexes": clip(status.get("failedIndexes") or ""),
        },
        "failed_intervals": failed,
        "active": status.get("active") or 0,
    }
