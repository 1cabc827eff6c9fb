"""Inclusive runs of integers written as text: "5", "400-517", "0-3,5,7-9".

Done-markers are named by a run of block ids; Kubernetes writes an Indexed Job's
completedIndexes and failedIndexes as a list of runs. One spelling, read and written here.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence

from .errors import InputError

Run = tuple[int, int]


def runs(ids: Iterable[int], cut: int = 0) -> Iterator[Run]:
    """Inclusive runs of consecutive ids, in order; with `cut`, a run never crosses a
    multiple of it."""
    start = prev = None
    for i in sorted(set(ids)):
        if prev is not None and i == prev + 1 and not (cut and i % cut == 0):
            prev = i
            continue
        if start is not None and prev is not None:
            yield start, prev
        start = prev = i
    if start is not None and prev is not None:
        yield start, prev


def format_run(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def blocks_run(first: int, last: int) -> str:
    """ "block 6" or "blocks 6-8": a run of blocks as a person reads it."""
    return ("block " if first == last else "blocks ") + format_run(first, last)


def format_runs(items: Iterable[Run]) -> str:
    return ",".join(format_run(a, b) for a, b in items)


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes other scripts' digits and superscripts."""
    return text.isascii() and text.isdigit()


def parse_run(text: str) -> Run | None:
    """The run a name stands for; None for anything else (a temporary file, say)."""
    first, dash, last = text.strip().partition("-")
    if not _digits(first) or (dash and not _digits(last)):
        return None
    return int(first), int(last if dash else first)


def parse_runs(text: str | None) -> list[Run]:
    """ "1,3-5,7" -> [(1, 1), (3, 5), (7, 7)]."""
    return [run for part in (text or "").split(",") if (run := parse_run(part)) is not None]


def normalise(items: Iterable[Run]) -> list[Run]:
    """Sorted, disjoint runs: overlapping and adjacent ones merged."""
    out: list[Run] = []
    for a, b in sorted(items):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


BLOCKS_EXAMPLE = "29,40-47 (what `threshold-worker status --missing` prints)"


def parse_strict(
    text: str, what: str, unit: str = "block", example: str = BLOCKS_EXAMPLE
) -> list[Run]:
    """Runs a person typed ("29,40-47"), normalised; one line naming `what` for anything
    else, unlike `parse_runs`, which skips what is not a run (temporary files)."""
    found: list[Run] = []
    if not text.strip():  # `status --failed` of a job where nothing failed: nothing to do
        return found
    for part in text.split(","):
        run = parse_run(part)
        if run is None or run[0] > run[1]:
            raise InputError(
                what,
                f"{part.strip()!r} in {text.strip()!r} is not a {unit} id or a run first-last; "
                f"expected e.g. {example}",
            )
        found.append(run)
    return normalise(found)


def check_within(items: Sequence[Run], total: int, what: str) -> None:
    if items and items[-1][1] >= total:
        raise InputError(what, f"block {items[-1][1]} is outside the plan's blocks 0..{total - 1}")


def count(items: Iterable[Run]) -> int:
    return sum(b - a + 1 for a, b in items)


def nth(items: Iterable[Run], index: int) -> int:
    """The `index`-th integer (from 0) of sorted runs: an Indexed Job's completion index ->
    the partition it runs, when a Job runs only some partitions (`start-worker
    --partition-list`). IndexError past the end."""
    if index >= 0:
        for a, b in items:
            if index <= b - a:
                return a + index
            index -= b - a + 1
    raise IndexError(index)


def union_runs(sources: Sequence[Iterable[Run]]) -> Iterator[tuple[int, int, tuple[int, ...]]]:
    """Sorted, disjoint runs from several sources, merged: runs that some source holds,
    each with the sources (indices) that hold all of it, in order. Lazy: memory is one
    pending run per source, whatever the length of each."""

    # Events: (position, kind, source); kind 0 ends a run at `position` (exclusive), kind 1
    # begins one; at one position ends come first.
    def events(i: int, items: Iterable[Run]) -> Iterator[tuple[int, int, int]]:
        for a, b in items:
            yield a, 1, i
            yield b + 1, 0, i

    active: set[int] = set()
    at: int | None = None
    for position, kind, source in heapq.merge(*(events(i, s) for i, s in enumerate(sources))):
        if at is not None and active and position > at:
            yield at, position - 1, tuple(sorted(active))
        at = position
        if kind:
            active.add(source)
        else:
            active.discard(source)
