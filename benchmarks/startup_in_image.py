"""The startup table of `benchmarks/run.py`, inside the worker image (what pods run).

    docker run --rm -v $PWD/benchmarks/startup_in_image.py:/s.py:ro \\
        --entrypoint python threshold-operator:test /s.py

Each command from exec to exit, 21 rounds, medians; ratios to `import numpy` in the same
round. The floors load the worker's libraries and leave as its console script does.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time

from threshold_worker.sample import make_sample

ROUNDS = 21
JOB = ["-ic", "/tmp/in.zarr", "-id", "raw", "-oc", "/tmp/out.zarr", "-od", "mask", "-th", "0.5",
       "--partitions", "1"]  # fmt: skip
ONE_BLOCK = ["threshold-worker", "start-worker", *JOB, "--partition", "0"]
FROZEN = "; import gc; gc.freeze()"
LIBRARIES = "import numpy, numcodecs.zstd, click, pydantic, threshold_worker.params"
COMMANDS = {
    "python -c 'import numpy'": ["python", "-c", "import numpy"],
    "libraries without zarr": ["python", "-c", LIBRARIES + FROZEN],
    "libraries with zarr and upath": ["python", "-c", LIBRARIES + ", zarr, upath" + FROZEN],
    "threshold-worker start-worker --help": ["threshold-worker", "start-worker", "--help"],
    "threshold-worker start-worker, 1-block job": ONE_BLOCK,
}


def main() -> None:
    make_sample("/tmp/in.zarr", "raw", (64, 64, 64), (64, 64, 64))
    subprocess.run(["threshold-worker", "prepare", *JOB], check=True, capture_output=True)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(ROUNDS):
        for name, command in COMMANDS.items():
            shutil.rmtree("/tmp/out.zarr/mask/.threshold-done", ignore_errors=True)
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    numpy = times["python -c 'import numpy'"]
    print("| command | median s | / import numpy |\n| --- | ---: | ---: |")
    for name, values in times.items():
        ratio = statistics.median(v / n for v, n in zip(values, numpy, strict=True))
        print(f"| {name} | {statistics.median(values):.3f} | {ratio:.1f} |")


if __name__ == "__main__":
    main()
