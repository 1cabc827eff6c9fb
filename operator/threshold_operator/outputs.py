"""Where a ThresholdJob writes, and which other ThresholdJob it must wait for.

A worker holds its output's lease only while a pod of it runs: between the pods of an
Indexed Job, or while they are Pending, nothing holds it, and a second ThresholdJob given
`overwrite: true` could replace the output of a job that is still running. So the operator
keeps the outputs of every ThresholdJob it sees (a kopf index, filled before any pass runs)
and starts a ThresholdJob only when no other one that writes the same place, or a place
inside or around it, goes first: one that has started (and is not finished) or one that
was created earlier. The others wait in phase Pending, saying for whom; the first to come
goes first, and a ThresholdJob being started never waits, so the line always moves.

A place is a path on a storage: a PersistentVolumeClaim of the namespace (the volume whose
mountPath holds the output container) or an object-store bucket. Outputs on neither (the
pod's own file system) are no one else's. What cannot be seen from here: two claims bound to
one share, a link on the volume, an endpoint that serves one bucket under two names. The
worker's own lease and owner record still refuse those while a pod writes.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from threshold_worker.paths import PROTOCOL_ALIASES, file_url_path

from .api import FINAL_PHASES, ThresholdJobSpec

#: A storage: ("pvc", namespace, claim) or (scheme, bucket) of an object store.
Storage = tuple[str, ...]
#: The condition a waiting ThresholdJob carries: True (OutputInUse) while it waits, False
#: (OutputHeld) once the output was free and it made its prepare Job: it has started.
WAITING = "Waiting"
WAITING_REASON = "OutputInUse"
OUTPUT_HELD = "OutputHeld"
#: Phases in which a ThresholdJob has its Jobs (made by an operator with or without this).
WORKING = ("Preparing", "Running")


@dataclass(frozen=True)
class Place:
    storage: Storage
    path: tuple[str, ...]

    def meets(self, other: Place) -> bool:
        """The same place, or one inside the other."""
        n = min(len(self.path), len(other.path))
        return self.storage == other.storage and self.path[:n] == other.path[:n]

    def __str__(self) -> str:
        where = "/".join(self.path)
        if self.storage[0] == "pvc":
            return f"{where} on PersistentVolumeClaim {self.storage[2]}"
        return f"{self.storage[0]}://{self.storage[1]}/{where}"


@dataclass(frozen=True)
class Writer:
    """What the index holds of a ThresholdJob: who it is, where it writes, how far it is."""

    namespace: str
    name: str
    uid: str
    created: str
    places: tuple[Place, ...]
    started: bool
    final: bool
    phase: str = ""

    @property
    def order(self) -> tuple[str, str, str, str]:
        return (self.created, self.namespace, self.name, self.uid)


def _prefixes(path: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [path[:n] for n in range(len(path) + 1)]


def places(namespace: str, spec: ThresholdJobSpec) -> tuple[Place, ...]:
    """Every output of the spec (each threshold's of a sweep) that others could reach."""
    found = []
    for params in spec.parameters().sweep():
        place = _place(namespace, spec, str(params.output_container), params.output_dataset)
        if place is not None:
            found.append(place)
    return tuple(found)


def _place(namespace: str, spec: ThresholdJobSpec, container: str, dataset: str) -> Place | None:
    """Where the worker would write: its own reading of file URLs (`paths.file_url_path`)
    and of protocol aliases (s3a is s3, gcs is gs)."""
    inside = [p for p in dataset.split("/") if p]
    local = file_url_path(container)
    parts = urlsplit(container)
    if local is None and parts.scheme:
        scheme = PROTOCOL_ALIASES.get(parts.scheme.lower(), parts.scheme.lower())
        path = [p for p in posixpath.normpath("/" + parts.path).split("/") if p]
        return Place((scheme, parts.netloc), (*path, *inside))
    local = posixpath.normpath(local if local is not None else container)
    mounts = [v for v in spec.volumes if _below(local, v.mount_path)]
    if not mounts:
        return None  # the pod's own file system
    volume = max(mounts, key=lambda v: len(v.mount_path))
    below = posixpath.relpath(local, posixpath.normpath(volume.mount_path))
    path = [p for p in below.split("/") if p not in ("", ".")]
    return Place(("pvc", namespace, volume.claim_name), (*path, *inside))


def _below(path: str, mount: str) -> bool:
    mount = posixpath.normpath(mount)
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def writer(body: Mapping[str, Any], spec: ThresholdJobSpec | None = None) -> Writer | None:
    """The index entry of a ThresholdJob as stored (None: a spec no pod would run). `spec`:
    the body's spec, when the caller has validated it already."""
    meta = body.get("metadata") or {}
    try:
        if spec is None:
            spec = ThresholdJobSpec.model_validate(body.get("spec") or {})
        found = places(meta.get("namespace", ""), spec)
    except (ValidationError, ValueError):
        return None
    if not found:
        return None
    status = body.get("status") or {}
    phase = status.get("phase")
    held = any(
        c.get("type") == WAITING and c.get("status") == "False" and c.get("reason") == OUTPUT_HELD
        for c in status.get("conditions") or []
    )
    return Writer(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        created=meta.get("creationTimestamp") or "",
        places=found,
        started=phase in WORKING or held,
        final=phase in FINAL_PHASES,
        phase=phase or "",
    )


def index_entries(body: Mapping[str, Any]) -> dict[Storage, Writer]:
    """What the kopf index keeps of one ThresholdJob: its entry under each storage, while
    it is not finished (so that the index holds the ThresholdJobs that may write, not every
    one that ever ran). A finished one is left out before its spec is read: kopf calls this
    on every event of every ThresholdJob, the finished ones' too (its first listing)."""
    if ((body.get("status") or {}).get("phase")) in FINAL_PHASES:
        return {}
    entry = writer(body)
    if entry is None:
        return {}
    return {p.storage: entry for p in entry.places}


class Registry:
    """The outputs of every ThresholdJob, read from a pass's thread: a kopf index (attached
    by the first event handler call) or, in tests, a plain mapping."""

    def __init__(self, index: Mapping[Storage, Iterable[Writer]] | None = None) -> None:
        self.index = index

    def attach(self, index: Mapping[Storage, Iterable[Writer]]) -> None:
        self.index = index

    def writers(self, storage: Storage) -> list[Writer]:
        if self.index is None:
            return []
        return list(self.index.get(storage, ()))  # one C-level copy: safe beside kopf's loop

    def ahead(self, me: Writer) -> Writer | None:
        """The ThresholdJob `me` must wait for, if any: another one that writes where `me`
        writes (the same place, or one inside or around it), is not finished, and has
        started, or was created earlier while `me` has not started either. A ThresholdJob
        that has started (a retry of a failed one too) waits only for started ones.

        Each storage is read once, and each place of the others is looked up in the
        prefixes of `me`'s places: a pass costs O(depth) per place of the ThresholdJobs on
        the same storage, whatever the size of the sweeps."""
        first: Writer | None = None
        for storage in {p.storage for p in me.places}:
            mine = {p.path for p in me.places if p.storage == storage}
            around = {q for path in mine for q in _prefixes(path)}
            for other in self.writers(storage):
                if other.uid == me.uid or other.final:
                    continue
                if not (other.started or (not me.started and other.order < me.order)):
                    continue
                if first is not None and first.order <= other.order:
                    continue
                if any(
                    p.storage == storage
                    and (p.path in around or any(q in mine for q in _prefixes(p.path)))
                    for p in other.places
                ):
                    first = other
        return first


def waiting_message(me: Writer, other: Writer, then: str = "") -> str:
    """What a waiting ThresholdJob says: for whom, why, and how it ends; `then`: what to
    do once that one has finished, where nothing happens by itself (a refused retry, which
    waits for nothing: its message must not read as waiting once the other has finished)."""
    place = next((q for q in other.places for p in me.places if p.meets(q)), other.places[0])
    who = other.name if other.namespace == me.namespace else f"{other.namespace}/{other.name}"
    held = (  # held back for a while: Pending once started is a Kueue queue's doing
        "it is suspended"
        if other.phase == "Suspended"
        else "it is queued"
        if other.phase == "Pending" and other.started
        else None
    )
    other_job = (
        f"ThresholdJob {who}{f' ({held})' if held else ''}, which writes {place}, where this "
        "one writes too (the same output, or one inside or around it)"
    )
    if then:
        return f"{other_job}, went first; {then}"
    return f"waiting for {other_job}; this one starts when that one has finished or is deleted"
