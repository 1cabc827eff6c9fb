"""Turn a container path (local, file://, s3://, gs://, ...) into a zarr store.

Containers are `UPath`s so that one code path serves laptops, PVCs and object stores.
Credentials for object stores come from the environment (AWS_* variables, which a
Kubernetes Secret can provide) or from the UPath's storage options.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from upath import UPath
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

LOCAL_PROTOCOLS = ("", "file", "local")


def as_upath(container: UPath | Path | str) -> UPath:
    """Normalise a container argument; local paths become absolute."""
    path = container if isinstance(container, UPath) else UPath(container)
    if path.protocol in LOCAL_PROTOCOLS:
        return UPath(os.path.abspath(path.path))
    return path


def is_local(container: UPath) -> bool:
    return container.protocol in LOCAL_PROTOCOLS


def container_url(container: UPath) -> str:
    """A stable string identity for a container, used in plan fingerprints."""
    if is_local(container):
        return "file://" + os.path.abspath(container.path)
    return str(container).rstrip("/")


def open_store(container: UPath, *, read_only: bool = False) -> Store:
    """A zarr store rooted at the container."""
    if is_local(container):
        return LocalStore(container.path, read_only=read_only)
    options: dict[str, Any] = dict(container.storage_options)
    options.setdefault("asynchronous", True)
    options.pop("auto_mkdir", None)
    return FsspecStore.from_url(str(container), storage_options=options, read_only=read_only)
