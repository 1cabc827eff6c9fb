"""Check an output against its job: complete (it is the job's own, and every block of the
plan has a done-marker) and right (`input > threshold` recomputed and compared, on every
block or on a random sample, in s0 and in every pyramid level the block writes). A
deleted chunk, a damaged one and a stale marker all show up here: the first two as blocks
that differ, the last as a marker over wrong data. A block whose input cannot be decoded
cannot be checked: it is named, with the input chunk, and the output is not called right.

It reads through zarr-python, not the worker's own chunk path, so that the check does not
share the code it checks. The expected pyramid levels are made with `pyramid.py`'s own
downsampling (`LevelWriter.level_data`, what the writer uses): the point of the check is
storage that lost or changed what was written, and `tests/test_pyramid.py` checks that
downsampling against numpy separately.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import zarr
import zarr.errors

from .arrays import write_unit
from .errors import CODEC_ERRORS, DamagedInput, OutputWrong
from .intervals import blocks_run
from .job import Job
from .kernel import threshold
from .ome import level_path
from .plan import bounds
from .pyramid import LevelWriter
from .status import JobStatus, Region, job_status, regions
from .storage import open_store

T = TypeVar("T")


@dataclass(frozen=True)
class Unreadable:
    """A block's input that cannot be decoded: the chunk (its key in the input's store,
    as `run` names it) and the codec's error."""

    chunk: str
    error: BaseException = field(compare=False)


@dataclass
class Check:
    """What comparing blocks found: `checked` blocks compared, the `wrong` ones with the
    arrays that differ (their paths under the output container), and the `unchecked` ones
    whose input cannot be read."""

    checked: int = 0
    wrong: dict[int, tuple[str, ...]] = field(default_factory=dict)
    unchecked: dict[int, Unreadable] = field(default_factory=dict)


@dataclass
class Finding:
    """A run of blocks and what was found there: the arrays that differ, or the input
    chunk that cannot be decoded."""

    region: Region
    arrays: tuple[str, ...] = ()
    chunk: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = self.region.to_dict()
        if self.chunk:
            out["reason"] = "input damaged"
            out["chunk"] = self.chunk
        else:
            out["arrays"] = list(self.arrays)
        return out


@dataclass
class Verdict:
    status: JobStatus
    checked: int
    wrong: list[Finding]
    unchecked: list[Finding] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.status.ours and not self.status.missing

    @property
    def ok(self) -> bool:
        return self.complete and not self.wrong and not self.unchecked

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.status.to_dict(),
            "ok": self.ok,
            "complete": self.complete,
            "checked_blocks": self.checked,
            "wrong_blocks": _blocks(self.wrong),
            "wrong": [w.to_dict() for w in self.wrong],
            "unchecked_blocks": _blocks(self.unchecked),
            "unchecked": [u.to_dict() for u in self.unchecked],
        }

    def lines(self, limit: int = 20) -> list[str]:
        job = self.status.job
        out = self.status.lines(limit)
        levels = f" and levels {', '.join(job.pyramid.names)}" if job.pyramid else ""
        unchecked = _blocks(self.unchecked)
        out.append(
            f"checked     {self.checked} blocks against input > {job.spec.threshold:g}{levels}:"
            f" {_blocks(self.wrong)} differ"
            + (f"; {unchecked} unchecked: input damaged" if unchecked else "")
        )
        for found in self.wrong[:limit]:
            where = _level_names(job, found.arrays)
            out.append(
                f"wrong       {_run(found.region)}{f' ({where})' if where else ''}:"
                f" {_rois(found.region)}"
            )
        for found in self.unchecked[:limit]:
            out.append(
                f"unchecked   {_run(found.region)}: input damaged, {found.chunk} cannot "
                f"be decoded: {_rois(found.region)}"
            )
        verdict = "complete and right" if self.ok else "NOT complete and right"
        out.append(f"verdict     {verdict}")
        return out


def verify_all(
    jobs: Sequence[Job],
    sample: int | None = None,
    seed: int = 0,
    on_block: Callable[[int], None] | None = None,
) -> list[Verdict]:
    """Compare every block (or `sample` blocks drawn with `seed`) of each output of a sweep
    (one block grid) with `input > threshold`; each block's input is read once for all."""
    ids = sample_of(range(jobs[0].plan.total_blocks), sample, seed)
    # An output with no array (never run, or cleared by an --overwrite cut short) is not
    # complete: its verdict says so from its status, with nothing to compare.
    present = [job for job in jobs if job.output.exists]
    checks = iter(check_outputs(present, [ids] * len(present), on_block) if present else [])
    verdicts = []
    for job in jobs:
        if not job.output.exists:
            verdicts.append(Verdict(job_status(job), 0, []))
            continue
        check = next(checks)
        verdicts.append(Verdict(job_status(job), check.checked, *findings(job, check)))
    return verdicts


def sample_of(blocks: range, sample: int | None, seed: int) -> range | list[int]:
    """All of `blocks`, or `sample` of them drawn with `seed`, in order."""
    if sample is None or sample >= len(blocks):
        return blocks
    return sorted(random.Random(seed).sample(blocks, sample))


class _Output:
    """One job's arrays opened for comparing: s0 and each pyramid level (None if gone)."""

    def __init__(self, job: Job) -> None:
        store = open_store(job.output_path, read_only=True)
        self.job = job
        self.names = array_paths(job)
        self.arrays: list[zarr.Array | None] = [
            zarr.open_array(store, path=job.array_dataset, mode="r")
        ]
        self.writer: LevelWriter | None = None
        if job.pyramid is not None:
            plan = job.plan
            self.writer = LevelWriter(
                job.pyramid, [], job.output.shape, plan.grid_origin, plan.block_shape
            )  # its regions only: nothing is written
            self.arrays += [_open_level(store, job, name) for name in job.pyramid.names]

    def differ(self, selection: tuple[slice, ...], data: np.ndarray) -> tuple[str, ...]:
        """The arrays whose region of the block differs from `data > threshold`."""
        expected = threshold(data, self.job.spec.threshold)
        differ = [] if _same(self.arrays[0], selection, expected) else [self.names[0]]
        if self.writer is not None:
            for k, level_selection, want in self.writer.level_data(selection, expected):
                if not _same(self.arrays[k], level_selection, want):
                    differ.append(self.names[k])
        return tuple(differ)


def check_outputs(
    jobs: Sequence[Job],
    ids: Sequence[Sequence[int]],
    on_block: Callable[[int], None] | None = None,
) -> list[Check]:
    """Each job's blocks of `ids` (one list per job, in order) recomputed and compared: s0,
    and each level region it writes. The jobs are one sweep's, on one block grid, so a
    block's input is read once for all the jobs that check it."""
    outputs = [_Output(job) for job in jobs]
    wanted = [set(i) for i in ids]
    checks = [Check() for _ in jobs]
    source = jobs[0]
    for block in sorted(set().union(*wanted)):
        selection = source.block_selection(block)
        try:
            data = source.input[selection]
        except CODEC_ERRORS as e:
            unreadable = Unreadable(damaged_chunk(source.input, selection), e)
            for want, check in zip(wanted, checks, strict=True):
                if block in want:
                    check.unchecked[block] = unreadable
        else:
            for output, want, check in zip(outputs, wanted, checks, strict=True):
                if block in want:
                    differ = output.differ(selection, data)
                    if differ:
                        check.wrong[block] = differ
                    check.checked += 1
        if on_block is not None:
            on_block(block)
    return checks


def array_paths(job: Job) -> list[str]:
    """The job's arrays under the output container: s0 (or the mask), then each level."""
    names = [job.array_dataset]
    if job.pyramid is not None:
        names += [level_path(job.spec.output_dataset, n) for n in job.pyramid.names]
    return names


def findings(job: Job, check: Check) -> tuple[list[Finding], list[Finding]]:
    """The wrong and the unchecked blocks as runs with their ROIs; a run holds blocks
    with the same arrays differing, or the same damaged chunk."""
    wrong = [Finding(region, arrays=arrays) for region, arrays in _grouped(job, check.wrong)]
    chunks = {b: u.chunk for b, u in check.unchecked.items()}
    unchecked = [Finding(region, chunk=chunk) for region, chunk in _grouped(job, chunks)]
    return wrong, unchecked


def damaged_chunk(array: zarr.Array, selection: tuple[slice, ...]) -> str:
    """The key of the first chunk (shard, if sharded) of `array` in `selection` that
    cannot be read, as `run` names it (`raw/c/0/0/4`)."""
    unit = write_unit(array)
    ends = list(zip(*bounds(selection, array.shape), strict=True))
    grid = [range(a // u, -(-b // u)) for (a, b), u in zip(ends, unit, strict=True)]
    for coords in itertools.product(*grid):
        part = tuple(
            slice(max(a, c * u), min(b, (c + 1) * u))
            for (a, b), c, u in zip(ends, coords, unit, strict=True)
        )
        try:
            array[part]
        except CODEC_ERRORS:
            key = array.metadata.encode_chunk_key(coords)
            return f"{array.store_path.path}/{key}".lstrip("/")
    region = ", ".join(f"{a}:{b}" for a, b in ends)
    return f"a chunk of the input in [{region}]"  # it failed once, then read: named by region


def output_wrong(
    job: Job, check: Check, written: set[int] | None = None, more_outputs: int = 0
) -> OutputWrong:
    """The one-line error of a verifying pass that found wrong blocks (markers taken back);
    `written`: the blocks this run wrote, to say whether the damage followed its writes."""
    wrong, _ = findings(job, Check(wrong=check.wrong))
    first = wrong[0]
    levels = _level_names(job, first.arrays)
    more = f" and {len(wrong) - 1} more regions" if len(wrong) > 1 else ""
    others = f" (and wrong blocks in {more_outputs} more outputs)" if more_outputs else ""
    ours = len(check.wrong.keys() & (written or set()))
    if ours == len(check.wrong):
        when = "right after this run wrote them"
    elif ours == 0:
        when = "though this run wrote none of them (they were marked done before it)"
    else:
        when = f"({ours} of them written by this run, the others marked done before it)"
    return OutputWrong(
        f"{job.where}",
        f"{len(check.wrong)} of {check.checked} blocks checked differ from input > "
        f"{job.spec.threshold!r} {when}: {_run(first.region)}"
        f"{f' in {levels}' if levels else ''} ({_rois(first.region)}){more}{others}; their "
        "done-markers are taken back, so the retry rewrites them",
    )


def damaged(check: Check) -> Iterator[tuple[int, DamagedInput]]:
    """The unchecked blocks with the error `run` gives a block whose input is damaged."""
    for block in sorted(check.unchecked):
        found = check.unchecked[block]
        yield block, DamagedInput(found.chunk, found.error)


def _open_level(store: Any, job: Job, name: str) -> zarr.Array | None:
    """A level array, or None where it is gone (then every block's region there differs)."""
    try:
        return zarr.open_array(store, path=level_path(job.spec.output_dataset, name), mode="r")
    except (FileNotFoundError, zarr.errors.ArrayNotFoundError, *CODEC_ERRORS):
        return None


def _same(array: zarr.Array | None, selection: tuple[slice, ...], want: np.ndarray) -> bool:
    if array is None:
        return False
    try:
        got = array[selection]
    except CODEC_ERRORS:  # a damaged output chunk: wrong
        return False
    return bool(np.array_equal(got, want))


def _grouped(job: Job, labels: Mapping[int, T]) -> Iterator[tuple[Region, T]]:
    """Runs of consecutive block ids with one label, as regions."""
    ids = sorted(labels)
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or ids[i] != ids[i - 1] + 1 or labels[ids[i]] != labels[ids[start]]:
            (region,) = regions(job, [(ids[start], ids[i - 1])])
            yield region, labels[ids[start]]
            start = i


def _level_names(job: Job, arrays: Sequence[str]) -> str:
    """`s0, s1` for an OME-Zarr output's levels; nothing for a plain array (its only one)."""
    if not job.spec.ome_zarr:
        return ""
    return ", ".join(a.rsplit("/", 1)[-1] for a in arrays)


def _blocks(found: Sequence[Finding]) -> int:
    return sum(f.region.last - f.region.first + 1 for f in found)


def _run(region: Region) -> str:
    return blocks_run(region.first, region.last)


def _rois(region: Region) -> str:
    return "; ".join(f"offset {tuple(r['offset'])} shape {tuple(r['shape'])}" for r in region.rois)
