"""Status of a ThresholdJob, derived from its Jobs: pure functions, no API calls.

Progress comes from the work Job's `completedIndexes`/`failedIndexes` interval strings
("0-3,5"); blocks per shard are arithmetic on the plan, so status stays a few hundred
bytes for any number of blocks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

MAX_INTERVAL_CHARS = 512
FINAL_PHASES = ("Succeeded", "Failed")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_intervals(text: str | None) -> list[tuple[int, int]]:
    """Kubernetes' index intervals, "1,3-5,7" -> [(1, 1), (3, 5), (7, 7)] (inclusive)."""
    out = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def count(intervals: Iterable[tuple[int, int]]) -> int:
    return sum(b - a + 1 for a, b in intervals)


def shard_blocks(shard: int, shards: int, total_blocks: int) -> range:
    """Block ids of one shard, as the worker's planner computes them."""
    return range(shard * total_blocks // shards, (shard + 1) * total_blocks // shards)


def blocks_in(intervals: Iterable[tuple[int, int]], shards: int, total_blocks: int) -> int:
    """Blocks in a set of shard intervals: a shard run [a, b] is one block range."""
    return sum((b + 1) * total_blocks // shards - a * total_blocks // shards for a, b in intervals)


def clip(text: str) -> str:
    return text if len(text) <= MAX_INTERVAL_CHARS else text[: MAX_INTERVAL_CHARS - 3] + "..."


def describe_shards(
    intervals: list[tuple[int, int]], shards: int, total_blocks: int, limit: int = 3
) -> str:
    """ "shard 2 (blocks 8-11), shards 5-6 (blocks 20-27)", the first few runs."""
    parts = []
    for a, b in intervals[:limit]:
        lo = a * total_blocks // shards
        hi = (b + 1) * total_blocks // shards - 1
        which = f"shard {a}" if a == b else f"shards {a}-{b}"
        parts.append(f"{which} (blocks {lo}-{hi})")
    more = count(intervals[limit:])
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


def work_progress(work: dict[str, Any] | None, shards: int, total_blocks: int) -> dict[str, Any]:
    """Counts and intervals from the work Job's status."""
    status = (work or {}).get("status") or {}
    done = parse_intervals(status.get("completedIndexes"))
    failed = parse_intervals(status.get("failedIndexes"))
    return {
        "blocks": {
            "total": total_blocks,
            "done": blocks_in(done, shards, total_blocks),
            "failed": blocks_in(failed, shards, total_blocks),
        },
        "shards": {
            "total": shards,
            "completed": count(done),
            "failed": count(failed),
            "completedIndexes": clip(status.get("completedIndexes") or ""),
            "failedIndexes": clip(status.get("failedIndexes") or ""),
        },
        "failed_intervals": failed,
        "active": status.get("active") or 0,
    }
