"""The operator benchmark's machinery at small scale (`make bench-operator` runs it with
hundreds of ThresholdJobs), and the Job simulator's no-worker pods it relies on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import blobs, run_cli, write_array
from job_simulator import NoWorker
from threshold_worker.commands import TERMINATION_REPORT

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))

import operator_scale

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_a_sweep_runs_to_succeeded_and_finished_jobs_cost_no_reads():
    """Five ThresholdJobs, the operator in its own process: all Succeeded, and once they
    are, not one request of the operator about a ThresholdJob, a Job or a pod."""
    result = operator_scale.run_size(
        5, idle_seconds=3, pod_seconds=0.1, interval=5.0, settle_seconds=1.0, log=lambda _: None
    )
    assert result["succeeded"] == 5
    assert result["simulator_errors"] == []
    finished = result["finished"]
    assert finished["per_job_requests"] == 0, finished["by_kind"]
    assert finished["requests"] == finished["watches"]  # at most a watch reconnecting
    running = result["running"]
    assert running["by_kind"]["create jobs"] == 10  # a prepare and a work Job each
    assert running["by_kind"]["patch thresholdjobs/status"] >= 5 * 3  # Preparing..Succeeded
    assert 0 < result["operator"]["peak_rss_mb"] < 250
    assert result["operator"]["cpu_seconds_total"] > 0


def test_the_table_has_a_row_per_size():
    window = operator_scale.window("finished", [], 60.0, 10).as_dict()
    row = {
        "thresholdjobs": 10,
        "requests_per_job_whole_run": 7.0,
        "running": {**window, "per_job_per_minute": 12.5},
        "finished": window,
        "operator": {
            "peak_rss_mb": 110.0,
            "cpu_seconds_running": 3.0,
            "cpu_seconds_finished_window": 0.01,
        },
    }
    lines = operator_scale.table([row]).splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("| 10 | 60 s | 7.0 | 12.50 | 0.000 (0 in 60 s) | 110 |")


def prepare_container(container: Path, *extra: str) -> dict[str, object]:
    return {
        "command": ["threshold-worker"],
        "args": [
            "prepare",
            *("-ic", str(container), "-id", "raw", "-oc", str(container), "-od", "mask"),
            *("-th", "0.5", "--block-shape", "8,16,16", "--partitions", "2", *extra),
            *("--termination-log", "/dev/termination-log"),
        ],
    }


def test_a_no_worker_prepare_pod_reports_the_workers_plan(tmp_path):
    """The plan in the termination message is the one the worker's `plan` makes; nothing is
    written to the output."""
    container = tmp_path / "in.zarr"
    write_array(container, "raw", blobs((16, 32, 32)), (8, 16, 16), voxel_size=(1, 1, 1))
    code, message = NoWorker(0).run(prepare_container(container))
    plan = run_cli(
        "plan", "--json", *("-ic", str(container), "-id", "raw", "-oc", str(container)),
        *("-od", "mask", "-th", "0.5", "--block-shape", "8,16,16", "--partitions", "2"),
    )  # fmt: skip
    assert plan.code == 0, plan.err
    expected = json.loads(plan.out)
    assert code == 0
    assert json.loads(message) == {k: expected[k] for k in TERMINATION_REPORT}
    assert json.loads(message)["total_blocks"] == 8
    assert not (container / "mask").exists()


def test_no_worker_pods_refuse_what_they_do_not_emulate(tmp_path):
    container = tmp_path / "in.zarr"
    write_array(container, "raw", blobs((16, 32, 32)), (8, 16, 16), voxel_size=(1, 1, 1))
    code, message = NoWorker(0).run(prepare_container(container, "--roi-shape", "1,1"))
    assert code == 2 and message.startswith("error: ")  # as the worker ends bad input
    with pytest.raises(ValueError, match="NoWorker runs no"):
        NoWorker(0).run({"command": ["threshold-worker"], "args": ["run", "-ic", "x"]})
    with pytest.raises(ValueError, match="NoWorker runs no"):
        NoWorker(0).run({"command": ["sh"], "args": ["prepare"]})
