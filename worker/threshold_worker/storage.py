"""Turn a container path (local, file://, s3://, gs://, ...) into a zarr store.

Containers are `UPath`s so that one code path serves laptops, PVCs and object stores.
Credentials for object stores come from the environment (AWS_* variables, which a
Kubernetes Secret can provide) or from the UPath's storage options.

An output's store is guarded: on local disks every key below the output array goes
through `safefiles.SafeDir`, so neither this worker nor zarr-python ever writes through a
symlink planted in the output tree.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Iterable
from typing import Any

from upath import UPath
from zarr.abc.store import ByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.storage import FsspecStore, LocalStore, WrapperStore

from .paths import is_local
from .safefiles import SafeDir


def open_store(container: UPath, *, read_only: bool = False, guard: str | None = None) -> Store:
    """A zarr store rooted at the container; `guard` names the output array whose tree
    must never be reached through a symlink (local disks)."""
    if is_local(container):
        store = LocalStore(container.path, read_only=read_only)
        if guard and not read_only:
            return GuardedStore(store, guard)
        return store
    options: dict[str, Any] = dict(container.storage_options)
    options.setdefault("asynchronous", True)
    options.pop("auto_mkdir", None)
    remote = FsspecStore.from_url(str(container), storage_options=options, read_only=read_only)
    return CheckedStore(remote) if guard and not read_only else remote


class CheckedStore(WrapperStore[Store]):
    """An object store whose every write first calls `check` (when set): the output's
    lease must still be this job's, so that a paused process that lost it writes nothing."""

    def __init__(self, store: Store, check: Any = None) -> None:
        super().__init__(store)
        self.check = check

    def _with_store(self, store: Store) -> CheckedStore:
        return type(self)(store, self.check)

    def _before_write(self) -> None:
        if self.check is not None:
            self.check()

    async def set(self, key: str, value: Any) -> None:
        self._before_write()
        await self._store.set(key, value)

    async def set_if_not_exists(self, key: str, value: Any) -> None:
        self._before_write()
        await self._store.set_if_not_exists(key, value)

    async def _set_many(self, values: Iterable[tuple[str, Any]]) -> None:
        for key, value in values:
            await self.set(key, value)

    async def delete(self, key: str) -> None:
        self._before_write()
        await self._store.delete(key)

    async def delete_dir(self, prefix: str) -> None:
        self._before_write()
        await self._store.delete_dir(prefix)


def local_files(store: Store) -> tuple[SafeDir, str] | None:
    """The guarded tree of an output store and its key prefix, if it is one."""
    if isinstance(store, GuardedStore):
        return store.files, store.prefix
    return None


class GuardedStore(WrapperStore[LocalStore]):
    """A LocalStore whose keys below `array` go through `SafeDir` (no symlinks followed,
    atomic writes); keys outside it, e.g. parent group metadata, are the LocalStore's."""

    def __init__(self, store: LocalStore, array: str) -> None:
        super().__init__(store)
        self.array = array.strip("/")
        self.prefix = self.array + "/"
        self.files = SafeDir(os.path.join(str(store.root), self.array))

    def _with_store(self, store: LocalStore) -> GuardedStore:
        return type(self)(store, self.array)

    def _rel(self, key: str) -> str | None:
        return key[len(self.prefix) :] if key.startswith(self.prefix) else None

    async def get(
        self, key: str, prototype: Any = None, byte_range: ByteRequest | None = None
    ) -> Any:
        rel = self._rel(key)
        if rel is None:
            return await self._store.get(key, prototype, byte_range)
        if prototype is None:
            from zarr.buffer import default_buffer_prototype  # zarr's default, lazily

            prototype = default_buffer_prototype()
        data = await asyncio.to_thread(self.files.read, rel)
        if data is None:
            return None
        return prototype.buffer.from_bytes(_byte_range(data, byte_range))

    async def get_partial_values(
        self, prototype: Any, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Any]:
        return [await self.get(k, prototype, r) for k, r in key_ranges]

    async def exists(self, key: str) -> bool:
        rel = self._rel(key)
        if rel is None:
            return await self._store.exists(key)
        return await asyncio.to_thread(self.files.exists, rel)

    async def set(self, key: str, value: Any) -> None:
        rel = self._rel(key)
        if rel is None:
            return await self._store.set(key, value)
        self._check_writable()
        await asyncio.to_thread(self.files.write, rel, value.as_buffer_like())

    async def set_if_not_exists(self, key: str, value: Any) -> None:
        if not await self.exists(key):
            await self.set(key, value)

    async def _set_many(self, values: Iterable[tuple[str, Any]]) -> None:
        for key, value in values:
            await self.set(key, value)

    async def _get_many(self, requests: Iterable[tuple[str, Any, Any]]) -> AsyncGenerator[Any]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)

    async def delete(self, key: str) -> None:
        rel = self._rel(key)
        if rel is None:
            return await self._store.delete(key)
        self._check_writable()
        await asyncio.to_thread(self.files.unlink, rel)

    async def delete_dir(self, prefix: str) -> None:
        prefix = prefix.strip("/")
        if prefix == self.array or prefix.startswith(self.prefix):
            await asyncio.to_thread(self.files.remove_tree, self._rel(prefix + "/") or "")
            return
        await self._store.delete_dir(prefix)


def _byte_range(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, SuffixByteRequest):
        return data[-byte_range.suffix :]
    return data[byte_range.offset :]
