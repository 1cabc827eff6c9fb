"""Where a job's arrays live: container paths and URLs, and their identity.

Containers are `UPath`s so that one code path serves laptops, PVCs and object stores.
Nothing here imports zarr: the operator resolves DaCapo array stores with it.
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse

from upath import UPath

LOCAL_PROTOCOLS = ("", "file", "local")
PROTOCOL_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}


def file_url_path(container: str) -> str | None:
    """The path a `file:` or `local:` URL names, read as RFC 8089 says (percent-decoded; no
    host, or localhost), not as a relative path; None for anything else. ValueError for a
    URL naming another host."""
    parsed = urllib.parse.urlsplit(container)
    if parsed.scheme not in ("file", "local"):
        return None
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(
            f"{container} names the host '{parsed.netloc}'; only this machine's files can "
            "be used: file:///path"
        )
    return urllib.parse.unquote(parsed.path)


def local_path(path: str) -> str:
    """The path made absolute, with each `..` taken as the file system takes it: the parent
    of where the path has led so far, through links. (`os.path.abspath` drops a name and
    the `..` after it as text: with `link -> ../real/deep`, `top/link/../in.zarr` would name
    top/in.zarr, where every other tool opens real/in.zarr.)"""
    parts = os.path.join(os.getcwd(), path).split("/")
    if ".." not in parts:
        return os.path.normpath("/".join(parts))  # drops only `.`, `//` and a trailing `/`
    last = len(parts) - 1 - parts[::-1].index("..")
    head = os.path.realpath("/".join(parts[: last + 1]))
    return os.path.normpath("/".join([head, *parts[last + 1 :]]))


def as_upath(container: UPath | os.PathLike[str] | str) -> UPath:
    """Normalise a container argument; local paths become absolute, file URLs their paths."""
    if isinstance(container, str) and (local := file_url_path(container)) is not None:
        return UPath(local_path(local))
    path = container if isinstance(container, UPath) else UPath(container)
    if path.protocol in LOCAL_PROTOCOLS:
        return UPath(local_path(path.path))
    return path


def is_local(container: UPath) -> bool:
    return container.protocol in LOCAL_PROTOCOLS


def container_url(container: UPath) -> str:
    """A stable string identity for a container, used in plan fingerprints."""
    if is_local(container):
        return "file://" + os.path.abspath(container.path)
    return str(container).rstrip("/")


def _remote_key(container: UPath, dataset: str) -> str:
    protocol = PROTOCOL_ALIASES.get(container.protocol, container.protocol)
    options = container.storage_options
    endpoint = (
        options.get("endpoint_url")
        or (options.get("client_kwargs") or {}).get("endpoint_url")
        or (os.environ.get("AWS_ENDPOINT_URL", "") if protocol == "s3" else "")
    )
    text = str(container).split("://", 1)[-1]
    path = posixpath.normpath("/" + text + "/" + dataset).lstrip("/")
    return f"{protocol}://{endpoint.rstrip('/')}|{path}"


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _ancestors(path: str) -> list[str]:
    out = [path]
    while (parent := os.path.dirname(path)) != path:
        out.append(parent)
        path = parent
    return out


def _contains(outer: str, inner: str) -> bool:
    """Whether local array `inner` is `outer` or lies inside it, seen as file-system
    objects: real paths, then device and inode (bind mounts, other spellings)."""
    if _below(outer, inner):
        return True
    target = _file_id(outer)
    return target is not None and any(_file_id(p) == target for p in _ancestors(inner))


def overlap(a: UPath, a_dataset: str, b: UPath, b_dataset: str) -> str | None:
    """How array b relates to array a: 'same', 'inside', 'contains' or None (apart). Local
    arrays are compared as written (a path may lead through a link inside the other) and
    as file-system objects (real paths, device and inode)."""
    if is_local(a) != is_local(b):
        return None
    if is_local(a):
        la = os.path.normpath(os.path.join(a.path, a_dataset))
        lb = os.path.normpath(os.path.join(b.path, b_dataset))
        ra, rb = os.path.realpath(la), os.path.realpath(lb)
        inside = _contains(ra, rb) or _below(la, lb)
        contains = _contains(rb, ra) or _below(lb, la)
    else:
        ka, kb = _remote_key(a, a_dataset), _remote_key(b, b_dataset)
        inside, contains = _below(ka, kb), _below(kb, ka)
    if inside and contains:
        return "same"
    return "inside" if inside else "contains" if contains else None


def _below(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")
