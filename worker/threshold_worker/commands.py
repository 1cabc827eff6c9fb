"""`threshold-worker`: plan, prepare, run locally, or run one partition of a job.

The job's options are made from `params.JobParameters`, field by field; heavy modules
(zarr, numcodecs) are imported by the commands that need them, so `--help` is quick.

Bad input exits with code 2 and one line on stderr; nothing has been written then.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .environment import PARTITION_INDEX
from .errors import InputError, Terminated, WorkerError

if TYPE_CHECKING:
    from .params import JobParameters

logger = logging.getLogger("threshold_worker")


class CommaList(click.ParamType):
    """Comma-separated values in order, each made by `cast`, e.g. `64,128,128`; `refusal`
    ends the one-line error for a value that is not that."""

    def __init__(self, name: str, cast: Callable[[str], Any], refusal: str) -> None:
        self.name, self.cast, self.refusal = name, cast, refusal

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (tuple, list)):
            return list(value)
        try:
            return [self.cast(v) for v in str(value).replace(" ", "").split(",")]
        except OutOfRange as e:
            self.fail(str(e), param, ctx)
        except ValueError:
            self.fail(f"{value!r} {self.refusal}", param, ctx)


#: Numbers as written in C, JSON or YAML: Python's float() and int() also take "1_0" (10)
#: and digits of other scripts, which a typo should not become.
_DECIMAL = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf(?:inity)?|nan)", re.IGNORECASE | re.ASCII
)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)


class OutOfRange(ValueError):
    """A number written well that float64 cannot hold (1e400): said so, not "no number"."""


def decimal(text: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ValueError(text)
    number = float(text)
    if math.isinf(number) and "inf" not in text.lower():
        raise OutOfRange(f"{text!r} is beyond float64's range")
    return number


def integer(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValueError(text)
    return int(text)


class Number(click.ParamType):
    name = "FLOAT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return decimal(str(value).strip())
        except OutOfRange as e:
            self.fail(str(e), param, ctx)
        except ValueError:
            self.fail(f"{value!r} is not a number", param, ctx)


class Whole(click.IntRange):
    """click's IntRange, for integers as written in C, JSON or YAML only (see `integer`);
    without bounds, any integer, and the help shows no range."""

    def __init__(self, min: int | None = None, max: int | None = None) -> None:
        super().__init__(min=min, max=max)
        if min is None and max is None:
            self.name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            try:
                value = integer(value.strip())
            except ValueError:
                self.fail(f"{value!r} is not an integer", param, ctx)
        return super().convert(value, param, ctx)

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()


class OneOf(click.Choice):
    """A choice given as text that stands for a typed value (zarr format 2 -> the int 2)."""

    def __init__(self, values: tuple[Any, ...]) -> None:
        super().__init__([str(v) for v in values])
        self.values = {str(v): v for v in values}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return self.values[super().convert(str(value), param, ctx)]


INTS = CommaList("INTS", integer, "is not comma-separated integers, e.g. 64,128,128")
KINDS: dict[str, Any] = {
    "ints": INTS,
    "floats": CommaList("FLOATS", decimal, "is not a number or comma-separated numbers"),
    "float": Number(),
}


def job_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every field of `JobParameters` as an option: names, help and types from the model."""
    from .params import JobParameters, options, value_kind

    for name, info, option in reversed(list(options(JobParameters))):
        kind, choices = value_kind(info)
        if option.several:  # one value, or a comma list that is another field's
            kind = "floats" if kind == "float" else "ints"
        kwargs: dict[str, Any] = {"help": info.description}
        if kind == "flag":
            kwargs["is_flag"] = True
        elif kind == "choice":
            kwargs["type"] = OneOf(choices)
        elif kind == "int":  # the model's lower bound (partitions >= 1, pyramid >= 0)
            lower = [m.ge for m in info.metadata if getattr(m, "ge", None) is not None]
            kwargs["type"] = Whole(min=lower[0] if lower else 1)
        elif kind in KINDS:
            kwargs["type"] = KINDS[kind]
        if info.is_required():
            kwargs["required"] = True
        elif not info.default:
            kwargs["default"] = None
        else:
            kwargs.update(default=info.default, show_default=True)
        fn = click.option(*option.flags, name, **kwargs)(fn)
    return fn


def parameters(**kw: Any) -> Any:
    """The job the options describe (a one-line error, exit 2, for what the model refuses)."""
    from pydantic import ValidationError

    from .errors import first_error
    from .params import JobParameters, options

    given = {k: v for k, v in kw.items() if v is not None}
    for name, _, option in options(JobParameters):
        value = given.get(name)
        if option.several and isinstance(value, list):
            if len(value) == 1:
                given[name] = value[0]
            else:
                given.pop(name)
                if given.get(option.several) is not None:
                    raise InputError(
                        f"{option.flags[0]} and --{option.several}",
                        f"give the values with one of them, e.g. {option.flags[0]} 0.3,0.5",
                    )
                given[option.several] = value
    try:
        return JobParameters(**given)
    except ValidationError as e:
        raise InputError("", first_error(e)) from None


def plan_report(jobs: Any) -> dict[str, Any]:
    """The plan as JSON: small and of constant size, whatever the number of blocks. `jobs`:
    one job, or the jobs of a sweep (one plan, an output per threshold)."""
    from .job import sweep_fingerprint

    jobs = jobs if isinstance(jobs, list) else [jobs]
    job = jobs[0]
    plan = job.plan
    outputs = [
        {
            "container": str(j.output_path),
            "dataset": j.spec.output_dataset,
            "array": j.array_dataset,
            "threshold": j.spec.threshold,
            "chunks": list(j.output.chunks),
            "shards": list(j.output.shards) if j.output.shards else None,
            "zarr_format": j.output.zarr_format,
            "exists": j.output.exists,
            "pyramid": None
            if j.pyramid is None
            else [
                {"path": name, "shape": list(shape), "chunks": list(chunks)}
                for name, shape, chunks in zip(
                    j.pyramid.names, j.pyramid.shapes, j.pyramid.chunks, strict=True
                )
            ],
        }
        for j in jobs
    ]
    return {
        "fingerprint": sweep_fingerprint(jobs),
        "total_blocks": plan.total_blocks,
        "partitions": plan.partitions,
        "block_shape": list(plan.block_shape),
        "grid_shape": list(plan.grid_shape),
        "grid_origin": list(plan.grid_origin),
        "fit": plan.fit,
        "roi": {"offset": list(job.roi.offset), "shape": list(job.roi.shape)},
        "roi_voxels": {"begin": list(plan.roi_begin), "shape": list(plan.roi_shape)},
        "voxels": plan.voxels,
        "axes": job.input_meta.spatial_axes,
        "voxel_size": list(job.input_meta.voxel_size),
        "input": {
            "container": str(job.input_path),
            "dataset": job.spec.input_dataset,
            "dtype": str(job.input.dtype),
            "shape": list(job.input.shape),
        },
        "output": outputs[0],
        "outputs": outputs,
    }


#: What `prepare --termination-log` writes: the part of the plan the operator reads. The
#: kubelet keeps only the last 4096 bytes of a termination message; these few numbers and a
#: 16-character fingerprint always fit, whatever the paths (the full report is on stdout).
#: The geometry (grid, ROI, voxel size) lets the operator name a block's world-unit ROI.
TERMINATION_REPORT = (
    "fingerprint",
    "total_blocks",
    "partitions",
    "block_shape",
    "grid_shape",
    "grid_origin",
    "fit",
    "roi",
    "roi_voxels",
    "voxel_size",
    "voxels",
)
TERMINATION_MESSAGE_BYTES = 4096


def termination_report(report: dict[str, Any]) -> str:
    """The plan as the operator reads it from the prepare pod's termination message, with
    the viewer link when there is one."""
    keys = [*TERMINATION_REPORT, *(["viewer"] if report.get("viewer") else [])]
    text = json.dumps({key: report[key] for key in keys}, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_MESSAGE_BYTES:  # cannot happen: a few bounded numbers
        raise AssertionError(f"termination report of {len(text.encode())} bytes: {text[:80]}")
    return text


def _print_plan(report: dict[str, Any]) -> None:
    click.echo(f"fingerprint  {report['fingerprint']}")
    click.echo(
        f"roi          offset {tuple(report['roi']['offset'])}, "
        f"shape {tuple(report['roi']['shape'])} "
        f"(world units, axes {', '.join(report['axes'])})"
    )
    click.echo(
        f"blocks       {report['total_blocks']} = {' x '.join(map(str, report['grid_shape']))} "
        f"of {' x '.join(map(str, report['block_shape']))} voxels, fit={report['fit']}"
    )
    click.echo(f"partitions   {report['partitions']}")
    click.echo(f"voxels       {report['voxels']:,}")
    for out in report["outputs"]:
        sweep = f"> {out['threshold']:g}: " if len(report["outputs"]) > 1 else ""
        click.echo(
            f"output       {sweep}{out['container']}/{out['dataset']} "
            f"({'exists' if out['exists'] else 'will be created'}, zarr v{out['zarr_format']}, "
            f"chunks {tuple(out['chunks'])}"
            f"{', shards ' + str(tuple(out['shards'])) if out['shards'] else ''})"
        )
        for level in out["pyramid"] or []:
            click.echo(
                f"  level      {level['path']}: shape {tuple(level['shape'])}, "
                f"chunks {tuple(level['chunks'])}"
            )
    cost = report.get("cost")
    if cost is None:
        return
    stored = cost["read_bytes_stored_estimate"]
    click.echo(
        f"read         {_size(cost['read_bytes_decoded'])} decoded"
        + (f", about {_size(stored)} stored" if stored is not None else "")
    )
    written = cost["write_bytes_estimate"]
    click.echo(
        f"write        at most {_size(cost['write_bytes_at_most'])} before compression"
        + (f", about {_size(written)} encoded" if written is not None else "")
    )
    cal = cost["calibration"]
    if cal is None:
        click.echo("time         unknown: --calibrate N measures N blocks (nothing is written)")
        return
    click.echo(
        f"calibration  {cal['blocks']} blocks in {cal['seconds']:.3f} s "
        f"({cal['seconds_per_block'] * 1e3:.1f} ms a block, {cal['chunk_path']} chunk path)"
        + (f"; {cal['failed']} sampled blocks failed (damaged input)" if cal["failed"] else "")
    )
    click.echo(
        f"time         about {_duration(cost['seconds_estimate'])} with "
        f"{cost['parallelism']} process{'es' if cost['parallelism'] > 1 else ''}"
    )


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
    envvar="THRESHOLD_LOG_LEVEL",
)
def cli(log_level: str) -> None:
    """Blockwise thresholding of zarr volumes: output = input > threshold (uint8)."""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if log_level.upper() != "DEBUG":  # object-store clients' background tasks: not news
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)


@cli.command("plan")
@job_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option(
    "--calibrate",
    type=Whole(min=1),
    help="Read, threshold and encode this many blocks, timed (nothing is written), to "
    "estimate the run time and the bytes written.",
)
@click.option(
    "-n",
    "--workers",
    "--parallelism",
    "parallelism",
    type=Whole(min=1),
    help="Processes (or pods) the estimate assumes [default: all cores].",
)
def plan_command(as_json: bool, calibrate: int | None, parallelism: int | None, **kw: Any) -> None:
    """Show how the job would be cut into blocks and what it will cost; writes nothing."""
    from . import calibrate as calibration
    from .job import resolve_sweep

    jobs = resolve_sweep(parameters(**kw))
    report = plan_report(jobs)
    measured = calibration.calibrate(jobs, calibrate) if calibrate else None
    report["cost"] = calibration.cost(jobs, parallelism or os.cpu_count() or 1, measured)
    if as_json:
        click.echo(json.dumps(report))
    else:
        _print_plan(report)


@cli.command("prepare")
@job_options
@click.option(
    "--termination-log",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the plan's fingerprint, block count, partitions and block shape here "
    "(Kubernetes' terminationMessagePath: at most 4096 bytes).",
)
def prepare_command(termination_log: str | None, **kw: Any) -> None:
    """Validate the input, create or claim the output array, print the plan as JSON."""
    from .job import claim_all, resolve_sweep

    jobs = resolve_sweep(parameters(**kw))
    with claim_all(jobs):  # each output created or claimed, then let go
        pass
    report = plan_report(jobs)
    report["viewer"] = viewer_link(jobs[0])
    if termination_log:
        Path(termination_log).write_text(termination_report(report))
    click.echo(json.dumps(report))


#: The longest viewer link a prepare pod reports (the rest of its report is a few hundred
#: bytes of the 4096 Kubernetes keeps).
VIEWER_CHARS = 2048


def viewer_link(job: Any) -> str | None:
    """The neuroglancer link to the input and the (first) mask, when neuroglancer can read
    both from where they are (object stores); None for local data, which needs
    `threshold-worker view --serve` on a machine that sees it, or a link too long to report."""
    from . import view

    image, mask = view.job_arrays(job)
    if view.needs_server(image, mask):
        return None
    link = view.link(view.state(image, mask))
    return link if len(link) <= VIEWER_CHARS else None


@cli.command("run")
@job_options
@click.option("-n", "--workers", type=Whole(min=1), help="Worker processes [default: all cores].")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar [default: when stderr is a terminal].",
)
@click.option(
    "--blocks",
    "block_runs",
    metavar="RUNS",
    help="Only these block ids of the plan, e.g. 29,40-47 (what `status --missing` or "
    "`status --failed` prints); those already done are skipped. Default: every block.",
)
def run_command(
    workers: int | None, progress: bool | None, block_runs: str | None, **kw: Any
) -> None:
    """Run the whole job on this machine; a rerun resumes where the last one stopped, doing
    exactly the blocks without a done-marker. Exit 3: some blocks failed on their own
    (damaged input), the rest is done; `status` names them."""
    from .compute import LocalComputeContext, create_compute_context
    from .errors import BlocksFailed
    from .intervals import parse_strict
    from .local import run_local

    blocks = parse_strict(block_runs, "--blocks") if block_runs is not None else None
    context = create_compute_context()  # its Local num_workers is the default for -n
    if workers is None and isinstance(context, LocalComputeContext):
        workers = context.num_workers
    try:
        summary = run_local(parameters(**kw), workers=workers, progress=progress, blocks=blocks)
    except BlocksFailed as e:
        for line in e.summary.lines() if e.summary is not None else []:
            click.echo(line)
        raise
    for line in summary.lines():
        click.echo(line)


@cli.command("spawn")
@job_options
def spawn_command(**kw: Any) -> None:
    """Run the job on the compute context of the options file (Local by default)."""
    from .compute import create_compute_context
    from .job import resolve_sweep

    context = create_compute_context()
    params = parameters(**kw)
    resolve_sweep(params)  # fail fast, before anything is submitted
    result = context.spawn(params)()
    for line in getattr(result, "lines", lambda: [str(result)])():
        click.echo(line)


@cli.command("start-worker")
@job_options
@click.option(
    "--partition",
    type=Whole(min=0),
    envvar=PARTITION_INDEX,
    help=f"Partition to process [env {PARTITION_INDEX}]; default: all blocks.",
)
@click.option(
    "--partition-list",
    metavar="RUNS",
    help="Only these partitions, e.g. 3,7-9: --partition (the Job's completion index) picks "
    "the one to run from this list (0 -> 3, 1 -> 7, ...). A retry's Job runs only what "
    "did not complete.",
)
@click.option("--expect-fingerprint", help="Fail (exit 2) if the plan differs from this one.")
@click.option(
    "--termination-log",
    type=click.Path(dir_okay=False, writable=True),
    help="On failure, also write the error and the failed regions here as JSON "
    "(Kubernetes' terminationMessagePath: at most 4096 bytes).",
)
@click.option(
    "--verify",
    "verify",
    is_flag=True,
    help="Then recompute the partition's blocks, s0 and every pyramid level, and compare; "
    "wrong ones lose their done-markers and the run fails (exit 1) so that a retry "
    "rewrites them. A block whose input cannot be decoded is recorded as failed (exit 3).",
)
@click.option(
    "--verify-sample",
    type=Whole(min=1),
    help="With --verify: check this many blocks of the partition, not all, drawn afresh "
    "each run (a retry checks others); the log names the blocks and the seed.",
)
def start_worker_command(
    partition: int | None,
    partition_list: str | None,
    expect_fingerprint: str | None,
    termination_log: str | None,
    verify: bool,
    verify_sample: int | None,
    **kw: Any,
) -> None:
    """Threshold the blocks of one partition (or all) that are not done yet."""
    from .worker import Verify

    if verify_sample is not None and not verify:
        raise InputError("--verify-sample", "needs --verify")
    checks = Verify(verify_sample) if verify else None
    try:
        _start_worker(partition, partition_list, expect_fingerprint, checks, **kw)
    except WorkerError as e:
        if termination_log:
            Path(termination_log).write_text(failure_report(e))
        raise


def failure_report(error: WorkerError) -> str:
    """A failed pod's termination message: its one-line error, its kind (the error's class:
    the operator tells from it whether a retry can help) and, when blocks failed alone
    (exit 3), the count and the first failed regions, as many as fit in 4096 bytes."""
    from .ledger import termination_summary

    stats = getattr(error, "stats", None)
    failures = next((f for f in getattr(stats, "failures", ()) or () if f), None)
    line = str(error)
    for first in (3, 2, 1, 0):
        doc: dict[str, Any] = {"error": line, "kind": type(error).__name__}
        if failures is not None:
            doc["failures"] = termination_summary(failures, first=first)
        text = json.dumps(doc, separators=(",", ":"))
        if len(text.encode()) <= TERMINATION_MESSAGE_BYTES:
            return text
        line = line.encode()[:1024].decode(errors="ignore")  # the line itself may be long
    return json.dumps({"error": line[:256], "kind": type(error).__name__})


def _start_worker(
    partition: int | None,
    partition_list: str | None,
    expect_fingerprint: str | None,
    verify: Any,
    **kw: Any,
) -> None:
    from .intervals import count, nth, parse_strict
    from .worker import run_partition

    params = parameters(**kw)
    if partition is not None and params.partitions is None:
        raise InputError("--partitions", f"is required with --partition (or {PARTITION_INDEX})")
    last = params.partition_count - 1
    if partition_list is not None:
        if partition is None:
            raise InputError(
                "--partition-list", f"needs --partition (or {PARTITION_INDEX}): which of them"
            )
        runs = parse_strict(partition_list, "--partition-list", "partition", "0-2,5")
        if not runs:
            raise InputError("--partition-list", "is empty; expected partitions, e.g. 0-2,5")
        if partition >= count(runs):
            raise InputError(
                "--partition",
                f"{partition} is outside 0..{count(runs) - 1}, the positions in --partition-list",
            )
        partition = nth(runs, partition)
        if partition > last:
            raise InputError("--partition-list", f"partition {partition} is outside 0..{last}")
    if partition is not None and partition > last:
        raise InputError("--partition", f"{partition} is outside 0..{last}")
    stats = run_partition(params, partition, expect_fingerprint, verify)
    click.echo(
        f"{stats.processed} blocks processed, {stats.skipped} already done, "
        f"{stats.voxels:,} voxels in {stats.seconds:.2f} s"
    )


@cli.command("status")
@job_options
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--limit", type=Whole(min=0), default=20, show_default=True,
              help="Missing regions to list (--json lists all).")  # fmt: skip
@click.option("--missing", "only_missing", is_flag=True,
              help="Print only the missing block ids as runs (e.g. 29,40-47), for `run --blocks`.")  # fmt: skip
@click.option("--failed", "only_failed", is_flag=True,
              help="Print only the failed block ids as runs, for `run --blocks`.")  # fmt: skip
def status_command(
    as_json: bool, limit: int, only_missing: bool, only_failed: bool, **kw: Any
) -> None:
    """Whose the output is, which blocks are done, which failed (the failure ledger) and
    which regions are missing (as world-unit ROIs), what remains and the rate; reads only."""
    from .intervals import format_runs, normalise, union_runs
    from .job import resolve_sweep
    from .status import job_status

    if only_missing and only_failed:
        raise InputError("--missing", "and --failed both given; choose one")
    given = parameters(**kw)
    found = [job_status(j) for j in resolve_sweep(given, writing=False)]
    if only_missing or only_failed:  # a sweep's outputs: blocks that any of them lacks
        lists = [f.missing_runs() if only_missing else f.failed_runs() for f in found]
        click.echo(format_runs(normalise((a, b) for a, b, _ in union_runs(lists))))
        return
    if as_json:
        click.echo(_outputs_json(given, [f.to_dict() for f in found]))
    else:
        for i, one in enumerate(found):
            if i:
                click.echo("")
            for line in one.lines(limit):
                click.echo(line)


def _outputs_json(given: JobParameters, outputs: list[dict[str, Any]]) -> str:
    """One output's object, or a sweep's `{"outputs": [...]}` (also of one threshold)."""
    return json.dumps({"outputs": outputs} if given.is_sweep else outputs[0])


@cli.command("verify")
@job_options
@click.option("--sample", type=Whole(min=1),
              help="Check this many blocks only, drawn at random with --seed.")  # fmt: skip
@click.option("--seed", type=Whole(), default=0, show_default=True,
              help="Of the sample: the same seed checks the same blocks.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option("--limit", type=Whole(min=0), default=20, show_default=True,
              help="Regions to list (--json lists all).")  # fmt: skip
def verify_command(sample: int | None, seed: int, as_json: bool, limit: int, **kw: Any) -> None:
    """Check that the output is complete (every block marked) and right (input > threshold
    recomputed, on every block or a sample, in s0 and every pyramid level); exit 1, naming
    the regions, if it is not. Blocks whose input cannot be decoded are named unchecked."""
    from .job import resolve_sweep
    from .verify import verify_all

    given = parameters(**kw)
    verdicts = verify_all(resolve_sweep(given, writing=False), sample, seed)
    if as_json:
        click.echo(_outputs_json(given, [v.to_dict() for v in verdicts]))
    else:
        for i, verdict in enumerate(verdicts):
            if i:
                click.echo("")
            for line in verdict.lines(limit):
                click.echo(line)
    if not all(v.ok for v in verdicts):
        sys.exit(1)


@cli.command("sample")
@click.argument("container")
@click.option("--dataset", default="raw", show_default=True)
@click.option("--shape", type=INTS, default="256,256,256", show_default=True, help="z,y,x voxels.")
@click.option("--chunks", type=INTS, default="64,64,64", show_default=True)
@click.option("--voxel-size", type=INTS, default="8,4,4", show_default=True)
@click.option("--offset", type=INTS, help="World units; default 0,0,0.")
@click.option("--dtype", default="float32", show_default=True)
@click.option("--zarr-format", type=click.Choice(["2", "3"]), default="3", show_default=True)
@click.option("--seed", type=Whole(), default=0, show_default=True)
def sample_command(
    container: str,
    dataset: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    voxel_size: tuple[int, ...],
    offset: tuple[int, ...] | None,
    dtype: str,
    zarr_format: str,
    seed: int,
) -> None:
    """Write a synthetic prediction volume (smooth blobs in [0, 1])."""
    from .sample import make_sample

    for name, value in (("--shape", shape), ("--chunks", chunks), ("--voxel-size", voxel_size)):
        if len(value) != 3 or min(value) <= 0:
            raise InputError(name, f"{value} must be 3 positive integers (z,y,x)")
    array = make_sample(
        container, dataset, shape, chunks, voxel_size, offset, dtype, int(zarr_format), seed=seed
    )
    click.echo(
        f"wrote {container}/{dataset}: shape {array.shape}, {array.dtype}, chunks {array.chunks}, "
        f"voxel size {voxel_size}"
    )


@cli.command("preview")
@click.option("-ic", "--input_container", "--input-container", required=True)
@click.option("-id", "--input_dataset", "--input-dataset", required=True)
@click.option(
    "-oc", "--output_container", "--output-container", help="Default: the input container."
)
@click.option("-od", "--output_dataset", "--output-dataset", required=True)
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(dir_okay=False), help="PNG file to write."
)
@click.option("--z", type=Whole(), help="Slice index along z (default: the middle).")
@click.option(
    "--level", type=Whole(min=1),
    help="Also show level sK of the OME-Zarr mask image (-od names its group), blown up.",
)  # fmt: skip
def preview_command(
    input_container: str,
    input_dataset: str,
    output_container: str | None,
    output_dataset: str,
    out: str,
    z: int | None,
    level: int | None,
) -> None:
    """Write a PNG of one slice: input and mask side by side (and a pyramid level)."""
    from . import view
    from .arrays import open_zarr
    from .paths import as_upath
    from .sample import preview

    source = open_zarr(as_upath(input_container), input_dataset, "r", "input")
    container = as_upath(output_container or input_container)
    image = view.image_levels(container, output_dataset)  # [] when -od is an array
    mask_path = f"{output_dataset.strip('/')}/{image[0][0]}" if image else output_dataset
    mask = open_zarr(container, mask_path, "r", "output")
    coarse, factors = None, (1, 1, 1)
    if level is not None:
        names = [name for name, _ in image]
        if f"s{level}" not in names:
            raise InputError("--level", f"s{level} is not a level of {container}/{output_dataset}"
                             f" (levels: {', '.join(names) or 'none: not an OME-Zarr image'})")  # fmt: skip
        scale0, scale = image[0][1], dict(image)[f"s{level}"]
        factors = tuple(round(b / a) for a, b in zip(scale0, scale, strict=True))
        coarse = open_zarr(container, f"{output_dataset.strip('/')}/s{level}", "r", "output")
    click.echo(f"wrote {preview(source, mask, out, z, level=coarse, factors=factors)}")


@cli.command("view")
@click.option("-ic", "--input_container", "--input-container", required=True)
@click.option("-id", "--input_dataset", "--input-dataset", required=True)
@click.option(
    "-oc", "--output_container", "--output-container", help="Default: the input container."
)
@click.option(
    "-od", "--output_dataset", "--output-dataset", required=True,
    help="The mask array, or the OME-Zarr image group that holds it.",
)  # fmt: skip
@click.option("--serve", is_flag=True, help="Serve local containers over HTTP until Ctrl-C.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option(
    "--port", type=Whole(min=0, max=65535), default=8090, show_default=True,
    help="Port to serve on (0: any free port).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print only the state JSON.")
def view_command(
    input_container: str,
    input_dataset: str,
    output_container: str | None,
    output_dataset: str,
    serve: bool,
    host: str,
    port: int,
    as_json: bool,
) -> None:
    """Print a neuroglancer state (JSON and link) with the input as an image layer and the
    mask as a segmentation layer; with --serve, serve local containers for it."""
    from . import view

    image = view.ViewArray.open(input_container, input_dataset, "input")
    mask = view.ViewArray.open(output_container or input_container, output_dataset, "output")
    directories = view.roots(image, mask)
    server = view.serve(directories, host, port) if serve and directories else None
    urls = view.base_urls(server, host, port, list(directories))
    state = view.state(image, mask, urls)
    click.echo(json.dumps(state))
    if not as_json:
        click.echo("")
        click.echo(view.link(state))
    if directories and server is None:
        click.echo(
            f"(local containers: add --serve to serve them at http://{host}:{port})", err=True
        )
    if server is not None:
        click.echo(f"serving {', '.join(urls.values())}; Ctrl-C stops", err=True)
        sys.stdout.flush()
        try:
            server.serve_forever()
        finally:
            server.server_close()


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_unwinds(after: Any = None) -> Iterator[None]:
    """As PID 1 of a container the default would ignore SIGTERM until Kubernetes kills the
    pod 30 s later; unwinding instead records the blocks finished so far, then exits.
    `after`: the disposition left behind (None: the one found)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if after is None else after)


def _quiet_unraisable(unraisable: Any) -> None:
    """Object-store clients abandoned by a failed request complain when they are collected
    ("Exception ignored in ..."), tens of lines after the one line that matters: log them
    for debugging only."""
    logger.debug(
        "ignored: %s in %r", unraisable.exc_value, unraisable.object, exc_info=unraisable.exc_value
    )


def main(argv: list[str] | None = None, *, exiting: bool = False) -> None:
    """Console entry point: bad input is one line on stderr and exit code 2. `argv`: the
    arguments (default sys.argv's).

    `exiting`: the process ends with this call (the console script). Once the command has
    unwound, its outcome (the markers, the exit code) is decided, so a SIGTERM while the
    process exits is then ignored instead of killing it by the signal half-way through its
    exit (after a verifying pass, a run, or the message of an earlier SIGTERM). Otherwise
    (in-process callers, with or without `argv`) the handler found is restored."""
    sys.unraisablehook = _quiet_unraisable
    try:
        with _sigterm_unwinds(signal.SIG_IGN if exiting else None):
            cli.main(args=argv, prog_name="threshold-worker", standalone_mode=False)
    except Terminated:
        click.echo("terminated; rerun to resume", err=True)
        sys.exit(128 + signal.SIGTERM)
    except WorkerError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.UsageError as e:  # bad option values: one line, like every other input error
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):  # click's name for Ctrl-C
        click.echo("interrupted; rerun to resume", err=True)
        sys.exit(130)
    except Exception as e:  # storage failures after retries: retryable, exit 1
        logger.debug("failure", exc_info=True)
        click.echo(f"error: {type(e).__name__}: {e}", err=True)
        if os.environ.get("THRESHOLD_TRACEBACK"):
            raise
        sys.exit(1)


def console() -> None:
    """The `threshold-worker` script: `main` for a process that ends with it, and an exit
    without the collector's last pass.

    On the way out Python collects every object of zarr, pydantic and numpy that is tracked
    by the cyclic collector before it lets the process go: about 0.1 s, a quarter of the life
    of a pod with one block, to free memory the kernel frees anyway. Freezing those objects
    skips only that pass: everything a run writes is written and closed before
    `main` returns, and atexit handlers (logging's flush) still run.
    """
    try:
        main(exiting=True)
    finally:
        gc.freeze()
