"""`make bench`: threshold one volume with every method a user might pick, in one run.

Methods run round-robin, each in a fresh process, `--repeats` times; the table gives
medians, input MB/s, and each method's time relative to this worker with 2 processes
(> 1 means this worker is faster). Results go to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zarr

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "worker"))

from threshold_worker.sample import make_sample  # noqa: E402

RUNS = [  # (label, method, processes)
    ("threshold-worker run, 2 processes", "this-worker", 2),
    ("threshold-worker run, 1 process", "this-worker", 1),
    ("dask.array from_zarr > t, to_zarr (2 threads)", "dask", 2),
    ("DaCapo-style daisy + funlib.persistence (2 workers)", "daisy", 2),
    ("zarr-python loop over 128^3 blocks (1 process)", "zarr-loop", 1),
    ("tensorstore loop over 128^3 blocks (default threads)", "tensorstore", 0),
    ("floor: raw chunk files + numcodecs, 2 processes", "floor", 2),
    ("floor: raw chunk files + numcodecs, 1 process", "floor", 1),
]
REFERENCE = "threshold-worker run, 2 processes"
#: Other storage formats: the same comparisons, 2 processes/threads, one row each.
SCENARIOS = {
    "zarr v2 input, blosc (lz4, shuffle)": ("v2-blosc", "main"),
    "zarr v2 input, zstd": ("v2-zstd", "main"),
    "zarr v3 input, sharded v3 output (128^3 shards)": ("main", "sharded"),
}
SCENARIO_RUNS = [("this-worker", 2), ("floor", 2), ("dask", 2), ("daisy", 2), ("tensorstore", 0)]


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
        if not (path / "raw" / ".zarray").exists():
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


def _run(method: str, src: Path, dst: Path, threshold: float, n: int, scenario: str) -> dict:
    shutil.rmtree(dst, ignore_errors=True)
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "methods.py"),
            method,
            str(src),
            str(dst),
            str(threshold),
            str(n),
            scenario,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{method} ({scenario}) failed")
    time.sleep(0.2)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--only", nargs="*", help="methods to run (default: all)")
    parser.add_argument("--no-scenarios", action="store_true", help="only the main v3 table")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="threshold-bench-"))
    inputs = _inputs(work, args.size, args.chunk)
    nbytes = args.size**3 * 4
    runs = [r for r in RUNS if not args.only or r[1] in args.only]
    times: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    rss: dict[str, float] = {}
    scenario_times: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for label, method, n in runs:
            result = _run(
                method, inputs["main"], work / f"out-{method}-{n}.zarr", args.threshold, n, "main"
            )
            times[label].append(result["seconds"])
            rss[label] = max(rss.get(label, 0.0), result["max_rss_mb"])
            print(f"[{repeat + 1}/{args.repeats}] {label}: {result['seconds']:.2f} s", flush=True)
        if args.no_scenarios:
            continue
        for row, (input_name, scenario) in SCENARIOS.items():
            for method, n in SCENARIO_RUNS:
                result = _run(
                    method,
                    inputs[input_name],
                    work / f"out-{method}-{scenario}.zarr",
                    args.threshold,
                    n,
                    scenario,
                )
                scenario_times.setdefault((row, method), []).append(result["seconds"])
                if method == "this-worker":
                    rss[row] = max(rss.get(row, 0.0), result["max_rss_mb"])
                print(
                    f"[{repeat + 1}/{args.repeats}] {row} / {method}: {result['seconds']:.2f} s",
                    flush=True,
                )

    medians = {label: statistics.median(v) for label, v in times.items()}
    ref = medians.get(REFERENCE)
    lines = [
        f"Input: {args.size}^3 float32, {args.chunk}^3 chunks, zarr v3 default codecs (zstd), "
        f"{nbytes / 1e6:.0f} MB; median of {args.repeats} runs; {platform.machine()}, "
        f"{os.cpu_count()} cores.",
        "",
        "| method | median s | input MB/s | its time / this worker's (2 processes) | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, _, _ in runs:
        m = medians[label]
        ratio = f"{m / ref:.2f}" if ref else "-"
        lines.append(f"| {label} | {m:.2f} | {nbytes / m / 1e6:.0f} | {ratio} | {rss[label]:.0f} |")
    for n in (2, 1):
        ours = medians.get(f"threshold-worker run, {n} process{'es' if n > 1 else ''}")
        floor = medians.get(
            f"floor: raw chunk files + numcodecs, {n} process{'es' if n > 1 else ''}"
        )
        if ours and floor:
            lines.append("")
            lines.append(
                f"With {n} process{'es' if n > 1 else ''} this worker reaches "
                f"{floor / ours:.2f}x the throughput of the floor."
            )
    if scenario_times:
        lines += [
            "",
            "Other formats, 2 processes or threads each; throughput of this worker relative to each method "
            "(> 1: this worker is faster):",
            "",
            "| input / output | this worker s | MB/s | vs floor | vs dask | vs DaCapo-style | vs tensorstore | peak RSS MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in SCENARIOS:
            med = {m: statistics.median(scenario_times[(row, m)]) for m, _ in SCENARIO_RUNS}
            ours = med["this-worker"]
            lines.append(
                f"| {row} | {ours:.2f} | {nbytes / ours / 1e6:.0f} | {med['floor'] / ours:.2f} | "
                f"{med['dask'] / ours:.2f} | {med['daisy'] / ours:.2f} | {med['tensorstore'] / ours:.2f} | "
                f"{rss[row]:.0f} |"
            )
    table = "\n".join(lines)
    print()
    print(table)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(table + "\n")
    (out / "latest.json").write_text(
        json.dumps(
            {
                "times": times,
                "medians": medians,
                "max_rss_mb": rss,
                "scenarios": {f"{r} / {m}": v for (r, m), v in scenario_times.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
