"""zarr-python's private API is used in one module only, on the zarr versions it was tested
with."""

from __future__ import annotations

import ast
import asyncio
import tomllib
from pathlib import Path

import pytest
import zarr
from packaging.requirements import Requirement

from threshold_worker import zarr_internals

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = ROOT / "worker" / "threshold_worker" / "zarr_internals.py"
SOURCES = ("worker", "operator", "benchmarks", "tests")


def private_zarr_imports(source: str) -> list[int]:
    """Lines that import from `zarr.core`, at any depth, in any spelling."""

    def private(name: str) -> bool:
        return name == "zarr.core" or name.startswith("zarr.core.")

    def imports_private(node: ast.AST) -> bool:
        if isinstance(node, ast.Import):
            return any(private(alias.name) for alias in node.names)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            return private(node.module) or (
                node.module == "zarr" and any(a.name == "core" for a in node.names)
            )
        return False

    return [node.lineno for node in ast.walk(ast.parse(source)) if imports_private(node)]


def test_the_scan_finds_every_spelling():
    source = "\n".join(
        [
            "import zarr",
            "from zarr.core.sync import sync",
            "import zarr.core.buffer as b",
            "from zarr import core",
            "def f():",
            "    from zarr.core import indexing",
            "from zarr.codecs import ZstdCodec",
            "from zarr import config",
            "from .core import x",
        ]
    )
    assert private_zarr_imports(source) == [2, 3, 4, 6]


def test_only_the_adapter_imports_zarr_core():
    offenders = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == ADAPTER:
                continue
            for line in private_zarr_imports(path.read_text()):
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert offenders == [], "import these through threshold_worker/zarr_internals.py"
    assert private_zarr_imports(ADAPTER.read_text())  # the scan does see the adapter's


def test_installed_zarr_is_inside_the_pin():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == "zarr"]
    assert len(pins) == 1
    spec = pins[0].specifier
    assert any(s.operator == "<" for s in spec), "zarr needs an upper bound: zarr.core is private"
    assert spec.contains(zarr.__version__), f"zarr {zarr.__version__} is outside {spec}"


def test_morton_order_is_zarrs_shard_order():
    assert zarr_internals.morton_order((2, 2)) == ((0, 0), (1, 0), (0, 1), (1, 1))
    # Not a power of two: coordinates beyond the shard are skipped, none repeated.
    order = zarr_internals.morton_order((3, 2))
    assert order == ((0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (2, 1))


def test_run_returns_the_coroutines_result_and_raises_its_error():
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        raise KeyError("k")

    assert zarr_internals.run(answer()) == 42
    with pytest.raises(KeyError):
        zarr_internals.run(fail())
