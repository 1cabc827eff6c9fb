"""An output knows which job writes it, so no job trusts another's done-markers.

The owner record `<output>/.threshold-job.json` names the job (plan fingerprint, threshold,
input, start time) and its state:

- `clearing`: the job is replacing what was there. Markers are removed first, then the
  data; a run of the same job that finds this state (a killed `--overwrite`) finishes the
  clearing before anything else, with or without `--overwrite`.
- `writing`: the job's blocks are being written; its markers are trusted.
- `complete`: every block of the job has its marker (set by whole-job runs).

A job finds the output in one of these situations, and `decide` says what it may do:

| found | without --overwrite | with --overwrite |
| --- | --- | --- |
| no array, or an empty array no job owns (DaCapo creates outputs so) | adopt it | replace it |
| this job's record, `writing` (interrupted, or written by shards) | resume | resume |
| this job's record, `complete`, or an array that no longer fits it | resume (or refuse, if it does not fit) | replace it |
| this job's record, `clearing` (a killed replacement) | finish clearing, run | the same |
| another job's record, an unreadable one, a job named only in the array's attributes (record lost), or data no job owns | refuse (exit 2), naming what it found | replace it |

Only a whole job (`run`, `prepare`, `start-worker` without `--shard`) may replace data;
the shards of an Indexed Job find the output prepared, or refuse. Every write happens
inside the output's lease (see `lease`), after all input checks: bad input leaves storage
untouched.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any, Literal

from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype
from zarr.storage import LocalStore

from .errors import PREPARE_AGAIN, OutputTaken
from .lease import LEASE_DIR, utcnow
from .markers import LEDGER_DIR, MARKER_DIR
from .safefiles import TMP_DIR, SafeDir, SymlinkInOutput
from .storage import local_files
from .zarr_internals import run

OWNER_FILE = ".threshold-job.json"
#: zarr's metadata documents (v3, v2): not data.
METADATA = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")
#: This tool's files and folders in an output array: not data.
BOOKKEEPING = (OWNER_FILE, MARKER_DIR, LEDGER_DIR, LEASE_DIR, TMP_DIR)
#: An array's own metadata document (v3, v2).
ARRAY_DOCUMENTS = ("zarr.json", ".zarray")

State = Literal["clearing", "writing", "complete"]


@dataclass(frozen=True)
class OwnerRecord:
    fingerprint: str
    state: State
    threshold: float
    input: str
    started: str
    finished: str | None = None

    def describe(self) -> str:
        when = f"finished {self.finished}" if self.finished else f"started {self.started}"
        return f"threshold {self.threshold:g} on {self.input}, {when} (plan {self.fingerprint})"


class Unreadable:
    """An owner record that is not one (edited by hand, or a link): foreign."""

    def __init__(self, text: str) -> None:
        self.text = text


@dataclass(frozen=True)
class Remembered:
    """No owner record, but the array's attributes name the job that wrote it (the record
    was lost, e.g. in a copy that skipped hidden files): that job's result, untrusted."""

    attributes: dict[str, Any]

    def describe(self) -> str:
        a = self.attributes
        return f"threshold {a.get('threshold')} on {a.get('input')} (plan {a.get('fingerprint')})"


Found = OwnerRecord | Unreadable | Remembered | None


class Action(Enum):
    ADOPT = "adopt"  # no job owns it: drop stray markers, take it
    RESUME = "resume"  # ours
    CLEAR = "clear"  # replace what is there (or finish replacing it)


def decide(
    found: Found,
    has_data: bool,
    fingerprint: str,
    overwrite: bool,
    whole_job: bool,
    fits: bool,
    where: str,
    mine: tuple[str, float] = ("", float("nan")),
    differs: Sequence[str] = (),
    prepared: bool = False,
    stranger: bool = False,
) -> Action:
    """What a job may do with the output it found (see the table above); refuses with
    `OutputConflict`. `fits`: the existing array is what this job would create; `mine`:
    this job's input and threshold, and `differs`: the parameters known to differ from the
    existing output's, to explain a refusal of a job that looks the same; `prepared`: a
    partition of a job whose prepare step made the output, which it must find; `stranger`:
    the data there is no array and not what is left of one of ours (a folder that may hold
    other arrays), which not even --overwrite replaces."""
    if isinstance(found, OwnerRecord) and found.fingerprint == fingerprint:
        if found.state == "clearing" or (overwrite and (found.state == "complete" or not fits)):
            if not whole_job:
                raise _prepare_first(where)
            return Action.CLEAR
        return Action.RESUME
    if stranger:
        raise OutputTaken(
            "output_dataset",
            f"{where} is a folder that is no zarr array (no zarr.json or .zarray) and holds "
            "files no threshold-worker job wrote, maybe other arrays; not even --overwrite "
            "replaces it: delete it yourself if it may go, or choose another output_dataset",
        )
    if prepared:  # whatever is there now, it is not what was prepared
        if found is None and not has_data:
            raise output_gone(where)
        raise OutputTaken(
            "output_dataset",
            f"{where} holds {_found(found)}, which came after this job was prepared; a "
            f"partition cannot go on: {PREPARE_AGAIN} with --overwrite if that may be "
            "replaced, or choose another output",
        )
    if found is None and not has_data:
        return Action.CLEAR if overwrite and whole_job else Action.ADOPT
    if not overwrite:
        how = "pass --overwrite to replace it" if whole_job else _PREPARE
        raise OutputTaken(
            "output_dataset",
            f"{where} holds {_found(found, mine, differs)}; {how}, or choose another output",
        )
    if not whole_job:
        raise _prepare_first(where)
    return Action.CLEAR


def _found(
    found: Found, mine: tuple[str, float] = ("", math.nan), differs: Sequence[str] = ()
) -> str:
    """What a refused job found at its output, in words; with `mine` and `differs`, why a
    result of the same input and threshold is another job's."""
    if isinstance(found, OwnerRecord):
        done = "complete " if found.state == "complete" else ""  # shards never know
        what = f"the {done}result of another job: {found.describe()}"
        if (found.input, found.threshold) == mine and differs:
            return what + f" -- the same input path and threshold, but {'; '.join(differs)}"
        if (found.input, found.threshold) == mine:
            return what + (
                " -- the same input path and threshold, so the input was re-created "
                "since, or another parameter (roi, block shape, layout) differs"
            )
        return what
    if isinstance(found, Remembered):
        return f"the result of a job whose owner record is lost: {found.describe()}"
    if isinstance(found, Unreadable):
        return f"an unreadable owner record ({OWNER_FILE}), maybe another job's result"
    return "data that no threshold-worker job wrote"


_PREPARE = "run `threshold-worker prepare --overwrite` (or `run --overwrite`) first to replace it"


def output_gone(where: str) -> OutputTaken:
    """A prepared job's output, deleted since: made anew by a partition, it would hold only
    the partitions that run from now on, and the job would end as if complete."""
    return OutputTaken(
        "output_dataset",
        f"{where} no longer holds what this job's prepare step made (it was deleted or "
        "replaced since); a partition never makes the output anew, which would "
        f"lose the blocks written before: {PREPARE_AGAIN} (with --overwrite if something "
        "was put in its place)",
    )


def output_lost(where: str, whole_job: bool) -> OutputTaken:
    """An output deleted or moved while the job wrote it: its folders were made again by
    the writes that followed, and the job would end as complete over what is left."""
    again = "run the job again" if whole_job else PREPARE_AGAIN
    return OutputTaken(
        "output_dataset",
        f"{where} no longer holds this job's output: it was deleted or moved while this job "
        f"wrote it, so blocks written before are missing; {again} with --overwrite, which "
        "replaces what is left there",
    )


def _prepare_first(where: str) -> OutputTaken:
    return OutputTaken(
        "output_dataset",
        f"{where} must be replaced (or its replacement finished) before the shards of a job "
        f"can write it: {_PREPARE}",
    )


class OutputArea:
    """The output array's files: the owner record, markers and data; local or remote."""

    def __init__(self, store: Store, dataset: str) -> None:
        self.store = store
        self.dataset = dataset.strip("/")
        guarded = local_files(store)
        self.files: SafeDir | None = None
        if guarded is not None:
            self.files = guarded[0]
        elif isinstance(store, LocalStore):  # read-only look before anything is written
            self.files = SafeDir(os.path.join(str(store.root), self.dataset))

    def _key(self, name: str) -> str:
        return f"{self.dataset}/{name}"

    def read_owner(self, attributes: dict[str, Any] | None = None) -> Found:
        """The owner record; without one, the job the array's attributes name, if any."""
        if self.files is not None:
            try:
                data = self.files.read(OWNER_FILE)
            except SymlinkInOutput:
                return Unreadable("a symbolic link")
        else:
            data = run(_get(self.store, self._key(OWNER_FILE)))
        if data is None:
            job = (attributes or {}).get("threshold_job")
            return Remembered(job) if isinstance(job, dict) else None
        try:
            return OwnerRecord(**json.loads(data))
        except (ValueError, TypeError):
            return Unreadable(data.decode(errors="replace")[:200])

    def write_owner(self, record: OwnerRecord) -> None:
        data = json.dumps(asdict(record), indent=1).encode()
        if self.files is not None:
            self.files.write(OWNER_FILE, data)
        else:
            run(_set(self.store, self._key(OWNER_FILE), data))

    def has_data(self) -> bool:
        """Whether anything but metadata and this tool's bookkeeping is stored (stops at the
        first chunk it finds)."""
        skip = (*BOOKKEEPING, *METADATA)
        if self.files is not None:
            return next(self.files.files(skip=skip), None) is not None

        async def first() -> bool:
            async for name in self.store.list_dir(self.dataset + "/"):
                if name.rstrip("/") not in skip:
                    return True
            return False

        return bool(run(first()))

    def has_array_document(self) -> bool:
        """Whether an array's metadata document is there (readable or not)."""
        return self._any(ARRAY_DOCUMENTS)

    def is_array_or_ours(self) -> bool:
        """An array (which --overwrite may replace), or what is left of an output of ours
        whose metadata and record went while it was written (this tool's files): not a
        folder that may hold other arrays."""
        return self._any((*ARRAY_DOCUMENTS, *BOOKKEEPING))

    def _any(self, names: Sequence[str]) -> bool:
        """Whether any of these files or folders is at the top of the area."""
        if self.files is not None:
            return any(self.files.exists(name) for name in names)

        async def present(name: str) -> bool:  # a folder of an object store is a prefix
            if await self.store.exists(self._key(name)):
                return True
            async for _ in self.store.list_prefix(self._key(name) + "/"):
                return True
            return False

        return any(run(present(name)) for name in names)

    def clear_markers(self) -> None:
        """Done-markers and the failure ledger: both speak of the job that is replaced."""
        self._delete_dir(MARKER_DIR)
        self._delete_dir(LEDGER_DIR)

    def clear_data(self) -> None:
        """Everything but the owner record and the lease: chunks, metadata, temporaries."""
        if self.files is not None:
            self.files.remove_tree(keep=(OWNER_FILE, LEASE_DIR, MARKER_DIR, LEDGER_DIR))
            return

        async def names() -> list[str]:
            return [n async for n in self.store.list_dir(self.dataset + "/")]

        for name in run(names()):
            name = name.rstrip("/")
            if name not in (OWNER_FILE, LEASE_DIR, MARKER_DIR, LEDGER_DIR):
                self._delete_dir(name)

    def _delete_dir(self, name: str) -> None:
        if self.files is not None:
            self.files.remove_tree(name)
            return
        key = self._key(name)
        run(self.store.delete_dir(key))
        with contextlib.suppress(FileNotFoundError):
            run(_delete(self.store, key))


def new_record(job_record: dict[str, Any], state: State) -> OwnerRecord:
    return OwnerRecord(
        fingerprint=job_record["fingerprint"],
        state=state,
        threshold=float(job_record["threshold"]),
        input=job_record["input"],
        started=utcnow(),
    )


def finished(record: OwnerRecord) -> OwnerRecord:
    return replace(record, state="complete", finished=utcnow())


async def _get(store: Store, key: str) -> bytes | None:
    buf = await store.get(key, default_buffer_prototype())
    return None if buf is None else buf.to_bytes()


async def _set(store: Store, key: str, data: bytes) -> None:
    await store.set(key, default_buffer_prototype().buffer.from_bytes(data))


async def _delete(store: Store, key: str) -> None:
    await store.delete(key)
