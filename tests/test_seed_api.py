"""DaCapo's names and signatures, kept: threshold_worker and local_array_store."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import numpy as np
import pytest
import zarr
from funlib.geometry import Coordinate, Roi
from upath import UPath

import threshold_worker
from conftest import assert_thresholded, blobs, write_array
from threshold_operator.compute import KubernetesComputeContext
from threshold_worker import (
    LocalArrayIdentifier,
    ZarrArray,
    create_compute_context,
    spawn_worker,
    start_worker,
    start_worker_fn,
)
from threshold_worker.arrays import ZarrArrayConfig
from threshold_worker.compute import LocalComputeContext
from threshold_worker.errors import InputError
from threshold_worker.store import LocalArrayStore, LocalContainerIdentifier


def test_module_attributes():
    assert threshold_worker.read_write_conflict is False
    assert threshold_worker.fit in ("shrink", "valid")
    assert (
        isinstance(threshold_worker.path, Path) and (threshold_worker.path / "worker.py").exists()
    )
    assert isinstance(threshold_worker.logger, logging.Logger)
    assert callable(threshold_worker.cli) and threshold_worker.cli.name == "cli"


def test_seed_signatures():
    params = list(inspect.signature(start_worker_fn).parameters)
    assert params[:6] == [
        "input_container",
        "input_dataset",
        "output_container",
        "output_dataset",
        "threshold",
        "return_io_loop",
    ]
    assert inspect.signature(start_worker_fn).parameters["threshold"].default == 0.0
    assert list(inspect.signature(start_worker).parameters)[:6] == params[:6]
    spawn = inspect.signature(spawn_worker).parameters
    assert list(spawn)[:3] == ["input_array_identifier", "output_array_identifier", "threshold"]
    # Anything beyond DaCapo's arguments is keyword-only: DaCapo's calls mean the same.
    extras = [p for p in spawn.values() if p.name not in list(spawn)[:3]]
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in extras)
    assert all(
        p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD)
        for p in list(inspect.signature(start_worker_fn).parameters.values())[6:]
    )
    create = inspect.signature(ZarrArray.create_from_array_identifier).parameters
    assert list(create) == [
        "array_identifier",
        "axes",
        "roi",
        "num_channels",
        "voxel_size",
        "dtype",
        "mode",
        "write_size",
        "name",
        "overwrite",
    ]
    assert create["mode"].default == "a"
    assert list(inspect.signature(ZarrArray.open_from_array_identifier).parameters) == [
        "array_identifier",
        "name",
    ]
    store = inspect.signature(LocalArrayStore.validation_output_array).parameters
    assert list(store) == ["self", "run_name", "iteration", "parameters", "dataset"]


def test_zarr_array_properties_and_roi_access(volume):
    container, data = volume
    array = ZarrArray.open_from_array_identifier(
        LocalArrayIdentifier(container, "raw"), name="pred"
    )
    assert array.name == "pred" and array.dataset == "raw" and array.file_name == UPath(container)
    assert array.mode == "a" and array.writable
    assert array.axes == ["z", "y", "x"] and array.spatial_axes == ["z", "y", "x"]
    assert array.dims == 3 and array.num_channels is None
    assert array.voxel_size == Coordinate(8, 4, 4)
    assert array.roi == Roi((80, 40, 0), (320, 192, 224))
    assert array.dtype == np.float32
    assert isinstance(array.data, zarr.Array)
    assert array.attrs["voxel_size"] == [8, 4, 4]
    roi = Roi((96, 48, 8), (16, 8, 12))
    np.testing.assert_array_equal(array[roi], data[2:4, 2:4, 2:5])
    array[roi] = np.ones((2, 2, 3), np.float32)
    assert (array[roi] == 1).all()
    assert "raw" in str(array) and "raw" in repr(array)
    with pytest.raises(InputError, match="outside"):
        array[Roi((0, 0, 0), (8, 4, 4))]
    with pytest.raises(InputError, match="voxel grid"):
        array[Roi((81, 40, 0), (8, 4, 4))]


def test_open_missing_array_fails_at_open(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        ZarrArray.open_from_array_identifier(LocalArrayIdentifier(tmp_path / "none.zarr", "raw"))
    assert not (tmp_path / "none.zarr").exists()


def test_read_only_mode_refuses_writes(volume):
    container, _ = volume
    array = ZarrArray(ZarrArrayConfig(name="r", file_name=container, dataset="raw", mode="r"))
    assert not array.writable
    with pytest.raises(PermissionError):
        array[array.roi] = 0


def test_snap_to_grid_shrinks_roi(volume):
    container, _ = volume
    array = ZarrArray(
        ZarrArrayConfig(
            name="s", file_name=container, dataset="raw", snap_to_grid=Coordinate(64, 64, 64)
        )
    )
    assert array.roi == Roi((128, 64, 0), (256, 128, 192))  # z 80..400 -> 128..384


def test_create_from_array_identifier_with_channels(tmp_path):
    ident = LocalArrayIdentifier(tmp_path / "new.zarr", "0/val/prediction")
    roi = Roi((40, 0, 0), (80, 64, 64))
    array = ZarrArray.create_from_array_identifier(
        ident,
        ["c^", "z", "y", "x"],
        roi,
        2,
        Coordinate(8, 4, 4),
        np.float32,
        write_size=Coordinate(40, 32, 32),
        name="pred",
    )
    assert array.data.shape == (2, 10, 16, 16) and array.data.chunks == (2, 5, 8, 8)
    assert array.num_channels == 2 and array.axes == ["c^", "z", "y", "x"]
    assert array.roi == roi and array.voxel_size == Coordinate(8, 4, 4)
    array.add_metadata({"source": "test"})
    assert ZarrArray.open_from_array_identifier(ident).attrs["source"] == "test"
    again = ZarrArray.create_from_array_identifier(
        ident, ["c^", "z", "y", "x"], roi, 2, Coordinate(8, 4, 4), np.float32
    )
    assert again.attrs["source"] == "test"  # reused, not replaced
    with pytest.raises(InputError, match="exists with shape"):
        ZarrArray.create_from_array_identifier(
            ident, ["z", "y", "x"], roi, None, Coordinate(8, 4, 4), np.uint8
        )
    replaced = ZarrArray.create_from_array_identifier(
        ident, ["z", "y", "x"], roi, None, Coordinate(8, 4, 4), np.uint8, overwrite=True
    )
    assert replaced.data.shape == (10, 16, 16) and "source" not in replaced.attrs


def test_neuroglancer_helpers(volume):
    import neuroglancer

    container, _ = volume
    array = ZarrArray.open_from_array_identifier(LocalArrayIdentifier(container, "raw"))
    assert array._can_neuroglance()
    assert array._output_dimensions() == {"z": [8, "nm"], "y": [4, "nm"], "x": [4, "nm"]}
    assert array._transform_matrix() == [
        [8.0, 0.0, 0.0, 80.0],
        [0.0, 4.0, 0.0, 40.0],
        [0.0, 0.0, 4.0, 0.0],
    ]
    assert array._source_name() == "raw"
    source = array._neuroglancer_source()
    assert isinstance(source, neuroglancer.LocalVolume)
    assert list(source.voxel_offset) == [10, 10, 0]
    layer, kwargs = array._neuroglancer_layer()
    assert isinstance(layer, neuroglancer.ImageLayer) and kwargs["visible"]
    daisy_array = array._daisy_array()
    assert daisy_array.voxel_size == Coordinate(8, 4, 4) and daisy_array.roi == array.roi


def test_neuroglancer_missing_gives_clear_error(volume, monkeypatch):
    import sys

    container, _ = volume
    monkeypatch.setitem(sys.modules, "neuroglancer", None)
    array = ZarrArray.open_from_array_identifier(LocalArrayIdentifier(container, "raw"))
    with pytest.raises(ImportError, match="pip install neuroglancer"):
        array._neuroglancer_layer()


def test_local_array_store_layout(tmp_path):
    store = LocalArrayStore(tmp_path)
    run = tmp_path / "run1"
    assert store.validation_container("run1") == LocalContainerIdentifier(run / "validation.zarr")
    assert store.snapshot_container("run1").container == UPath(run / "snapshot.zarr")
    assert store.validation_prediction_array("run1", 1000, "val") == LocalArrayIdentifier(
        run / "validation.zarr", "1000/val/prediction"
    )
    assert store.validation_output_array(
        "run1", 1000, "threshold_0.5", "val"
    ) == LocalArrayIdentifier(run / "validation.zarr", "1000/val/output/threshold_0.5")
    assert store.best_validation_array("run1", "voi") == LocalArrayIdentifier(
        run / "validation.zarr", "voi"
    )
    assert store.best_validation_array("run1", "voi", "2") == LocalArrayIdentifier(
        run / "validation.zarr", "2/voi"
    )
    raw, gt = store.validation_input_arrays("run1")
    assert (raw.dataset, gt.dataset) == ("inputs/raw", "inputs/gt")
    raw, gt = store.validation_input_arrays("run1", "3")
    assert (raw.dataset, gt.dataset) == ("inputs/3/raw", "inputs/3/gt")
    assert str(raw) == f"LocalArrayIdentifier({run / 'validation.zarr'}, inputs/3/raw)"


def test_local_array_store_remove(tmp_path, caplog):
    store = LocalArrayStore(tmp_path)
    pred = store.validation_prediction_array("run1", 5, "val")
    keep = store.validation_output_array("run1", 5, "p", "val")
    write_array(pred.container.path, pred.dataset, blobs((8, 8, 8)), (4, 4, 4))
    write_array(keep.container.path, keep.dataset, blobs((8, 8, 8)), (4, 4, 4))
    store.remove(pred)
    assert not (Path(pred.container.path) / pred.dataset).exists()
    assert (Path(keep.container.path) / keep.dataset / "zarr.json").exists()
    with caplog.at_level(logging.WARNING):
        store.remove(pred)  # gone: warns, returns
    assert "nothing to remove" in caplog.text
    with pytest.raises(ValueError, match=r"does not end in '\.zarr'"):
        store.remove(LocalArrayIdentifier(tmp_path / "run1" / "plain_dir", "x"))


def test_start_worker_fn_runs_and_returns_io_loop(volume):
    container, data = volume
    loop = start_worker_fn(container, "raw", container, "mask", 0.5, return_io_loop=True)
    assert callable(loop) and not (container / "mask").exists()
    stats = loop()
    assert stats.processed > 0
    assert_thresholded(container, "mask", data, 0.5)
    assert start_worker_fn(container, "raw", container, "mask", 0.5).processed == 0


def test_spawn_worker_local_passes_the_threshold(volume, tmp_path, monkeypatch):
    container, data = volume
    monkeypatch.chdir(tmp_path)
    (tmp_path / "threshold.yaml").write_text(
        "compute_context:\n  type: Local\n  config: {num_workers: 1}\n"
    )
    run = spawn_worker(
        LocalArrayIdentifier(container, "raw"), LocalArrayIdentifier(container, "mask"), 0.8
    )
    summary = run()
    assert summary.workers == 1
    assert_thresholded(container, "mask", data, 0.8)


def test_create_compute_context_search_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("THRESHOLD_OPTIONS_FILE", raising=False)
    assert create_compute_context() == LocalComputeContext()
    home = tmp_path / "home" / ".config" / "threshold-operator"
    home.mkdir(parents=True)
    (home / "threshold.yaml").write_text(
        "compute_context: {type: Local, config: {num_workers: 3}}\n"
    )
    assert create_compute_context() == LocalComputeContext(num_workers=3)
    (tmp_path / "threshold.yaml").write_text(
        "compute_context:\n  type: Kubernetes\n  config: {namespace: lab, pool: gpu}\n"
    )
    context = create_compute_context()
    assert isinstance(context, KubernetesComputeContext)  # found through the entry point
    assert (context.namespace, context.pool) == ("lab", "gpu")
    env_file = tmp_path / "elsewhere.yaml"
    env_file.write_text("compute_context: {type: Local, config: {num_workers: 2}}\n")
    monkeypatch.setenv("THRESHOLD_OPTIONS_FILE", str(env_file))
    assert create_compute_context() == LocalComputeContext(num_workers=2)
    monkeypatch.setenv("THRESHOLD_OPTIONS_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(InputError, match="does not exist"):
        create_compute_context()
