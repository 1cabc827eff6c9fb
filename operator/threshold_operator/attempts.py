"""Which partitions a work Job runs: a first Job runs them all, a retry only those that did
not complete.

Kubernetes' Indexed Jobs cannot skip indexes, so a retry's Job has as many completions as
partitions left, and its pod of index i runs the i-th of them (`start-worker
--partition-list`, the list in the Job's arguments and in `status.attempt.partitions`).
Everything here is arithmetic on runs ("0-3,5"): linear in the number of runs, never in the
number of partitions or blocks.

A list a retry runs may hold more than what is left, never less: a partition rerun that is
complete costs its done-marker checks only. So when the list would be too long for a pod's
arguments (scattered failures over 10^5 partitions), the smallest gaps between its runs are
filled until it fits (`coarsen`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from threshold_worker.intervals import Run, count, format_runs, parse_runs

from .api import Attempt

#: Longest partition list a retry's Job carries (the pods' arguments, and the status).
MAX_LIST_CHARS = 4096


def todo(attempt: Attempt, partitions: int) -> list[Run]:
    """The partitions the attempt's Job runs, in the order of its indexes."""
    return parse_runs(attempt.partitions) if attempt.partitions else [(0, partitions - 1)]


def to_partitions(indexes: Iterable[Run], runs: Sequence[Run]) -> list[Run]:
    """A Job's completion indexes (runs) as the partitions they ran, through `runs`."""
    starts, total = [], 0
    for a, b in runs:
        starts.append(total)
        total += b - a + 1
    out: list[Run] = []
    for first, last in indexes:
        last = min(last, total - 1)
        k = bisect.bisect_right(starts, first) - 1
        i = first
        while 0 <= k < len(runs) and i <= last:
            a, b = runs[k]
            lo = a + i - starts[k]
            hi = min(b, a + last - starts[k])
            _append(out, lo, hi)
            i += hi - lo + 1
            k += 1
    return out


def _append(out: list[Run], lo: int, hi: int) -> None:
    if out and out[-1][1] + 1 >= lo:
        out[-1] = (out[-1][0], max(out[-1][1], hi))
    else:
        out.append((lo, hi))


def subtract(runs: Iterable[Run], minus: Sequence[Run]) -> list[Run]:
    """`runs` without `minus` (both sorted and disjoint)."""
    out: list[Run] = []
    k = 0
    for a, b in runs:
        while k < len(minus) and minus[k][1] < a:
            k += 1
        j, lo = k, a
        while j < len(minus) and minus[j][0] <= b:
            if minus[j][0] > lo:
                out.append((lo, minus[j][0] - 1))
            lo = max(lo, minus[j][1] + 1)
            j += 1
        if lo <= b:
            out.append((lo, b))
    return out


def coarsen(runs: list[Run], limit: int = MAX_LIST_CHARS) -> list[Run]:
    """`runs`, or a superset with the smallest gaps filled, whose text fits in `limit`."""
    if len(format_runs(runs)) <= limit:
        return runs
    gaps = sorted(runs[i + 1][0] - runs[i][1] for i in range(len(runs) - 1))
    # Fill every gap up to a width: the smallest width that makes the text fit (the list of
    # one run always fits).
    lo, hi = 0, len(gaps)
    best = [(runs[0][0], runs[-1][1])]
    while lo < hi:
        mid = (lo + hi) // 2
        merged = _fill(runs, gaps[mid])
        if len(format_runs(merged)) <= limit:
            best, hi = merged, mid
        else:
            lo = mid + 1
    return best


def _fill(runs: list[Run], width: int) -> list[Run]:
    out = [runs[0]]
    for a, b in runs[1:]:
        if a - out[-1][1] <= width:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def next_attempt(
    attempt: Attempt,
    partitions: int,
    completed: str | None,
    retry: int,
    done: str | None = None,
) -> Attempt:
    """The attempt after `attempt`, whose Job completed the indexes `completed` (its
    completedIndexes). When that Job is gone (None; its TTL, or a user deleted it), the
    partitions the status recorded as done (`done`, status.partitions.completedIndexes,
    unless it was cut short) are left out; without either, what it ran is run again."""
    runs = todo(attempt, partitions)
    if completed is not None:
        left = subtract(runs, to_partitions(parse_runs(completed), runs))
    elif done and not done.endswith("..."):
        left = subtract(runs, parse_runs(done))
    else:
        left = runs
    left = coarsen(left or runs)
    return Attempt(number=attempt.number + 1, retry=retry, partitions=format_runs(left))


def size(attempt: Attempt, partitions: int) -> int:
    """How many indexes the attempt's Job has."""
    return count(todo(attempt, partitions))
