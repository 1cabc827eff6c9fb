"""Two layers, one direction: the worker knows nothing of Kubernetes, neither package has
an import cycle, and each side loads only what it uses (the operator no zarr, the worker's
help no zarr either)."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = {
    "threshold_worker": ROOT / "worker" / "threshold_worker",
    "threshold_operator": ROOT / "operator" / "threshold_operator",
}
KUBERNETES = ("threshold_operator", "kopf", "kubernetes", "prometheus_client")


def imports(package: str) -> dict[str, set[str]]:
    """module -> the modules it imports, at any depth of its code (lazy imports count)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGES[package].glob("*.py")):
        module = package if path.stem == "__init__" else f"{package}.{path.stem}"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = f"{package}.{node.module}" if node.module else package
                    found |= {f"{base}.{a.name}" for a in node.names} if not node.module else {base}
                elif node.module:
                    found.add(node.module)
        graph[module] = found
    return graph


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    graph = imports(package)
    inside = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    try:
        list(graphlib.TopologicalSorter(inside).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")


def test_the_worker_never_imports_kubernetes_or_the_operator():
    for module, deps in imports("threshold_worker").items():
        bad = sorted(d for d in deps if d.split(".")[0] in KUBERNETES)
        assert not bad, f"{module} imports {bad}"


def loaded(code: str) -> set[str]:
    """Top-level packages a fresh interpreter has loaded after `code`."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {name.split(".")[0] for name in out.split()}


def test_the_operator_loads_no_zarr():
    modules = loaded("import threshold_operator.handlers, threshold_operator.cli")
    assert not modules & {"zarr", "numcodecs"}, modules & {"zarr", "numcodecs"}


def test_the_worker_package_and_its_help_load_no_zarr():
    modules = loaded(
        "import threshold_worker, threshold_worker.params, threshold_worker.store\n"
        "from threshold_worker.commands import cli"
    )
    assert not modules & {"zarr", "numcodecs", "kopf", "kubernetes"}


def test_without_the_operator_the_kubernetes_context_says_what_to_install(monkeypatch):
    from threshold_worker.compute import compute_context_from_options
    from threshold_worker.errors import InputError

    monkeypatch.setitem(sys.modules, "kubernetes", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "threshold_operator.compute", raising=False)
    monkeypatch.delitem(sys.modules, "threshold_operator.kube", raising=False)
    with pytest.raises(InputError, match=r"pip install 'threshold-operator\[operator\]'"):
        compute_context_from_options({"compute_context": {"type": "Kubernetes"}}, "options")
