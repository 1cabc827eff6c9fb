"""`threshold-worker view`: a neuroglancer state checked against the arrays' geometry and
against neuroglancer's own Python state model, and a real HTTP server on 127.0.0.1 that
hands out chunks with the CORS headers a browser needs."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import neuroglancer
import numpy as np
import pytest
import zarr
from upath import UPath

from conftest import BIN, blobs, io_args, run_cli, write_array
from threshold_worker import view
from threshold_worker.metadata import AxisMetadata
from threshold_worker.storage import open_store

PREFIX = "https://neuroglancer-demo.appspot.com/#!"


def decode(url: str) -> dict[str, Any]:
    assert url.startswith(PREFIX)
    return json.loads(urllib.parse.unquote(url[len(PREFIX) :]))


@pytest.fixture
def job(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A v3 input with a channel axis, and its v2 OME-Zarr mask from a real run."""
    data = blobs((2, 16, 24, 32), seed=3)
    src = tmp_path / "in.zarr"
    write_array(src, "pred/raw", data, (2, 8, 8, 8), voxel_size=(8, 4, 4), offset=(80, 40, 0))
    out = tmp_path / "out.zarr"
    result = run_cli("run", *io_args(src, "pred/raw", out, "mask", 0.5), "--ome-zarr",
                     "--zarr-format", "2", "-n", "1")  # fmt: skip
    assert result.code == 0, result
    return src, out, data


def test_state_matches_the_arrays_geometry(job):
    src, out, _ = job
    result = run_cli("view", "-ic", str(src), "-id", "pred/raw", "-oc", str(out), "-od", "mask",
                     "--port", "8123")  # fmt: skip
    assert result.code == 0, result
    text, _, url = result.out.strip().rpartition("\n")
    state = json.loads(text)
    assert decode(url.strip()) == state
    assert "--serve" in result.err
    assert state["dimensions"] == {"z": [8e-9, "m"], "y": [4e-9, "m"], "x": [4e-9, "m"]}
    # the input's centre in voxels of the global dimensions: offset/voxel + shape/2
    assert state["position"] == [10 + 8, 10 + 12, 0 + 16]
    image, mask = state["layers"]
    assert (image["type"], mask["type"]) == ("image", "segmentation")
    assert image["source"][0]["url"] == "zarr3://http://127.0.0.1:8123/input/pred/raw"
    # the mask is an OME-Zarr image: neuroglancer reads its group, so every pyramid level,
    # with the geometry of its multiscales; a transform would replace that reading
    assert mask["source"][0] == {"url": "zarr2://http://127.0.0.1:8123/output/mask"}
    assert mask["segments"] == ["1"]
    t = image["source"][0]["transform"]
    assert t["outputDimensions"] == {
        "c0^": [1, ""],
        "z": [8e-9, "m"],
        "y": [4e-9, "m"],
        "x": [4e-9, "m"],
    }
    # the offset in voxels, less half a voxel: beside an OME-Zarr layer, whose translation
    # neuroglancer takes as voxel 0's centre, the funlib offset is read the same way
    assert [row[-1] for row in t["matrix"]] == [0, 9.5, 9.5, -0.5]
    assert [row[:-1] for row in t["matrix"]] == np.eye(4).tolist()
    # what neuroglancer makes of the mask's group agrees with the view's dimensions
    group = view.group_dimensions(UPath(out), "mask")
    assert group == {"z": [8e-9, "m"], "y": [4e-9, "m"], "x": [4e-9, "m"]}
    # neuroglancer's own state model reads it back unchanged
    parsed = neuroglancer.ViewerState(state)
    assert parsed.layers["mask"].source[0].url.startswith("zarr2://")
    assert parsed.layers["mask"].source[0].transform is None
    assert list(parsed.dimensions.scales) == [8e-9, 4e-9, 4e-9]
    assert parsed.layers["input"].source[0].transform.output_dimensions.names == (
        "c0^",
        "z",
        "y",
        "x",
    )
    again = neuroglancer.parse_url(url.strip().replace("/#!", "#!"))
    assert again.to_json()["layers"][1]["source"][0]["url"] == mask["source"][0]["url"]


def test_serve_hands_out_chunks_with_cors(job):
    src, out, data = job
    image = view.ViewArray.open(str(src), "pred/raw", "input")
    mask = view.ViewArray.open(str(out), "mask", "output")
    server = view.serve(view.roots(image, mask), port=0)
    view.in_background(server)
    try:
        urls = view.base_urls(server, "127.0.0.1", 0, ["input", "output"])
        assert urls["input"].startswith("http://127.0.0.1:")
        state = view.state(image, mask, urls)
        group_url = state["layers"][1]["source"][0]["url"].removeprefix("zarr2://")
        with urllib.request.urlopen(f"{group_url}/.zattrs") as r:
            paths = [d["path"] for d in json.load(r)["multiscales"][0]["datasets"]]
        assert paths == ["s0"]
        mask_url = f"{group_url}/s0"
        with urllib.request.urlopen(f"{mask_url}/.zarray") as r:
            meta = json.load(r)
            assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert meta["shape"] == [2, 16, 24, 32]
        sep = meta.get("dimension_separator", ".")
        # a chunk with foreground: decode it with the array's own codec and compare
        with urllib.request.urlopen(f"{mask_url}/{sep.join(['0', '1', '1', '1'])}") as r:
            raw = r.read()
        mask_array = zarr.open_array(str(out), path="mask/s0", mode="r")
        codec = mask_array.compressors[0] if mask_array.compressors else None
        decoded = np.frombuffer(codec.decode(raw) if codec else raw, dtype=np.uint8)
        c = meta["chunks"]
        want = (data[:, 8:16, 8:16, 8:16] > 0.5).astype(np.uint8)
        np.testing.assert_array_equal(decoded.reshape(c), want)
        # a byte range, as neuroglancer reads shard indexes
        req = urllib.request.Request(f"{mask_url}/.zarray", headers={"Range": "bytes=2-9"})
        on_disk = (out / "mask" / "s0" / ".zarray").read_bytes()
        with urllib.request.urlopen(req) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 2-9/{len(on_disk)}"
            assert r.read() == on_disk[2:10]
        # a CORS preflight
        req = urllib.request.Request(f"{mask_url}/.zarray", method="OPTIONS")
        with urllib.request.urlopen(req) as r:
            assert r.status == 204
            assert "GET" in r.headers["Access-Control-Allow-Methods"]
        # nothing outside the served containers
        base = urls["output"].rsplit("/", 1)[0]
        for path in ("/output/../in.zarr/pred/raw/zarr.json", "/elsewhere/x", "/"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path)
            assert e.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_view_serve_command_serves_until_stopped(job):
    src, out, _ = job
    proc = subprocess.Popen(
        [str(BIN / "threshold-worker"), "view", "-ic", str(src), "-id", "pred/raw",
         "-oc", str(out), "-od", "mask", "--serve", "--port", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        state = json.loads(proc.stdout.readline())
        url = state["layers"][0]["source"][0]["url"].removeprefix("zarr3://")
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/zarr.json") as r:
            assert json.load(r)["shape"] == [2, 16, 24, 32]
            assert r.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ome_levels_are_shown_through_their_image_groups(tmp_path):
    """An input level s1 of an ome-zarr-py image without units, and its --pyramid mask:
    both layers read their groups, in the view's unitless dimensions; no transform."""
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image

    root = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=3)
    write_image(blobs((16, 16, 16), seed=2), root, fmt=FormatV05(), axes=["z", "y", "x"],
                scale_factors=[{"z": 2, "y": 2, "x": 2}],
                storage_options={"chunks": (8, 8, 8)})  # fmt: skip
    out = tmp_path / "out.zarr"
    args = io_args(tmp_path / "in.zarr", "s1", out, "mask", 0.5)
    assert run_cli("run", *args, "--ome-zarr", "--pyramid", "1", "-n", "1").code == 0
    result = run_cli("view", *args[:-2], "--port", "8124", "--json")
    assert result.code == 0, result
    state = json.loads(result.out)
    # s1: 20 of 1e-1 of the unnamed unit, neuroglancer's 2 (no unit)
    assert state["dimensions"] == {"z": [2.0, ""], "y": [2.0, ""], "x": [2.0, ""]}
    image, mask = (layer["source"][0] for layer in state["layers"])
    assert image == {"url": "zarr3://http://127.0.0.1:8124/input"}  # the root is the image
    assert mask == {"url": "zarr3://http://127.0.0.1:8124/output/mask"}
    assert view.group_dimensions(UPath(out), "mask") == state["dimensions"]
    neuroglancer.ViewerState(state)


def test_a_group_in_other_units_falls_back_to_its_level(tmp_path):
    """A DaCapo input without units (shown in nm) and its OME-Zarr mask, whose axes have
    no unit: neuroglancer would read the group unitless, so the mask layer is s0 with the
    transform, as the input is."""
    write_array(tmp_path / "in.zarr", "raw", blobs((8, 8, 8), seed=1), (8, 8, 8))
    out = tmp_path / "out.zarr"
    args = io_args(tmp_path / "in.zarr", "raw", out, "mask", 0.5)
    assert run_cli("run", *args, "--ome-zarr", "-n", "1").code == 0
    state = json.loads(run_cli("view", *args[:-2], "--port", "8125", "--json").out)
    assert state["dimensions"]["z"] == [1e-9, "m"]
    assert view.group_dimensions(UPath(out), "mask")["z"] == [1.0, ""]
    mask = state["layers"][1]["source"][0]
    assert mask["url"] == "zarr3://http://127.0.0.1:8125/output/mask/s0"
    assert [row[-1] for row in mask["transform"]["matrix"]] == [0, 0, 0]


def _meta() -> AxisMetadata:
    return AxisMetadata(("z", "y", "x"), ("space",) * 3, (40, 4, 4), (400, 0, 8), ("nm",) * 3)


@pytest.mark.parametrize(
    ("container", "env", "url"),
    [
        ("s3://lab-bucket/run/val.zarr", {}, "zarr3://s3://lab-bucket/run/val.zarr/pred"),
        ("s3://lab-bucket/v.zarr", {"AWS_ENDPOINT_URL": "https://minio.lab:9000"},
         "zarr3://s3+https://minio.lab:9000/lab-bucket/v.zarr/pred"),
        ("gs://lab-bucket/v.zarr", {}, "zarr3://gs://lab-bucket/v.zarr/pred"),
    ],
)  # fmt: skip
def test_object_store_urls_need_no_server(monkeypatch, container, env, url):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    array = view.ViewArray(UPath(container), "pred", 3, (10, 10, 10), _meta())
    assert not view.needs_server(array, array)
    assert view.source_url(array) == url
    state = view.state(array, array)
    assert state["dimensions"]["z"] == [4e-8, "m"]
    assert state["layers"][0]["source"][0]["transform"]["matrix"][0][-1] == 10  # 400 / 40


def test_run_summary_prints_the_link_for_object_stores(s3_server):
    container = "s3://lab-data/view.zarr"
    store = open_store(UPath(container))  # s3_server put its endpoint and keys in the env
    data = blobs((8, 8, 8), seed=1)
    write_array(None, "raw", data, (8, 8, 8), voxel_size=(4, 4, 4), store=store)
    result = run_cli("run", *io_args(container, "raw", container, "mask", 0.5), "-n", "1",
                     env=s3_server)  # fmt: skip
    assert result.code == 0, result
    line = next(x for x in result.out.splitlines() if x.startswith("view"))
    state = decode(line.split()[1])
    endpoint = s3_server["AWS_ENDPOINT_URL"]
    assert state["layers"][0]["source"][0]["url"] == f"zarr3://s3+{endpoint}/lab-data/view.zarr/raw"
    assert (
        state["layers"][1]["source"][0]["url"] == f"zarr3://s3+{endpoint}/lab-data/view.zarr/mask"
    )
    assert state["dimensions"] == {"z": [4e-9, "m"], "y": [4e-9, "m"], "x": [4e-9, "m"]}
    # the URL's path is the bucket and the key of the mask's metadata (neuroglancer reads
    # it anonymously; moto's bucket is private, so the test asks with credentials)
    import boto3

    url = urllib.parse.urlsplit(state["layers"][1]["source"][0]["url"].removeprefix("zarr3://s3+"))
    bucket, key = url.path.lstrip("/").split("/", 1)
    s3 = boto3.client("s3", endpoint_url=f"{url.scheme}://{url.netloc}")
    document = s3.get_object(Bucket=bucket, Key=f"{key}/zarr.json")["Body"].read()
    assert json.loads(document)["shape"] == [8, 8, 8]


def test_run_summary_hints_at_view_serve_for_local_outputs(job):
    src, out, _ = job
    result = run_cli("run", *io_args(src, "pred/raw", out, "mask", 0.5), "--ome-zarr",
                     "--zarr-format", "2", "-n", "1")  # fmt: skip
    assert result.code == 0, result
    line = next(x for x in result.out.splitlines() if x.startswith("view"))
    assert line.endswith(f"-oc {out} -od mask --serve")
    assert "threshold-worker view -ic" in line


def test_the_prepare_pod_reports_the_link_for_object_stores(s3_server, tmp_path):
    """What a ThresholdJob's status.plan.viewer comes from: the prepare pod's termination
    message carries the link when neuroglancer can read both arrays (object stores), and
    stays within Kubernetes' 4096 bytes; for local data there is no link to give."""
    container = "s3://lab-data/prepared.zarr"
    store = open_store(UPath(container))  # s3_server put its endpoint and keys in the env
    write_array(None, "raw", blobs((8, 8, 8), seed=2), (8, 8, 8), voxel_size=(4, 4, 4), store=store)
    log = tmp_path / "termination-log"
    args = io_args(container, "raw", container, "mask", 0.5)
    result = run_cli("prepare", *args, "--termination-log", str(log), env=s3_server)
    assert result.code == 0, result
    report = json.loads(log.read_text())
    assert len(log.read_bytes()) <= 4096
    state = decode(report["viewer"])
    endpoint = s3_server["AWS_ENDPOINT_URL"]
    assert state["layers"][1]["source"][0]["url"] == (
        f"zarr3://s3+{endpoint}/lab-data/prepared.zarr/mask"
    )
    assert json.loads(result.out)["viewer"] == report["viewer"]


def test_the_prepare_pod_reports_no_link_for_local_data(job, tmp_path):
    src, _, _ = job
    log = tmp_path / "termination-log"
    args = io_args(src, "pred/raw", tmp_path / "new.zarr", "mask", 0.5)
    assert run_cli("prepare", *args, "--termination-log", str(log)).code == 0
    assert "viewer" not in json.loads(log.read_text())
