"""Direct chunk I/O: read, decode, threshold, encode and write whole chunks ourselves.

zarr-python spends about a millisecond of bookkeeping per chunk, more than the codec
work itself; this path pays only for the bytes. It covers the codec chains that real
outputs and inputs use (v3: `bytes` + optional zstd/blosc/gzip; v2: one numcodecs
compressor, no filters, C order) and produces the same keys and bytes as zarr would, so
the two paths can be mixed; anything else (sharding, transposes, filters, checksums)
goes through zarr. Partial chunks at ROI borders are read, merged and rewritten, as zarr
does; all-zero chunks are deleted rather than written (zarr's `write_empty_chunks=False`).
Which layouts it covers is read from the array's metadata document (chunk_format.py).
`THRESHOLD_CHUNK_PATH=zarr` (chunk_path.py) hands every chunk to zarr's codec pipeline.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype
from zarr.storage import LocalStore

from . import chunk_format as formats
from . import chunk_path
from .chunk_format import ChunkFormat, ShardLayout
from .kernel import threshold
from .plan import bounds
from .pyramid import LevelWriter
from .safefiles import SafeDir
from .storage import local_files
from .zarr_internals import run


def chunk_format(array: zarr.Array, writing: bool) -> ChunkFormat | None:
    """The array's chunk format, or None when zarr must handle it (chunk_format.py)."""
    return formats.chunk_format(array.metadata.to_dict(), array.store_path.path, writing)


def shard_layout(array: zarr.Array) -> ShardLayout | None:
    """The array's shard layout, or None when it is not a sharded output the direct path
    writes (chunk_format.py)."""
    return formats.shard_layout(array.metadata.to_dict(), array.store_path.path)


class ChunkStore:
    """Get/set/delete/list of keys: plain file calls on local disks, concurrent requests on
    object stores.

    Local writes go through `safefiles.SafeDir`: atomic, and never through a symlink. An
    output's guarded store (`storage.open_store(..., guard=...)`) reads without following
    links too; other local stores (inputs) read through them, as users link datasets in.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._buffer = bytearray(1 << 20)
        self.files: SafeDir | None = None
        self.prefix = ""
        self.root: str | None = None
        guarded = local_files(store)
        if guarded is not None:
            self.files, self.prefix = guarded
        elif isinstance(store, LocalStore):
            self.root = os.path.join(store.root, "")
            self.files = SafeDir(str(store.root))

    def _rel(self, key: str) -> str:
        if not key.startswith(self.prefix):
            raise ValueError(f"{key} is outside {self.prefix}")
        return key[len(self.prefix) :]

    def _open(self, key: str) -> int | None:
        if self.root is not None:
            try:
                return os.open(self.root + key, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
        assert self.files is not None
        return self.files.open_read(self._rel(key))

    def get_each(self, keys: Sequence[str]) -> Iterator[bytes | memoryview | None]:
        """The values of `keys` in order (None where missing).

        Locally each value is read just before it is needed, into one reused buffer, and is
        valid only until the next one is asked for: decode it first. It is then still in the
        CPU cache, and memory stays at one chunk. Object stores fetch all keys concurrently.
        """
        if self.files is None:
            yield from self._fetch(keys)
            return
        for key in keys:
            fd = self._open(key)
            if fd is None:
                yield None
                continue
            try:
                size = os.fstat(fd).st_size
                if len(self._buffer) < size:
                    self._buffer = bytearray(size + size // 2)  # sizes vary from chunk to chunk
                view, got = memoryview(self._buffer), 0
                while got < size:
                    n = os.readv(fd, [view[got:size]])
                    if not n:
                        break
                    got += n
            finally:
                os.close(fd)
            yield view[:got]

    def _fetch(self, keys: Sequence[str]) -> list[bytes | None]:
        proto = default_buffer_prototype()

        async def fetch() -> list[Any]:
            return await asyncio.gather(*(self.store.get(k, proto) for k in keys))

        return [None if b is None else b.to_bytes() for b in run(fetch())]

    def put_many(self, items: Iterable[tuple[str, bytes]], deletes: Iterable[str] = ()) -> None:
        items, deletes = list(items), list(deletes)
        if self.files is not None:
            for key, data in items:
                self.files.write(self._rel(key), data)
            for key in deletes:
                self.files.unlink(self._rel(key))
            return
        proto = default_buffer_prototype()

        async def put() -> None:
            await asyncio.gather(
                *(self.store.set(k, proto.buffer.from_bytes(d)) for k, d in items),
                *(self.store.delete(k) for k in deletes),
            )

        run(put())

    def touch_many(self, keys: Sequence[str]) -> None:
        """Create empty objects: their existence is all they say, so creating them is
        atomic without a temporary name."""
        if self.files is None:
            self.put_many([(key, b"") for key in keys])
            return
        for key in keys:
            self.files.touch(self._rel(key))

    def list_names(self, prefix: str) -> list[str]:
        """Names directly below `prefix/` (empty if there is nothing)."""
        if self.files is not None:
            return [n for n in self.files.listdir(self._rel(prefix)) if not n.startswith(".")]

        async def names() -> list[str]:
            return [key.rsplit("/", 1)[-1] async for key in self.store.list_prefix(prefix + "/")]

        return run(names())


def _overlap(
    begin: Sequence[int],
    size: Sequence[int],
    shape: Sequence[int],
    lo: Sequence[int],
    hi: Sequence[int],
) -> tuple[tuple[slice, ...], tuple[slice, ...], bool] | None:
    """Where a chunk (or shard) at `begin` meets the block [lo, hi): slices into the chunk
    and into the block, and whether the block holds all of the chunk's in-bounds part.
    None if they do not meet (or the chunk lies beyond the array)."""
    in_chunk, in_block, whole = [], [], True
    for b0, n, limit, l0, h0 in zip(begin, size, shape, lo, hi, strict=True):
        end = min(b0 + n, limit)  # edge chunks: only the in-bounds part holds data
        a, b = max(l0, b0), min(h0, end)
        if a >= b:
            return None
        whole &= a == b0 and b == end
        in_chunk.append(slice(a - b0, b - b0))
        in_block.append(slice(a - l0, b - l0))
    return tuple(in_chunk), tuple(in_block), whole


def _origin(coords: Sequence[int], size: Sequence[int]) -> tuple[int, ...]:
    return tuple(k * n for k, n in zip(coords, size, strict=True))


def _chunk_ranges(lo: Sequence[int], hi: Sequence[int], chunks: Sequence[int]) -> list[range]:
    return [range(a // c, (b - 1) // c + 1) for a, b, c in zip(lo, hi, chunks, strict=True)]


@dataclass
class Target:
    """One output of a block: its format, shard layout, store and chunk buffer."""

    array: zarr.Array
    fmt: ChunkFormat
    shards: ShardLayout | None
    store: ChunkStore
    chunk: np.ndarray

    @classmethod
    def of(cls, array: zarr.Array) -> Target:
        shards = shard_layout(array)
        fmt = shards.inner if shards is not None else chunk_format(array, writing=True)
        if fmt is None:
            raise ValueError("codec chain not covered by direct chunk I/O")
        if fmt.dtype != np.uint8 or fmt.fill_value != 0:
            raise ValueError("direct chunk I/O writes uint8 outputs with fill value 0")
        return cls(
            array, fmt, shards, ChunkStore(array.store_path.store), np.empty(fmt.chunks, np.uint8)
        )


class DirectBlockIO:
    """Thresholds blocks by moving encoded chunks; see the module docstring. One input, any
    number of outputs (a sweep of thresholds): each input chunk is read and decoded once,
    whatever the number of masks made of it."""

    def __init__(
        self,
        source: zarr.Array,
        targets: Sequence[zarr.Array],
        levels: Sequence[LevelWriter | None] = (),
    ) -> None:
        # Unsharded chains and whole-shard layouts are covered; anything else (sharded
        # inputs, a codec around the shard) raises ValueError: zarr handles it.
        src = chunk_format(source, writing=False)
        if src is None:
            raise ValueError("codec chain not covered by direct chunk I/O")
        self.src = src
        self.targets = [Target.of(t) for t in targets]
        #: Each target's pyramid (or None); its levels' chunks are moved here too, where
        #: their layout allows (`_level_target`).
        self.levels = list(levels) or [None] * len(self.targets)
        self._level_targets: dict[int, Target | None] = {}
        # Fixed for the arrays: whether a block of whole input chunks goes chunk by chunk
        # (`_chunkwise`), and whether any target has levels.
        self._pyramids = any(w is not None for w in self.levels)
        self._chunk_grid = all(
            t.shards is None and t.fmt.chunks == src.chunks for t in self.targets
        ) and all(w is None or w.stepwise(src.chunks) for w in self.levels)
        self.src_store = ChunkStore(source.store_path.store)
        # Buffers reused from block to block: decoded input, block masks.
        self._decoded = np.empty(src.chunks, dtype=src.dtype)
        self._masks: dict[tuple[int, ...], list[np.ndarray]] = {}

    @classmethod
    def maybe(
        cls,
        source: zarr.Array,
        targets: zarr.Array | Sequence[zarr.Array],
        levels: Sequence[LevelWriter | None] = (),
    ) -> DirectBlockIO | None:
        """The direct path for these arrays, or None where zarr's codec pipeline is to move
        the chunks: a layout the direct path does not cover, or `THRESHOLD_CHUNK_PATH`
        says so (chunk_path.py)."""
        if chunk_path.requested() == "zarr":
            return None
        try:
            return cls(
                source, [targets] if isinstance(targets, zarr.Array) else list(targets), levels
            )
        except ValueError:
            return None

    def threshold_block(self, selection: tuple[slice, ...], values: Sequence[float]) -> list[int]:
        """Threshold `selection` (whole-array slices, step 1) with each value into its
        target; returns the foreground voxels of each."""
        lo, hi = map(list, bounds(selection, self.src.shape))
        if self._chunkwise(lo, hi):
            return self._threshold_chunks(lo, hi, values, selection)
        shape = tuple(b - a for a, b in zip(lo, hi, strict=True))
        masks = self._masks.get(shape)
        if masks is None:
            masks = self._masks[shape] = [np.empty(shape, np.uint8) for _ in self.targets]
        self._read_masks(lo, hi, masks, values)
        for target, mask in zip(self.targets, masks, strict=True):
            if target.shards is None:
                self._write_mask(target, lo, hi, mask)
            elif not self._write_shards(target, lo, hi, mask):
                # A shard cut by the roi: zarr merges it with what the shard already holds.
                target.array[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = mask
        if self._pyramids:
            self._write_levels(selection, masks)
        return [int(np.count_nonzero(mask)) for mask in masks]

    def _write_levels(self, selection: tuple[slice, ...], masks: list[np.ndarray]) -> None:
        """Each target's pyramid levels of the block (pyramid.py), chunk by chunk."""
        for writer, mask in zip(self.levels, masks, strict=True):
            if writer is None:
                continue
            self._put_levels(writer.levels(selection, mask))

    def _put_levels(
        self, levels: Iterable[tuple[zarr.Array, tuple[slice, ...], np.ndarray]]
    ) -> None:
        for array, level_selection, data in levels:
            target = self._level_target(array)
            if target is None:  # a layout the direct path does not write
                array[level_selection] = data
                continue
            lo = [s.start for s in level_selection]
            hi = [s.stop for s in level_selection]
            self._write_mask(target, lo, hi, data)

    def _level_target(self, array: zarr.Array) -> Target | None:
        key = id(array)
        if key not in self._level_targets:
            try:
                target = Target.of(array)
            except ValueError:
                target = None
            if target is not None and target.shards is not None:
                target = None
            self._level_targets[key] = target
        return self._level_targets[key]

    def _chunkwise(self, lo: list[int], hi: list[int]) -> bool:
        """Same chunk grid in and out (each level made chunk by chunk), and the block made
        of whole chunks: then each chunk goes straight from decode to encode, with no
        block-sized mask in between."""
        return self._chunk_grid and all(
            a % c == 0 and (b % c == 0 or b == n)
            for a, b, c, n in zip(lo, hi, self.src.chunks, self.src.shape, strict=True)
        )

    def _threshold_chunks(
        self, lo: list[int], hi: list[int], values: Sequence[float], selection: tuple[slice, ...]
    ) -> list[int]:
        src = self.src
        # Pyramids: each chunk's first level is made from its mask while it is at hand.
        partials = [w.begin(selection) if w is not None else None for w in self.levels]
        coords = list(itertools.product(*_chunk_ranges(lo, hi, src.chunks)))
        datas = self.src_store.get_each([src.key(c) for c in coords])
        writes: list[tuple[list[tuple[str, bytes]], list[str]]] = [([], []) for _ in self.targets]
        foreground = [0] * len(self.targets)
        for c, data in zip(coords, datas, strict=True):
            decoded = None if data is None else src.decode(data, self._decoded, src.key(c))
            overlap = _overlap(_origin(c, src.chunks), src.chunks, src.shape, lo, hi)
            assert overlap is not None
            inside = overlap[0]
            padded = None
            if any(sl.stop < n for sl, n in zip(inside, src.chunks, strict=True)):
                padded = np.ones(src.chunks, dtype=bool)  # an edge chunk: its padding is
                padded[inside] = False  # the output's fill value
            for i, (target, value) in enumerate(zip(self.targets, values, strict=True)):
                chunk = target.chunk
                if decoded is None:
                    chunk[...] = threshold(np.asarray(src.fill_value), value)
                else:
                    threshold(decoded, value, out=chunk)
                if padded is not None:
                    chunk[padded] = 0
                if (partial := partials[i]) is not None:
                    self.levels[i].add(partial, _origin(c, src.chunks), chunk[inside])  # type: ignore[union-attr]
                n = int(np.count_nonzero(chunk))
                foreground[i] += n
                puts, deletes = writes[i]
                if n:
                    puts.append((target.fmt.key(c), target.fmt.encode(chunk)))
                else:
                    deletes.append(target.fmt.key(c))
        for target, (puts, deletes) in zip(self.targets, writes, strict=True):
            target.store.put_many(puts, deletes)
        for writer, partial in zip(self.levels, partials, strict=True):
            if writer is not None and partial is not None:
                self._put_levels(writer.finish(partial))
        return foreground

    def _write_shards(self, target: Target, lo: list[int], hi: list[int], mask: np.ndarray) -> bool:
        """Write the block's shards whole; False (nothing written) if one is cut."""
        layout, dst = target.shards, target.fmt
        assert layout is not None
        shard_coords = list(itertools.product(*_chunk_ranges(lo, hi, layout.shard)))
        for c in shard_coords:
            overlap = _overlap(_origin(c, layout.shard), layout.shard, dst.shape, lo, hi)
            if overlap is None or not overlap[2]:
                return False
        puts, deletes = [], []
        for c in shard_coords:
            parts: dict[tuple[int, ...], bytes] = {}
            shard_origin = _origin(c, layout.shard)
            for inner in layout.order:
                begin = tuple(
                    o + k for o, k in zip(shard_origin, _origin(inner, dst.chunks), strict=True)
                )
                overlap = _overlap(begin, dst.chunks, dst.shape, lo, hi)
                if overlap is None:
                    continue  # beyond the array: never stored
                in_chunk, in_block, _ = overlap
                chunk = target.chunk
                if any(sl.stop < n for sl, n in zip(in_chunk, dst.chunks, strict=True)):
                    chunk.fill(0)
                chunk[in_chunk] = mask[in_block]
                if chunk.any():
                    parts[inner] = dst.encode(chunk)
            data = layout.encode(parts)
            key = dst.key(c)
            if data is None:
                deletes.append(key)
            else:
                puts.append((key, data))
        target.store.put_many(puts, deletes)
        return True

    def _read_masks(
        self, lo: list[int], hi: list[int], masks: list[np.ndarray], values: Sequence[float]
    ) -> None:
        """Each value's mask of the block, every input chunk decoded once."""
        src = self.src
        coords = list(itertools.product(*_chunk_ranges(lo, hi, src.chunks)))
        datas = self.src_store.get_each([src.key(c) for c in coords])
        for c, data in zip(coords, datas, strict=True):
            overlap = _overlap(_origin(c, src.chunks), src.chunks, src.shape, lo, hi)
            assert overlap is not None
            in_chunk, in_block, _ = overlap
            if data is None:
                for mask, value in zip(masks, values, strict=True):
                    mask[in_block] = threshold(np.asarray(src.fill_value), value)
                continue
            decoded = src.decode(data, self._decoded, src.key(c))[in_chunk]
            for mask, value in zip(masks, values, strict=True):
                threshold(decoded, value, out=mask[in_block])

    def _write_mask(self, target: Target, lo: list[int], hi: list[int], mask: np.ndarray) -> None:
        dst = target.fmt
        coords = list(itertools.product(*_chunk_ranges(lo, hi, dst.chunks)))
        regions = []
        for c in coords:
            overlap = _overlap(_origin(c, dst.chunks), dst.chunks, dst.shape, lo, hi)
            assert overlap is not None
            regions.append(overlap)
        # Chunks the block covers only in part are merged with what they hold already.
        partial = [i for i, (_, _, whole) in enumerate(regions) if not whole]
        existing = target.store.get_each([dst.key(coords[i]) for i in partial])
        puts, deletes = [], []
        for i, c in enumerate(coords):
            in_chunk, in_block, whole = regions[i]
            old = None if whole else next(existing)
            chunk = target.chunk
            if old is not None:
                dst.decode(old, out=chunk)
            elif any(s.stop - s.start < n for s, n in zip(in_chunk, dst.chunks, strict=True)):
                chunk.fill(0)  # edge or partial chunk: the rest is the fill value
            chunk[in_chunk] = mask[in_block]
            if chunk.any():
                puts.append((dst.key(c), dst.encode(chunk)))
            else:
                deletes.append(dst.key(c))
        target.store.put_many(puts, deletes)
