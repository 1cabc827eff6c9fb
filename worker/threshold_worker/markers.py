"""Done-markers: empty objects that name finished blocks, so that any retry resumes.

Keys are `<output dataset>/.threshold-done/<fingerprint>/<bucket>/<name>`, where the name
is a block id (`417`) or an inclusive run of consecutive ids (`400-417`) and bucket = block
id // BUCKET. The fingerprint in the key means a changed job never trusts an old marker;
buckets let a worker list only the markers of the blocks it owns, a thousand blocks at a
time, in constant memory; runs never cross a bucket. A marker is created once, after the
chunks of all its blocks: its name is all it says, so its creation is atomic on local
disks and on object stores alike, and no object is ever read, modified and written back.

One marker per run rather than per block: the worker marks what it finished about once a
second, so a run of ~100 blocks costs one file or PUT instead of a hundred, and listing a
bucket returns a handful of names instead of a thousand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from zarr.abc.store import Store

from . import intervals
from .chunkio import ChunkStore
from .intervals import parse_run

MARKER_DIR = ".threshold-done"
#: The failure ledger's directory beside it (ledger.py); here so that ownership.py, which
#: clears both, needs neither the ledger nor, through it, the job.
LEDGER_DIR = ".threshold-failed"
BUCKET = 1000


def parse_name(name: str) -> range | None:
    """The block ids a marker name stands for; None for anything else (temporary files)."""
    run = parse_run(name)
    return range(run[0], run[1] + 1) if run is not None else None


def runs(block_ids: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Inclusive runs of consecutive ids, cut where a bucket ends."""
    return intervals.runs(block_ids, cut=BUCKET)


class DoneMarkers:
    def __init__(self, store: Store, dataset: str, fingerprint: str) -> None:
        self.store = ChunkStore(store)
        self.prefix = (
            f"{dataset}/{MARKER_DIR}/{fingerprint}" if dataset else f"{MARKER_DIR}/{fingerprint}"
        )

    def _key(self, first: int, last: int) -> str:
        return f"{self.prefix}/{first // BUCKET}/{intervals.format_run(first, last)}"

    def done_runs(self, bucket: int) -> list[tuple[int, int]]:
        """The runs of block ids the markers of one bucket name, sorted."""
        found = (parse_run(n) for n in self.store.list_names(f"{self.prefix}/{bucket}"))
        return sorted(run for run in found if run is not None)

    def missing_runs(self, blocks: range) -> Iterator[tuple[int, int]]:
        """Runs of block ids of `blocks` without a marker, in order, without enumerating
        blocks: memory is one bucket's marker names."""
        cursor = blocks.start
        if blocks:
            for bucket in range(blocks.start // BUCKET, (blocks.stop - 1) // BUCKET + 1):
                for a, b in self.done_runs(bucket):
                    a, b = max(a, blocks.start), min(b, blocks.stop - 1)
                    if a > b or b < cursor:
                        continue
                    if a > cursor:
                        yield cursor, a - 1
                    cursor = b + 1
        if cursor < blocks.stop:
            yield cursor, blocks.stop - 1

    def missing(self, blocks: range) -> Iterator[int]:
        """Block ids of `blocks` without a marker, listing one bucket at a time."""
        for a, b in self.missing_runs(blocks):
            yield from range(a, b + 1)

    def count_done(self, blocks: range) -> int:
        return len(blocks) - sum(b - a + 1 for a, b in self.missing_runs(blocks))

    def unmark(self, block_ids: Iterable[int]) -> None:
        """Take the markers of these blocks back, so that a rerun redoes them (a verifying
        pass found them wrong). The rest of each run they were in is marked anew before
        that run's marker is deleted: no other block is ever unmarked, even for a moment."""
        wrong = sorted(set(block_ids))
        for bucket in sorted({b // BUCKET for b in wrong}):
            hits = {b for b in wrong if b // BUCKET == bucket}
            for a, b in self.done_runs(bucket):
                if not any(a <= x <= b for x in hits):
                    continue
                self.mark(x for x in range(a, b + 1) if x not in hits)
                self.store.put_many([], [self._key(a, b)])

    def mark(self, block_ids: Iterable[int]) -> None:
        """Record finished blocks: one marker per run of consecutive ids."""
        self.store.touch_many([self._key(a, b) for a, b in runs(block_ids)])
