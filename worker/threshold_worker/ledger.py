"""The failure ledger: which blocks failed, where (world-unit ROIs) and why, kept beside the
done-markers so that `status` can name them after the process that saw them is gone.

Which failures are whose:

| failure | kind | what the worker does |
| --- | --- | --- |
| `DamagedInput`: an input chunk its codec cannot decode | block-local: other blocks read other chunks | record the block, go on with the others; at the end exit 3 (`BlocksFailed`) with a one-line summary naming the failed regions |
| storage that keeps failing after the retries (`StorageUnavailable`), storage that refuses (`StorageError`: no space, no permission, credentials), bad input (`InputError`), an unexpected error | not block-local: the next block would fail the same way | stop as before (exit 1 or 2), after recording the block being processed as `stopped` |
| the output's lease lost (`OutputConflict` from the lease check) | not block-local | stop; the record is refused like every other write of a job that lost its output, so it is only logged |
| SIGTERM, Ctrl-C | not a failure | stop, record nothing |

Layout: `<output dataset>/.threshold-failed/<fingerprint>/<first>-<last>.<ns>.<random>.json`,
one object per `BlockWorker.process` call that saw a failure (per pod attempt on
Kubernetes, per local run), created once under a name no other writer picks and never
rewritten, as done-markers are (see `markers`): no read-modify-write, so pods and processes
never race. Bounded whatever the number of failures: consecutive blocks failing with the
same kind of error (class and exit code) merge into one record (a run), an object holds at
most `MAX_RECORDS` records (the rest only counted, with the span of blocks they lie in),
and an error line at most `MAX_ERROR` characters. A block with a done-marker is no longer
failed: `status` subtracts the markers, and where records of several runs overlap the
newest one speaks.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from zarr.abc.store import Store

from .chunkio import ChunkStore
from .errors import RERUN, BlocksFailed, DamagedInput, WorkerError
from .intervals import Run, blocks_run, format_run, parse_run
from .lease import utcnow
from .markers import LEDGER_DIR
from .rois import Roi, describe, run_rois

if TYPE_CHECKING:
    from .job import Job

logger = logging.getLogger(__name__)

#: Records in one ledger object; a record with its ROIs is under 1 KiB, so an object stays
#: under 50 KiB.
MAX_RECORDS = 50
#: Characters of an error line kept.
MAX_ERROR = 300
#: Failures that concern one block only: the run goes on with the others.
BLOCK_LOCAL: tuple[type[BaseException], ...] = (DamagedInput,)
#: Exit code of a run that processed every block it could and recorded the others.
BLOCKS_FAILED_EXIT = 3


def is_block_local(error: BaseException) -> bool:
    return isinstance(error, BLOCK_LOCAL)


def error_line(error: BaseException) -> str:
    """The error's first line, as the CLI would print it, cut to `MAX_ERROR` characters."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    if not isinstance(error, WorkerError):
        line = f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line if len(line) <= MAX_ERROR else line[: MAX_ERROR - 3] + "..."


def exit_code(error: BaseException) -> int:
    """The code the CLI ends with for this error (unexpected errors: 1, retryable)."""
    return error.exit_code if isinstance(error, WorkerError) else 1


@dataclass
class FailureRecord:
    """Blocks `first`..`last` failed with one kind of error; `error` is the first block's
    line. `stopped`: the block the run was processing when a failure that is not
    block-local stopped it."""

    first: int
    last: int
    exit_code: int
    kind: str
    error: str
    stopped: bool = False
    rois: list[Roi] = field(default_factory=list)

    @property
    def blocks(self) -> int:
        return self.last - self.first + 1

    def same_kind(self, other: FailureRecord) -> bool:
        return (self.kind, self.exit_code, self.stopped) == (
            other.kind,
            other.exit_code,
            other.stopped,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["blocks"] = format_run(self.first, self.last)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> FailureRecord | None:
        """A record read back; None for anything malformed (edited by hand, truncated)."""
        try:
            record = cls(
                first=int(data["first"]),
                last=int(data["last"]),
                exit_code=int(data["exit_code"]),
                kind=str(data["kind"]),
                error=str(data["error"])[:MAX_ERROR],
                stopped=bool(data.get("stopped", False)),
                rois=[
                    {"offset": list(r["offset"]), "shape": list(r["shape"])}
                    for r in data.get("rois", [])
                ],
            )
        except (KeyError, TypeError, ValueError):
            return None
        return record if 0 <= record.first <= record.last else None

    def describe(self) -> str:
        return f"{blocks_run(self.first, self.last)}: {describe(self.rois)}"


@dataclass
class Failures:
    """The failures one worker saw, bounded: merged into runs, at most `MAX_RECORDS`
    records, the rest counted (`more_records`, `more_blocks`, within `more_span`)."""

    records: list[FailureRecord] = field(default_factory=list)
    more_records: int = 0
    more_blocks: int = 0
    more_span: Run | None = None
    _tail: FailureRecord | None = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return bool(self.records) or self.more_records > 0

    @property
    def blocks(self) -> int:
        return sum(r.blocks for r in self.records) + self.more_blocks

    @property
    def span(self) -> Run | None:
        """The first and last failed block."""
        ends = [(r.first, r.last) for r in self.records]
        if self.more_span is not None:
            ends.append(self.more_span)
        return (min(a for a, _ in ends), max(b for _, b in ends)) if ends else None

    def add(self, block_id: int, error: BaseException, stopped: bool = False) -> None:
        self.add_record(
            FailureRecord(
                block_id, block_id, exit_code(error), type(error).__name__, error_line(error),
                stopped,
            )
        )  # fmt: skip

    def add_record(self, record: FailureRecord) -> None:
        last = self.records[-1] if self.records else None
        if last is not None and record.first == last.last + 1 and last.same_kind(record):
            last.last = record.last
            last.rois = []
            return
        if len(self.records) < MAX_RECORDS:
            self.records.append(FailureRecord(**{**asdict(record), "rois": []}))
            return
        # Beyond the cap only counted; the last run is kept so that its neighbours merge.
        tail = self._tail
        if tail is not None and record.first == tail.last + 1 and tail.same_kind(record):
            tail.last = record.last
        else:
            self._tail = FailureRecord(**asdict(record))
            self.more_records += 1
        self.more_blocks += record.blocks
        self._span(record.first, record.last)

    def _span(self, first: int, last: int) -> None:
        span = self.more_span
        self.more_span = (
            (first, last) if span is None else (min(span[0], first), max(span[1], last))
        )

    def merge(self, other: Failures) -> Failures:
        """Both, still bounded (what `Stats.__add__` sums)."""
        out = Failures()
        for source in (self, other):
            for record in source.records:
                out.add_record(record)
        for source in (self, other):
            if source.more_records and source.more_span is not None:
                out.more_records += source.more_records
                out.more_blocks += source.more_blocks
                out._span(*source.more_span)
        return out

    def located(self, job: Job) -> list[FailureRecord]:
        """The records with their world-unit ROIs."""
        return [
            FailureRecord(**{**asdict(r), "rois": run_rois(job, r.first, r.last)})
            for r in self.records
        ]

    def to_dict(self, job: Job) -> dict[str, Any]:
        span = self.span
        return {
            "version": 1,
            "fingerprint": job.plan.fingerprint,
            "written": utcnow(),
            "written_ns": time.time_ns(),
            "host": os.uname().nodename,
            "pid": os.getpid(),
            "failed_blocks": self.blocks,
            "span": format_run(*span) if span else "",
            "records": [r.to_dict() for r in self.located(job)],
            "more": {
                "records": self.more_records,
                "blocks": self.more_blocks,
                "within": format_run(*self.more_span) if self.more_span else "",
            },
        }

    def summary(self, job: Job, regions: int = 3) -> str:
        """One line naming the first failed regions (for the run's last line)."""
        located = self.located(job)
        # The error's first clause: DamagedInput names the chunk there, advice follows.
        parts = [f"{r.describe()} ({r.error.split('; ')[0]})" for r in located[:regions]]
        rest = len(located) - regions + self.more_records
        if rest > 0:
            parts.append(f"and {rest} more runs")
        return "; ".join(parts)


@dataclass
class LedgerEntry:
    """One ledger object as read back."""

    name: str
    written_ns: int
    records: list[FailureRecord]
    more_records: int
    more_blocks: int
    more_within: Run | None


class FailureLedger:
    """The ledger of one output and plan (fingerprint), in the output's store."""

    def __init__(self, store: Store, dataset: str, fingerprint: str) -> None:
        self.store = ChunkStore(store)
        self.prefix = (
            f"{dataset}/{LEDGER_DIR}/{fingerprint}" if dataset else f"{LEDGER_DIR}/{fingerprint}"
        )

    def write(self, failures: Failures, job: Job) -> str | None:
        """Record `failures` in a new object; its key (None when there is nothing to say)."""
        span = failures.span
        if not failures or span is None:
            return None
        name = f"{format_run(*span)}.{time.time_ns()}.{secrets.token_hex(4)}.json"
        key = f"{self.prefix}/{name}"
        data = json.dumps(failures.to_dict(job), separators=(",", ":")).encode()
        self.store.put_many([(key, data)])
        return key

    def names(self) -> list[str]:
        return sorted(n for n in self.store.list_names(self.prefix) if n.endswith(".json"))

    def read(self) -> list[LedgerEntry]:
        """Every object of the ledger, oldest first; unreadable ones are skipped (logged)."""
        names = self.names()
        entries = []
        for name, data in zip(
            names, self.store.get_each([f"{self.prefix}/{n}" for n in names]), strict=True
        ):
            entry = _entry(name, bytes(data) if data is not None else None)
            if entry is None:
                logger.warning("skipping unreadable failure-ledger object %s/%s", self.prefix, name)
            else:
                entries.append(entry)
        return sorted(entries, key=lambda e: (e.written_ns, e.name))


def _entry(name: str, data: bytes | None) -> LedgerEntry | None:
    if data is None:
        return None
    try:
        doc = json.loads(data)
        more = doc.get("more") or {}
        records = [r for r in map(FailureRecord.from_dict, doc["records"]) if r is not None]
        return LedgerEntry(
            name=name,
            written_ns=int(doc.get("written_ns", 0)),
            records=records,
            more_records=int(more.get("records", 0)),
            more_blocks=int(more.get("blocks", 0)),
            more_within=parse_run(str(more.get("within", ""))),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def newest_records(entries: Sequence[LedgerEntry]) -> Iterator[FailureRecord]:
    """Disjoint, sorted runs of failed blocks over every entry, each with the newest record
    that covers it (a rerun that failed again speaks, not the first attempt). Memory and
    time follow the number of records, not of blocks."""
    ranked = [r for e in entries for r in e.records]  # oldest first
    events = sorted(
        ev for i, r in enumerate(ranked) for ev in ((r.first, 1, i), (r.last + 1, 0, i))
    )
    active: list[int] = []  # max-heap of ranks (negated), lazily cleaned
    ended: set[int] = set()
    at: int | None = None
    for position, kind, rank in events:
        while active and -active[0] in ended:
            heapq.heappop(active)
        if at is not None and active and position > at:
            top = ranked[-active[0]]
            yield FailureRecord(**{**asdict(top), "first": at, "last": position - 1, "rois": []})
        at = position
        if kind:
            heapq.heappush(active, -rank)
        else:
            ended.add(rank)


def still_failed(records: Iterable[FailureRecord], missing: Sequence[Run]) -> list[FailureRecord]:
    """The parts of `records` (disjoint, sorted) that have no done-marker (`missing`:
    disjoint, sorted runs), runs of one record merged."""
    out: list[FailureRecord] = []
    records = list(records)
    j = 0
    for record in records:
        while j < len(missing) and missing[j][1] < record.first:
            j += 1
        k = j
        while k < len(missing) and missing[k][0] <= record.last:
            a, b = max(record.first, missing[k][0]), min(record.last, missing[k][1])
            prev = out[-1] if out else None
            if (
                prev is not None
                and prev.last + 1 == a
                and prev.same_kind(record)
                and (prev.error == record.error)
            ):
                prev.last = b
            else:
                out.append(FailureRecord(**{**asdict(record), "first": a, "last": b}))
            k += 1
    return out


def termination_summary(
    failures: Failures | Sequence[FailureRecord], job: Job | None = None, first: int = 3
) -> dict[str, Any]:
    """What a pod's termination message says about its failures: the count of failed
    blocks and the first `first` records (with ROIs when `job` is given, or when the
    records carry them). Small, but not cut to size: the caller bounds the JSON (4 KiB on
    Kubernetes) by asking for fewer records."""
    if isinstance(failures, Failures):
        records = failures.located(job) if job is not None else list(failures.records)
        blocks, more = failures.blocks, failures.more_records
    else:
        records = list(failures)
        blocks, more = sum(r.blocks for r in records), 0
    return {
        "failed_blocks": blocks,
        "failed_runs": len(records) + more,
        "records": [r.to_dict() for r in records[:first]],
    }


def write_quietly(ledger: FailureLedger, failures: Failures, job: Job) -> None:
    """Record failures on the way out of a failing run: a storage that is failing may refuse
    this too (or a lease that is lost must), and that is logged, never raised over the
    failure being reported."""
    if not failures:
        return
    try:
        ledger.write(failures, job)
    except Exception as e:  # the storage that is failing the run, most often: not news
        logger.info(
            "could not record %d failed blocks in the failure ledger (%s)",
            failures.blocks,
            error_line(e),
        )


def blocks_failed(jobs: Sequence[Job], failures: Sequence[Failures], done: int) -> BlocksFailed:
    """The one-line error a run ends with when blocks failed block-locally (exit 3)."""
    n = max((f.blocks for f in failures), default=0)
    i = next((k for k, f in enumerate(failures) if f), 0)
    more = len(jobs) - 1
    outputs = f"{jobs[i].where}" + (
        f" and {more} more output{'s' if more > 1 else ''}" if more else ""
    )
    were = "block failed and is" if n == 1 else "blocks failed and are"
    return BlocksFailed(
        "",
        f"{n} {were} recorded in the failure ledger of {outputs} ({done} processed): "
        f"{failures[i].summary(jobs[i])}; {RERUN}",
    )
