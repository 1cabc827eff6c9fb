"""zarr-python's private API (`zarr.core`), behind one door.

zarr-python versions its public modules (`zarr`, `zarr.abc`, `zarr.buffer`, `zarr.codecs`,
`zarr.storage`, ...); `zarr.core` may change in any release. This is the only module of the
project that imports from it (tests/test_zarr_internals.py fails otherwise), and
pyproject.toml pins zarr to the minor version the tests ran on, so a zarr release that moves
one of these breaks here, in one place, and the tests name it.

Not here because zarr has a public home for it: the buffer prototype that `Store.get` and
`Store.set` take is `zarr.buffer.default_buffer_prototype`.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from zarr.core.indexing import morton_order_iter
from zarr.core.sync import sync

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a store coroutine to completion from synchronous code, on zarr's event loop.

    Needed because object-store clients (fsspec's async file systems) are bound to the loop
    they were created on, and zarr creates them on its own loop thread, which it re-creates
    in forked children. zarr's public synchronous API covers arrays and groups, not single
    `Store` calls (get, set, delete, list). What would replace it: a public `Store` sync
    wrapper in zarr, or opening object stores on a loop thread of our own.
    """
    return sync(coro)


def morton_order(chunks_per_shard: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The order in which zarr-python lays out the inner chunks of a shard.

    The sharding spec leaves the order free (the index says where each chunk is), but the
    direct path promises the same bytes as zarr-python, which writes Morton (Z) order,
    skipping coordinates beyond the shard for shapes that are not powers of two. What
    would replace it: our own Morton decoding, checked against zarr's bytes by
    tests/test_chunkio.py.
    """
    return tuple(morton_order_iter(chunks_per_shard))
