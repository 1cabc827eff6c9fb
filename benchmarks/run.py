"""`make bench`: threshold one volume with every method a user might pick, in one run.

Every method runs in a fresh process (imports before the clock starts), round-robin, for
`--repeats` rounds. This machine is shared and its speed drifts by 2x within minutes, so
each comparison is a ratio taken within one round and the table gives the median of those
ratios; times are medians too. Results go to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zarr

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "worker"))

from threshold_worker.sample import make_sample  # noqa: E402

OURS, OURS_1 = ("this-worker", 2), ("this-worker", 1)
#: The main table: (label, method, processes; 0 = the library's default threads).
MAIN = [
    ("threshold-worker run, 2 processes", "this-worker", 2),
    ("threshold-worker run, 1 process", "this-worker", 1),
    (
        "the same, direct chunk path (THRESHOLD_CHUNK_PATH=direct), 2 processes",
        "this-worker-direct",
        2,
    ),
    (
        "the same, zarr-python's codec pipeline (THRESHOLD_CHUNK_PATH=zarr), 2 processes",
        "this-worker-zarr",
        2,
    ),
    (
        "the same, zarrs codec pipeline (zarrs.ZarrsCodecPipeline), 2 processes",
        "this-worker-zarrs",
        2,
    ),
    ("the same, zarrs codec pipeline, 1 process", "this-worker-zarrs", 1),
    ("dask.array from_zarr > t, to_zarr (2 threads)", "dask", 2),
    ("DaCapo-style daisy + funlib.persistence (2 workers)", "daisy", 2),
    ("zarr-python loop over 128^3 blocks (1 process)", "zarr-loop", 1),
    ("tensorstore loop over 128^3 blocks (default threads)", "tensorstore", 0),
    ("floor: raw chunk files + numcodecs, 2 processes", "floor", 2),
    ("floor: raw chunk files + numcodecs, 1 process", "floor", 1),
    ("tight floor: the same with reused buffers, 2 processes", "floor-reuse", 2),
    ("tight floor: the same with reused buffers, 1 process", "floor-reuse", 1),
]


@dataclass(frozen=True)
class Target:
    """One comparison of the issue: this worker's throughput over another method's."""

    column: str
    ours: tuple[str, int]
    other: tuple[str, int]
    at_least: float | None


TARGETS = [
    Target("vs floor, 2 proc.", OURS, ("floor", 2), 0.9),
    Target("vs floor, 1 proc.", OURS_1, ("floor", 1), 0.9),
    Target("vs tight floor, 2 proc.", OURS, ("floor-reuse", 2), None),
    Target("vs dask", OURS, ("dask", 2), 3.0),
    Target("vs DaCapo-style", OURS, ("daisy", 2), 3.0),
    Target("vs tensorstore", OURS, ("tensorstore", 0), 1.2),
]
#: The direct chunk path against what this worker does without it: zarr's codec pipelines
#: (zarr-python's own; the Rust `zarrs` one, which runs threads, so also with 1 process).
DIRECT = ("this-worker-direct", 2)
ZARR_PIPELINE = [("this-worker-zarr", 2)]
ZARRS_PIPELINE = [("this-worker-zarrs", 2), ("this-worker-zarrs", 1)]
#: The direct path stays the default for a layout only where it is this much faster than
#: the best library path of the same run (worker/threshold_worker/chunk_path.py).
KEEP_DIRECT = 1.2
#: A threshold sweep of 9 values (methods.SWEEP): one pass against 9 runs (issue 12).
SWEEP = [
    ("threshold-worker run -th 0.1,...,0.9 (one pass, 9 outputs), 2 processes", "sweep", 2),
    ("threshold-worker run, once per threshold (9 runs), 2 processes", "sweep-separate", 2),
    ("DaCapo-style daisy worker, once per threshold (9 runs, 2 workers)", "sweep-daisy", 2),
    (
        "physical floor, one pass: read and decode once, 9 x threshold, encode, write",
        "sweep-floor",
        2,
    ),
    ("physical floor, 9 passes", "sweep-floor-separate", 2),
]
SWEEP_THRESHOLDS = 9
#: One pass over 9 separate runs of this worker: the issue's goal.
SWEEP_AT_LEAST = 4.0
#: An OME-Zarr mask with 4 pyramid levels against the same without (issue 14).
PYRAMID = [
    ("threshold-worker run --ome-zarr, no pyramid, 2 processes", "ome", 2),
    ("threshold-worker run --ome-zarr --pyramid 4, 2 processes", "pyramid", 2),
]
#: The issue's goal: 4 levels cost less than this much more time.
PYRAMID_AT_MOST = 1.15
#: Startup table: rounds, and the issue's bound on a worker's first block, from exec.
STARTUP_RUNS = 11
STARTUP_TARGET = 0.2
#: (row label, input, output layout); the first is the main table's.
SCENARIOS = [
    ("zarr v3 input (zstd), v3 output", "main", "main"),
    ("zarr v2 input, blosc (lz4, shuffle)", "v2-blosc", "main"),
    ("zarr v2 input, zstd", "v2-zstd", "main"),
    ("zarr v3 input, sharded v3 output (128^3 shards)", "main", "sharded"),
]


def _inputs(work: Path, size: int, chunk: int) -> dict[str, Path]:
    import numcodecs

    main = work / "input.zarr"
    shape = (size,) * 3
    if (
        not (main / "raw" / "zarr.json").exists()
        or zarr.open_array(str(main), path="raw").shape != shape
    ):
        print(f"generating {shape} float32 volume in {main} ...", flush=True)
        make_sample(main, "raw", shape, (chunk,) * 3, (8, 4, 4))
    paths = {"main": main}
    for name, compressor in (
        ("v2-blosc", numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1)),
        ("v2-zstd", numcodecs.Zstd(level=1)),
    ):
        path = work / f"input-{name}.zarr"
        if (
            not (path / "raw" / ".zarray").exists()
            or zarr.open_array(str(path), path="raw").shape != shape
        ):
            src = zarr.open_array(str(main), path="raw", mode="r")
            dst = zarr.create_array(
                str(path),
                name="raw",
                shape=src.shape,
                chunks=src.chunks,
                dtype=src.dtype,
                zarr_format=2,
                compressors=compressor,
                attributes=src.attrs.asdict(),
                overwrite=True,
            )
            for z in range(0, size, chunk):
                dst[z : z + chunk] = src[z : z + chunk]
        paths[name] = path
    return paths


def _block_limit_mb(work: Path, src: Path) -> tuple[tuple[int, ...], float]:
    """The worker's default block for this input, and the issue's memory limit per process:
    4x one block's input bytes plus 200 MB."""
    from threshold_worker.job import resolve
    from threshold_worker.params import JobParameters

    job = resolve(
        JobParameters(
            input_container=str(src),
            input_dataset="raw",
            output_container=str(work / "plan-only.zarr"),
            output_dataset="mask",
        )
    )
    block = tuple(job.plan.block_shape)
    return block, 4 * math.prod(block) * job.input.dtype.itemsize / 1e6 + 200


def _run(method: str, src: Path, dst: Path, threshold: float, n: int, layout: str) -> dict:
    """One method in a fresh process, writing to `dst`, which must not exist.

    Outputs are kept until the end of the benchmark: ext4 skips inodes deleted within the
    last seconds to minutes when it allocates new ones (find_inode_bit, recently_deleted): it made
    every file creation after a deleted run scan thousands of inodes -- a fifth of all CPU
    samples, and most of this machine's run-to-run noise.
    """
    os.sync()  # earlier runs' dirty pages are written back now, not during this one
    cmd = [sys.executable, str(HERE / "methods.py"), method, str(src), str(dst)]
    proc = subprocess.run(
        [*cmd, str(threshold), str(n), layout],
        capture_output=True,
        text=True,
        cwd=dst.parent,  # daisy writes its logs below the working directory
    )
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{method} ({layout}) failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _methods(
    scenario: int, only: list[str] | None, sweep: bool, pyramid: bool = True
) -> list[tuple[str, int]]:
    wanted = [(m, n) for _, m, n in MAIN] if scenario == 0 else []
    if scenario == 0 and sweep:
        wanted += [(m, n) for _, m, n in SWEEP]
    if scenario == 0 and pyramid:
        wanted += [(m, n) for _, m, n in PYRAMID]
    for t in TARGETS:
        wanted += [t.ours, t.other]
    wanted += [DIRECT, *ZARR_PIPELINE, *ZARRS_PIPELINE]
    unique = list(dict.fromkeys(wanted))
    return [r for r in unique if not only or r[0] in only]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--only", nargs="*", help="methods to run (default: all)")
    parser.add_argument("--no-scenarios", action="store_true", help="only the main v3 table")
    parser.add_argument("--no-sweep", action="store_true", help="leave out the sweep table")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--startup-runs", type=int, default=STARTUP_RUNS, help="rounds of the startup table"
    )
    parser.add_argument("--only-startup", action="store_true", help="only the startup table")
    parser.add_argument("--no-pyramid", action="store_true", help="leave out the pyramid table")
    parser.add_argument(
        "--only-pyramid", action="store_true", help="only the pyramid table (4 levels vs none)"
    )
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="threshold-bench-"))
    if args.only_pyramid:
        _only_pyramid(work, args)
        return
    startup = _startup_table(work, args.startup_runs)
    if args.only_startup:
        print("\n".join(startup))
        return
    inputs = _inputs(work, args.size, args.chunk)
    nbytes = args.size**3 * 4
    scenarios = SCENARIOS[:1] if args.no_scenarios else SCENARIOS
    # times[(scenario index, method, processes)] = one time per round
    times: dict[tuple[int, str, int], list[float]] = {}
    rss: dict[tuple[int, str, int], float] = {}
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=work))
    for repeat in range(args.repeats):
        for k, (row, input_name, layout) in enumerate(scenarios):
            methods = _methods(k, args.only, not args.no_sweep, not args.no_pyramid)
            shift = repeat % len(methods)  # no method always runs first, or after the same one
            for method, n in methods[shift:] + methods[:shift]:
                dst = runs / f"{repeat}-{k}-{method}-{n}.zarr"
                result = _run(method, inputs[input_name], dst, args.threshold, n, layout)
                key = (k, method, n)
                times.setdefault(key, []).append(result["seconds"])
                rss[key] = max(rss.get(key, 0.0), result["max_rss_mb"])
                print(
                    f"[{repeat + 1}/{args.repeats}] {row} / {method} ({n}): "
                    f"{result['seconds']:.2f} s",
                    flush=True,
                )

    def ratio(k: int, ours: tuple[str, int], *others: tuple[str, int]) -> float | None:
        """Median over rounds of the fastest other method's time over ours, each round's
        fastest: > 1, ours is faster."""
        a, bs = times.get((k, *ours)), [times.get((k, *o)) for o in others]
        if not a or not all(bs):
            return None
        return statistics.median(min(b[i] for b in bs) / x for i, x in enumerate(a))

    def best_seconds(k: int, *methods: tuple[str, int]) -> float | None:
        """Median over rounds of the fastest of `methods` in each round."""
        runs = [times.get((k, *m)) for m in methods]
        if not all(runs):
            return None
        return statistics.median(min(r[i] for r in runs) for i in range(len(runs[0])))

    shutil.rmtree(runs)
    block, limit = _block_limit_mb(work, inputs["main"])
    lines = [
        f"Input: {args.size}^3 float32, {args.chunk}^3 chunks, {nbytes / 1e6:.0f} MB; "
        f"{args.repeats} rounds; {platform.machine()}, {os.cpu_count()} cores. Times are medians;"
        " ratios are medians of the ratios within each round.",
        "",
        "| method (zarr v3 input, zstd) | median s | input MB/s | its time / this worker's | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, method, n in MAIN:
        if (0, method, n) not in times:
            continue
        m = statistics.median(times[(0, method, n)])
        r = ratio(0, OURS, (method, n))
        lines.append(
            f"| {label} | {m:.2f} | {nbytes / m / 1e6:.0f} | {_fmt(r)} | {rss[(0, method, n)]:.0f} |"
        )
    lines += [
        "",
        "This worker's throughput over each method's (> 1: this worker is faster), with the "
        "targets of issue 5; peak RSS is the largest of any one process of this worker, against "
        f"the limit of 4x one block's input ({'x'.join(map(str, block))} float32) + 200 MB = "
        f"{limit:.0f} MB:",
        "",
        "| input / output | this worker, 2 proc. s | "
        + " | ".join(t.column for t in TARGETS)
        + " | peak RSS MB |",
        "| --- | ---: | " + " | ".join("---:" for _ in TARGETS) + " | ---: |",
        "| target | | "
        + " | ".join(f">= {t.at_least:g}" if t.at_least else "" for t in TARGETS)
        + f" | < {limit:.0f} |",
    ]
    missed = []
    for k, (row, _, _) in enumerate(scenarios):
        if (k, *OURS) not in times:
            continue
        cells = []
        for t in TARGETS:
            r = ratio(k, t.ours, t.other)
            cells.append(_fmt(r))
            if r is not None and t.at_least is not None and r < t.at_least:
                missed.append(f"{row}: {t.column} {r:.2f} < {t.at_least:g}")
        peak = max(rss.get((k, *OURS), 0.0), rss.get((k, *OURS_1), 0.0))
        if peak >= limit:
            missed.append(f"{row}: peak RSS {peak:.0f} MB >= {limit:.0f} MB")
        ours = statistics.median(times[(k, *OURS)])
        lines.append(f"| {row} | {ours:.2f} | " + " | ".join(cells) + f" | {peak:.0f} |")
    lines += ["", "Targets missed: " + "; ".join(missed) if missed else "All targets met."]
    lines += [
        "",
        "The direct chunk path against this worker without it (same planning, markers and "
        "processes; zarr's codec pipeline moves the chunks), seconds and throughput ratios; the "
        f"direct path stays the default for a layout where it is >= {KEEP_DIRECT:g}x the best "
        "library path:",
        "",
        "| input / output | direct s | zarr-python pipeline s | zarrs pipeline s (best of 1, 2 "
        "proc.) | direct vs zarr-python | direct vs zarrs | direct vs best library path | "
        "direct kept |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for k, (row, _, _) in enumerate(scenarios):
        best = ratio(k, DIRECT, *ZARR_PIPELINE, *ZARRS_PIPELINE)
        if best is None:
            continue
        cells = [
            best_seconds(k, DIRECT),
            best_seconds(k, *ZARR_PIPELINE),
            best_seconds(k, *ZARRS_PIPELINE),
        ]
        lines.append(
            f"| {row} | "
            + " | ".join(_fmt(c) for c in cells)
            + f" | {_fmt(ratio(k, DIRECT, *ZARR_PIPELINE))}"
            + f" | {_fmt(ratio(k, DIRECT, *ZARRS_PIPELINE))} | {_fmt(best)} | "
            + ("yes" if best >= KEEP_DIRECT else "no: zarr's pipeline")
            + " |"
        )
    lines += _sweep_table(times, rss, ratio, block, nbytes)
    lines += _pyramid_table(times, rss, nbytes)
    lines += ["", *startup]
    table = "\n".join(lines)
    print()
    print(table)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(table + "\n")
    (out / "latest.json").write_text(
        json.dumps(
            {
                "rounds": args.repeats,
                "times": {f"{scenarios[k][0]} / {m} / {n}": v for (k, m, n), v in times.items()},
                "max_rss_mb": {f"{scenarios[k][0]} / {m} / {n}": v for (k, m, n), v in rss.items()},
            },
            indent=1,
        )
    )


def _sweep_table(
    times: dict, rss: dict, ratio: Callable, block: tuple[int, ...], nbytes: int
) -> list[str]:
    """9 thresholds in one pass against 9 runs; memory against 4x one block's input + 200 MB
    + the masks of one block (one per threshold)."""
    one_pass = (0, *SWEEP[0][1:])
    if one_pass not in times:
        return []
    voxels = math.prod(block)
    limit = 4 * voxels * 4 / 1e6 + 200 + SWEEP_THRESHOLDS * voxels / 1e6
    lines = [
        "",
        f"A threshold sweep ({SWEEP_THRESHOLDS} thresholds, 0.1 to 0.9) on the same input: "
        "one pass writes every mask from each decoded block. Peak RSS limit: 4x one block's "
        f"input + 200 MB + {SWEEP_THRESHOLDS} masks of one block = {limit:.0f} MB.",
        "",
        "| method | median s | input MB thresholded per s | its time / one pass | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    missed = []
    for label, method, n in SWEEP:
        key = (0, method, n)
        if key not in times:
            continue
        m = statistics.median(times[key])
        r = ratio(0, SWEEP[0][1:], (method, n))
        rate = SWEEP_THRESHOLDS * nbytes / m / 1e6
        lines.append(f"| {label} | {m:.2f} | {rate:.0f} | {_fmt(r)} | {rss[key]:.0f} |")
        if method == "sweep-separate" and r is not None and r < SWEEP_AT_LEAST:
            missed.append(f"one pass vs 9 runs {r:.2f} < {SWEEP_AT_LEAST:g}")
    if rss[one_pass] >= limit:
        missed.append(f"one pass peak RSS {rss[one_pass]:.0f} MB >= {limit:.0f} MB")
    floors = [(0, "sweep-floor", 2), (0, "sweep-floor-separate", 2)]
    if all(key in times for key in floors):
        gain = statistics.median(times[floors[1]]) / statistics.median(times[floors[0]])
        ours = statistics.median(times[one_pass]) / statistics.median(times[floors[0]])
        lines += [
            "",
            f"At the physical floor one pass is {gain:.2f}x faster than 9 passes: the most a "
            f"sweep can gain on this volume and machine (each mask still costs a threshold, an "
            f"encode and a file). This worker's one pass takes {ours:.2f}x its floor.",
        ]
    lines += [
        "",
        ("Sweep targets missed: " + "; ".join(missed))
        if missed
        else f"Sweep targets met (>= {SWEEP_AT_LEAST:g}x 9 runs, memory within the limit).",
    ]
    return lines


def _pyramid_table(times: dict, rss: dict, nbytes: int) -> list[str]:
    """4 pyramid levels written in the pass against an OME-Zarr mask without them."""
    base, levels = (0, *PYRAMID[0][1:]), (0, *PYRAMID[1][1:])
    if base not in times or levels not in times:
        return []

    def over_base(key: tuple[int, str, int]) -> float:
        """Median over rounds of this method's time over the time without levels."""
        return statistics.median(t / b for t, b in zip(times[key], times[base], strict=True))

    lines = [
        "",
        "An OME-Zarr mask with a pyramid of 4 levels (s1..s4, factor 2, `any`) written in the "
        "same pass, against the same mask without levels; the ratio is the median of each "
        f"round's time with levels over the time without (goal: < {PYRAMID_AT_MOST:g}).",
        "",
        "| method | median s | input MB/s | its time / no pyramid | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, method, n in PYRAMID:
        key = (0, method, n)
        m = statistics.median(times[key])
        lines.append(
            f"| {label} | {m:.2f} | {nbytes / m / 1e6:.0f} | {over_base(key):.2f} "
            f"| {rss[key]:.0f} |"
        )
    cost = over_base(levels)
    verdict = "met" if cost < PYRAMID_AT_MOST else f"missed: {cost:.2f}"
    lines += ["", f"Pyramid goal (< {PYRAMID_AT_MOST:g}x the time without): {verdict}."]
    return lines


def _only_pyramid(work: Path, args: argparse.Namespace) -> None:
    """The pyramid table alone (`--only-pyramid`), round-robin like the full run."""
    main = _inputs(work, args.size, args.chunk)["main"]
    times: dict[tuple[int, str, int], list[float]] = {}
    rss: dict[tuple[int, str, int], float] = {}
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=work))
    methods = [(m, n) for _, m, n in PYRAMID]
    for repeat in range(args.repeats):
        shift = repeat % len(methods)
        for method, n in methods[shift:] + methods[:shift]:
            result = _run(method, main, runs / f"{repeat}-{method}.zarr", args.threshold, n, "main")
            times.setdefault((0, method, n), []).append(result["seconds"])
            rss[(0, method, n)] = max(rss.get((0, method, n), 0.0), result["max_rss_mb"])
            print(f"[{repeat + 1}/{args.repeats}] {method} ({n}): {result['seconds']:.2f} s")

    shutil.rmtree(runs)
    table = "\n".join(
        [f"Input: {args.size}^3 float32, {args.chunk}^3 chunks; {args.repeats} rounds; "
         f"{platform.machine()}, {os.cpu_count()} cores.",
         *_pyramid_table(times, rss, args.size**3 * 4)]
    )  # fmt: skip
    print()
    print(table)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "pyramid.md").write_text(table + "\n")


def _startup_table(work: Path, runs: int) -> list[str]:
    """How soon a worker pod gets going: `start-worker --help`, and `start-worker` on a 1-block
    job (64^3 float32, v3 zstd, output prepared as the operator's prepare pod does), each from
    exec to exit, against `python -c 'import numpy'` timed in the same rounds. Exit, not the
    chunk's write, ends the clock: the stricter measure, a few ms more. Ratios are medians of
    each round's ratio. The package is byte-compiled first, as pip compiles an installed wheel
    and the image's build does: an editable install run with PYTHONDONTWRITEBYTECODE (as on
    the CI machines) would otherwise compile every module on every start."""
    import threshold_worker

    compileall.compile_dir(Path(threshold_worker.__file__).parent, quiet=1)
    exe = Path(sys.executable).with_name("threshold-worker")
    script = "import sys; from threshold_worker.commands import console; sys.exit(console())"
    worker = [str(exe)] if exe.exists() else [sys.executable, "-c", script]
    root = work / "startup.zarr"
    make_sample(root, "raw", (64,) * 3, (64,) * 3, (8, 4, 4))
    job = ["-ic", str(root), "-id", "raw", "-oc", str(root), "-od", "mask", "-th", "0.5",
           "--partitions", "1", "--overwrite"]  # fmt: skip
    subprocess.run([*worker, "prepare", *job], check=True, capture_output=True)
    one_block = [*worker, "start-worker", *job[:-1], "--partition", "0"]
    # The libraries a worker is built on, loaded and left as the script leaves (gc.freeze):
    # its floor, and what it would be without zarr (and fsspec, which UPath loads).
    frozen = "; import gc; gc.freeze()"
    no_zarr = "import numpy, numcodecs.zstd, click, pydantic, threshold_worker.params"
    numpy = "python -c 'import numpy'"
    floor = "libraries: the above, zarr and upath (the floor of this worker)"
    first_block = "threshold-worker start-worker, 1-block job (first block written, exit)"
    commands = {
        numpy: [sys.executable, "-c", "import numpy"],
        "libraries without zarr: numpy, numcodecs, click, pydantic, the job model": [
            sys.executable,
            "-c",
            no_zarr + frozen,
        ],
        floor: [sys.executable, "-c", no_zarr + ", zarr, upath" + frozen],
        "threshold-worker start-worker --help": [*worker, "start-worker", "--help"],
        first_block: one_block,
    }
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "worker")}  # the floors' model
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            shutil.rmtree(root / "mask" / ".threshold-done", ignore_errors=True)  # redo the block
            start = time.perf_counter()
            done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            times[name].append(time.perf_counter() - start)
            if name == first_block and not done.stdout.startswith("1 blocks processed"):
                raise SystemExit(f"startup: the block was not processed: {done.stdout}")
    baseline = times[numpy]
    lines = [
        f"Startup: each command from exec to exit, {runs} rounds, medians; the ratio is to "
        "`python -c 'import numpy'` in the same round (target: the worker's first block "
        f"within {STARTUP_TARGET:g} s).",
        "",
        "| command | median s | / import numpy |",
        "| --- | ---: | ---: |",
    ]
    for name, values in times.items():
        ratio = statistics.median(v / n for v, n in zip(values, baseline, strict=True))
        lines.append(f"| {name} | {statistics.median(values):.3f} | {ratio:.1f} |")
    first = statistics.median(times[first_block])
    above = first - statistics.median(times[floor])
    verdict = "met" if first <= STARTUP_TARGET else f"missed: {first:.3f} s"
    return [
        *lines,
        "",
        f"Startup target ({STARTUP_TARGET:g} s to the first block): {verdict}; "
        f"{above:.3f} s above the floor of the libraries it loads.",
    ]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
