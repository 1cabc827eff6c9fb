"""Done-markers: one tiny object per finished block, so that any retry resumes.

Keys are `<output dataset>/.threshold-done/<fingerprint>/<bucket>/<block id>` with
bucket = block id // BUCKET. The fingerprint in the key means a changed job never trusts
an old marker; buckets let a worker list only the markers of the blocks it owns, a
thousand at a time, in constant memory. Each marker is written once, after the block's
chunks (atomic on local disks by rename, and on object stores by PUT).
"""

from __future__ import annotations

from collections.abc import Iterator

from zarr.abc.store import Store

from .chunkio import ChunkStore

MARKER_DIR = ".threshold-done"
BUCKET = 1000


class DoneMarkers:
    def __init__(self, store: Store, dataset: str, fingerprint: str) -> None:
        self.store = ChunkStore(store)
        self.prefix = (
            f"{dataset}/{MARKER_DIR}/{fingerprint}" if dataset else f"{MARKER_DIR}/{fingerprint}"
        )

    def _key(self, block_id: int) -> str:
        return f"{self.prefix}/{block_id // BUCKET}/{block_id}"

    def done_in_bucket(self, bucket: int) -> set[int]:
        names = self.store.list_names(f"{self.prefix}/{bucket}")
        return {int(n) for n in names if n.isdigit()}

    def missing(self, blocks: range) -> Iterator[int]:
        """Block ids of `blocks` without a marker, listing one bucket at a time."""
        if not blocks:
            return
        for bucket in range(blocks.start // BUCKET, (blocks.stop - 1) // BUCKET + 1):
            done = self.done_in_bucket(bucket)
            lo = max(blocks.start, bucket * BUCKET)
            hi = min(blocks.stop, (bucket + 1) * BUCKET)
            for block_id in range(lo, hi):
                if block_id not in done:
                    yield block_id

    def count_done(self, blocks: range) -> int:
        return len(blocks) - sum(1 for _ in self.missing(blocks))

    def mark(self, block_id: int) -> None:
        self.store.put_many([(self._key(block_id), b"1")])
