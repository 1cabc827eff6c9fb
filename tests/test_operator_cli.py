"""`threshold-operator` as a process: liveness, metrics, JSON logs, a bad catalog."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml
from click.testing import CliRunner

from conftest import _free_port
from k8s_harness import EmulatedCluster, create_threshold_job, wait_for
from threshold_operator.cli import cli
from threshold_operator.rbac import rules

BIN = Path(sys.executable).parent


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except OSError:
        return 0, ""


def test_operator_process_serves_liveness_metrics_and_json_logs(tmp_path):
    from kubernetes import config

    metrics, liveness = _free_port(), _free_port()
    with EmulatedCluster() as emulated:
        kubeconfig = emulated.kubeconfig(tmp_path / "kubeconfig", user="operator")
        admin = emulated.kubeconfig(tmp_path / "admin.kubeconfig", user="admin")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        proc = subprocess.Popen(
            [
                str(BIN / "threshold-operator"),
                "run",
                "--interval",
                "0.2",
                "--metrics-port",
                str(metrics),
                "--liveness-port",
                str(liveness),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for(lambda: _get(f"http://127.0.0.1:{liveness}/healthz")[0] == 200, 30, "liveness")
            create_threshold_job(
                config.new_client_from_config(str(admin)),
                "m",
                {
                    "inputContainer": "/x.zarr",
                    "inputDataset": "a",
                    "outputContainer": "/x.zarr",
                    "outputDataset": "b",
                    "pool": "nope",
                },
            )
            wait_for(
                lambda: (
                    'threshold_jobs{phase="Failed"} 1.0'
                    in _get(f"http://127.0.0.1:{metrics}/metrics")[1]
                ),
                30,
                "the Failed job in /metrics",
            )
            text = _get(f"http://127.0.0.1:{metrics}/metrics")[1]
            assert "threshold_operator_reconciles_total" in text
            assert "threshold_operator_reconcile_errors_total 0.0" in text
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        mine = [c for c in emulated.calls if c.user == emulated.operator_user.name]
        assert mine and not [c for c in mine if c.code in (401, 403)]  # the chart's RBAC sufficed
    logs = [line for line in out.splitlines() if line.startswith("{")]
    assert logs, out
    records = [json.loads(line) for line in logs]
    assert all("message" in r for r in records)
    assert any((r.get("object") or {}).get("name") == "m" for r in records), records[-5:]


def test_bad_catalog_stops_the_operator_at_start(tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("pools: [cpu]\n")
    proc = subprocess.run(
        [str(BIN / "threshold-operator"), "run", "--catalog", str(catalog)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error: node-pool catalog {catalog}")


def test_rbac_command_prints_the_rules():
    result = CliRunner().invoke(cli, ["rbac"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output) == rules()
    verbs = {(r["apiGroups"][0], r["resources"][0]): set(r["verbs"]) for r in rules()}
    assert verbs[("batch", "jobs")] == {"create", "get", "patch", "list", "watch"}
    assert verbs[("", "pods")] == {"list"}
    assert verbs[("", "events")] == {"create", "list"}
    assert ("", "secrets") not in verbs  # the operator never touches user secrets


def test_python_dash_m_runs_each_command():
    """`python -m threshold_operator` and `python -m threshold_worker`, where no script is on
    PATH: the same commands, the same exit codes."""
    crd = subprocess.run(
        [sys.executable, "-m", "threshold_operator", "crd"], capture_output=True, text=True
    )
    assert crd.returncode == 0 and yaml.safe_load(crd.stdout)["kind"] == "CustomResourceDefinition"
    plan = subprocess.run(
        [sys.executable, "-m", "threshold_worker", "plan", "-ic", "/nonexistent", "-id", "x",
         "-oc", "/tmp/o.zarr", "-od", "m", "-th", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert plan.returncode == 2
    assert plan.stderr == "error: input_container: /nonexistent does not exist\n"
