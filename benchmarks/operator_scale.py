"""`make bench-operator`: hundreds of ThresholdJobs at once, and what the operator costs.

A sweep of a training run: N ThresholdJobs on the same input, each with its own threshold and
output, created at once. The API server is the operator tier's (tests/k8s_harness.py: kmock
with the chart's RBAC and kube-apiserver's admission); the Job controller is the tests' Job
simulator in its no-worker mode (pods run `--pod-seconds` and exit 0; the prepare pod still
reports the worker's real plan), so that the machine's cores go to the operator.

The operator runs in a process of its own, as the Helm chart runs it (`threshold-operator
run`, its ServiceAccount's kubeconfig), so its peak RSS (VmHWM) and CPU seconds (utime +
stime) are its own. Its API requests are counted in two windows: from the creation of the N
ThresholdJobs until all are Succeeded (pods running), and for `--idle-seconds` after that,
once its last passes are done (every ThresholdJob finished). Each size runs on a fresh
cluster and a fresh operator. A markdown table is printed; JSON goes to
benchmarks/results/.

Name: not `operator.py`, which would shadow the standard library's `operator` module for
anything run from this folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent
for folder in ("tests", "operator", "worker"):
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))

from k8s_emulator import Call  # noqa: E402
from k8s_harness import EmulatedCluster, JobSimulator, create_threshold_job  # noqa: E402

RESULTS = HERE / "results"
#: Reads that scale with ThresholdJobs: any request of these that is not a watch stream.
PER_JOB_RESOURCES = ("thresholdjobs", "thresholdjobs/status", "jobs", "pods", "events")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Window:
    """The operator's requests in one stretch of time."""

    name: str
    seconds: float
    jobs: int
    requests: int = 0
    per_job_requests: int = 0  # non-watch requests on the resources of PER_JOB_RESOURCES
    watches: int = 0  # watch streams opened (one per resource type, and reconnections)
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def per_job_per_minute(self) -> float:
        """API requests per ThresholdJob per minute."""
        return self.requests / self.jobs / (self.seconds / 60) if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_job_per_minute": round(self.per_job_per_minute, 3)}


def window(name: str, calls: Sequence[Call], seconds: float, jobs: int) -> Window:
    kinds = Counter(f"{c.verb} {c.resource}" for c in calls)
    return Window(
        name,
        seconds,
        jobs,
        requests=len(calls),
        per_job_requests=sum(
            1 for c in calls if c.verb != "watch" and c.resource in PER_JOB_RESOURCES
        ),
        watches=sum(1 for c in calls if c.verb == "watch"),
        by_kind=dict(sorted(kinds.items())),
    )


@dataclass
class ProcessCost:
    peak_rss_mb: float  # VmHWM: the largest resident set the process ever had
    rss_mb: float  # VmRSS when measured
    cpu_seconds: float  # utime + stime


def process_cost(pid: int) -> ProcessCost:
    """From /proc, for a process that is still running."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    kib = {k: int(status[k].split()[0]) for k in ("VmHWM", "VmRSS")}
    # Fields after the command (which is in parentheses and may hold spaces): utime, stime
    # are the 14th and 15th fields of the line.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return ProcessCost(kib["VmHWM"] / 1024, kib["VmRSS"] / 1024, cpu)


def sample_input(folder: Path) -> Path:
    """A small volume all the ThresholdJobs read: 64 x 64 x 64, chunks of 32^3."""
    from threshold_worker.sample import make_sample

    container = folder / "data" / "sweep.zarr"
    make_sample(container, "raw", shape=(64, 64, 64), chunks=(32, 32, 32))
    return container


def sweep_spec(container: Path, index: int, count: int) -> dict[str, Any]:
    """The index-th ThresholdJob of a sweep: same input, its own threshold and output."""
    return {
        "inputContainer": str(container),
        "inputDataset": "raw",
        "outputContainer": str(container),
        "outputDataset": f"sweep/mask_{index:04d}",
        "threshold": round((index + 1) / (count + 1), 6),
        "blockShape": [32, 32, 32],  # 2 x 2 x 2 = 8 blocks
        "partitions": 4,
        "parallelism": 2,  # two rounds of pods: the work Job's status changes in between
        "volumes": [{"claimName": "lab-data", "mountPath": str(container.parent)}],
    }


@contextmanager
def operator_process(
    kubeconfig: Path, log: Path, interval: float, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`threshold-operator run` as the chart's Deployment runs it (cluster-wide), with the
    operator's kubeconfig; this checkout's sources first on its path."""
    env = {
        **os.environ,
        **(extra_env or {}),
        "KUBECONFIG": str(kubeconfig),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "operator"), str(ROOT / "worker"), os.environ.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep),
    }
    command = [
        str(Path(sys.executable).parent / "threshold-operator"),
        "run",
        f"--interval={interval:g}",
        "--metrics-port=0",
        "--liveness-port=0",
        "--log-format=plain",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes],
    every: float = 0.25,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited ({proc.returncode}) waiting for {what}")
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def admin_client(cluster: EmulatedCluster, path: Path, pool: int) -> Any:
    """A kubernetes client for the test side, with room for `pool` connections at once."""
    from kubernetes import client, config

    configuration = client.Configuration()
    kubeconfig = str(cluster.kubeconfig(path, user="admin"))
    config.load_kube_config(kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)


def phases(api: Any) -> Counter[str]:
    from kubernetes import client

    from threshold_operator.api import GROUP, PLURAL, VERSION

    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL
    )["items"]
    return Counter((i.get("status") or {}).get("phase", "") for i in items)


def settled(calls: Sequence[Call], user: str, names: Sequence[str]) -> bool:
    """Every ThresholdJob was read by the operator after its last status write: the pass that
    the write's own watch event started has run."""
    last_write: dict[str, int] = {}
    last_read: dict[str, int] = {}
    for i, c in enumerate(calls):
        if c.user != user:
            continue
        if c.verb == "patch" and c.resource == "thresholdjobs/status":
            last_write[c.name] = i
        elif c.verb == "get" and c.resource == "thresholdjobs":
            last_read[c.name] = i
    return all(last_read.get(n, -1) > last_write.get(n, 0) for n in names)


def quiet(cluster: EmulatedCluster, seconds: float, timeout: float) -> None:
    """Wait until the operator made no request for `seconds` (its last passes are done)."""
    user = cluster.operator_user.name
    deadline = time.monotonic() + timeout
    count, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = sum(1 for c in cluster.emulator.calls if c.user == user)
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the operator did not go quiet for {seconds:g} s in {timeout:g} s")


def run_size(
    count: int,
    *,
    idle_seconds: float,
    pod_seconds: float,
    interval: float,
    settle_seconds: float = 3.0,
    timeout: float = 1800.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One fresh cluster and operator; `count` ThresholdJobs created at once, run to
    Succeeded, then left alone for `idle_seconds`."""
    names = [f"sweep-{i:04d}" for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        folder = Path(tmp)
        container = sample_input(folder)
        with EmulatedCluster() as cluster:
            user = cluster.operator_user.name
            api = admin_client(cluster, folder / "admin.kubeconfig", pool=count + 8)
            operator_kubeconfig = cluster.kubeconfig(folder / "kubeconfig", user="operator")
            simulator = JobSimulator(api, poll=0.5, no_worker=pod_seconds, workers=count)
            operator_log = folder / "operator.log"
            with (
                simulator,
                operator_process(operator_kubeconfig, operator_log, interval) as proc,
            ):

                def mine() -> list[Call]:
                    return [c for c in cluster.emulator.calls if c.user == user]

                wait_until(
                    lambda: (
                        {"thresholdjobs", "jobs"}
                        <= {c.resource for c in mine() if c.verb == "watch"}
                    ),
                    60,
                    "the operator's watches",
                    proc,
                )
                start_cost = process_cost(proc.pid)
                first = len(cluster.emulator.calls)
                started = time.monotonic()
                with ThreadPoolExecutor(8) as pool:
                    list(
                        pool.map(
                            lambda i: create_threshold_job(
                                api, names[i], sweep_spec(container, i, count)
                            ),
                            range(count),
                        )
                    )
                log(f"{count} ThresholdJobs created in {time.monotonic() - started:.1f} s")
                last_report = [0.0]

                def done() -> bool:
                    seen = phases(api)
                    if time.monotonic() - last_report[0] > 15:
                        last_report[0] = time.monotonic()
                        log(f"  {time.monotonic() - started:5.0f} s: {dict(seen)}")
                    if seen.get("Failed"):
                        raise RuntimeError(f"ThresholdJobs failed: {dict(seen)}")
                    return seen.get("Succeeded", 0) == count

                wait_until(done, timeout, f"{count} ThresholdJobs to succeed", proc, every=1.0)
                running_seconds = time.monotonic() - started
                running_calls = [c for c in cluster.emulator.calls[first:] if c.user == user]
                run_cost = process_cost(proc.pid)
                log(f"all {count} Succeeded after {running_seconds:.1f} s")

                wait_until(
                    lambda: settled(cluster.emulator.calls, user, names),
                    120,
                    "the passes after the last status writes",
                    proc,
                )
                quiet(cluster, settle_seconds, 120)
                idle_first = len(cluster.emulator.calls)
                idle_cost = process_cost(proc.pid)
                time.sleep(idle_seconds)
                idle_calls = [c for c in cluster.emulator.calls[idle_first:] if c.user == user]
                end_cost = process_cost(proc.pid)
                final = phases(api)
            errors = [repr(e) for e in simulator.errors]
            total_calls = [c for c in cluster.emulator.calls if c.user == user]
    running = window("running", running_calls, running_seconds, count)
    idle = window("finished", idle_calls, idle_seconds, count)
    return {
        "thresholdjobs": count,
        "succeeded": final.get("Succeeded", 0),
        "pod_seconds": pod_seconds,
        "interval": interval,
        "running": running.as_dict(),
        "finished": idle.as_dict(),
        "requests_per_job_whole_run": round(len(running_calls) / count, 2),
        "operator_requests_total": len(total_calls),
        "operator": {
            "peak_rss_mb": round(end_cost.peak_rss_mb, 1),
            "rss_mb_at_start": round(start_cost.rss_mb, 1),
            "rss_mb_all_finished": round(end_cost.rss_mb, 1),
            "cpu_seconds_total": round(end_cost.cpu_seconds, 2),
            "cpu_seconds_running": round(run_cost.cpu_seconds - start_cost.cpu_seconds, 2),
            "cpu_seconds_finished_window": round(end_cost.cpu_seconds - idle_cost.cpu_seconds, 3),
        },
        "simulator_errors": errors,
    }


def table(results: Sequence[dict[str, Any]]) -> str:
    rows = [
        "| ThresholdJobs | all Succeeded after | requests per job, whole run | requests / job / min while running | requests / job / min once finished | peak RSS MB | CPU s (running / finished window) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        op, run, fin = r["operator"], r["running"], r["finished"]
        rows.append(
            f"| {r['thresholdjobs']} | {run['seconds']:.0f} s | "
            f"{r['requests_per_job_whole_run']:.1f} | {run['per_job_per_minute']:.2f} | "
            f"{fin['per_job_per_minute']:.3f} ({fin['requests']} in {fin['seconds']:g} s) | "
            f"{op['peak_rss_mb']:.0f} | {op['cpu_seconds_running']:.1f} / "
            f"{op['cpu_seconds_finished_window']:.2f} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,300", help="ThresholdJobs per run, comma-separated")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--pod-seconds", type=float, default=2.0)
    parser.add_argument(
        "--interval", type=float, default=5.0, help="the operator's --interval (chart default)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "operator-scale.json")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    results = []
    for size in sizes:
        print(f"== {size} ThresholdJobs", flush=True)
        results.append(
            run_size(
                size,
                idle_seconds=args.idle_seconds,
                pod_seconds=args.pod_seconds,
                interval=args.interval,
                log=lambda text: print(text, flush=True),
            )
        )
    report = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(results))
    print()
    for r in results:
        print(f"{r['thresholdjobs']} jobs, once finished: {r['finished']['by_kind'] or 'nothing'}")
    print(f"load average before/after: {load_before} / {os.getloadavg()}; JSON: {args.out}")


if __name__ == "__main__":
    main()
