"""A chunk format read from the metadata document as JSON is the one zarr-python's reading
gives: same keys, codec, dtype and fill value; anything else is left to zarr.

The direct path's bytes are compared with zarr's chunk by chunk in test_chunkio.py, which
builds its formats from zarr's `to_dict()`; here the JSON on disk must give the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import ShardingCodec, TransposeCodec

from conftest import ZARR_LAYOUTS
from threshold_worker import chunkio
from threshold_worker.chunk_format import chunk_format, shard_layout

LAYOUTS = {
    **ZARR_LAYOUTS,
    "v3 NaN fill": dict(zarr_format=3, fill_value=float("nan")),
    "v3 uint16": dict(zarr_format=3, dtype="u2", fill_value=7),
    "v2 blosc": dict(zarr_format=2, compressors=numcodecs.Blosc(cname="zstd", shuffle=2)),
    "v2 gzip": dict(zarr_format=2, compressors=numcodecs.GZip(level=1)),
    "v2 null fill": dict(zarr_format=2, fill_value=None),
    "v2 slash keys": dict(zarr_format=2, chunk_key_encoding={"name": "v2", "separator": "/"}),
}


def _create(path: Path, name: str, **kwargs) -> zarr.Array:
    """A 10x7x5 array in 4x4x4 chunks: edge chunks on every axis."""
    kwargs.setdefault("dtype", "f4")
    return zarr.create_array(str(path), name=name, shape=(10, 7, 5), chunks=(4, 4, 4), **kwargs)


def _document(path: Path, name: str) -> dict:
    """The metadata document as a reader of the JSON files sees it."""
    v3 = path / name / "zarr.json"
    if v3.exists():
        return json.loads(v3.read_text())
    return json.loads((path / name / ".zarray").read_text())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("writing", [False, True])
def test_the_json_document_gives_the_format_zarr_reads(tmp_path, layout, writing):
    array = _create(tmp_path / "a.zarr", "g/x", **LAYOUTS[layout])
    from_json = chunk_format(_document(tmp_path / "a.zarr", "g/x"), "g/x", writing)
    from_zarr = chunkio.chunk_format(array, writing)
    assert from_json == from_zarr or (
        from_json is not None and repr(from_json) == repr(from_zarr)  # NaN != NaN: compare as text
    )
    read_only = layout in ("v3 blosc", "v3 gzip", "v2 gzip")
    assert (from_json is None) == (writing and read_only)
    if from_json is None:
        return
    for coords in [(0, 0, 0), (2, 1, 1), (1, 0, 1)]:
        assert from_json.key(coords) == "g/x/" + array.metadata.encode_chunk_key(coords)
    assert from_json.dtype.newbyteorder("=") == np.dtype(array.dtype).newbyteorder("=")
    want_fill = np.zeros((), array.dtype)[()] if array.fill_value is None else array.fill_value
    np.testing.assert_array_equal(from_json.fill_value, want_fill)
    assert np.asarray(from_json.fill_value).dtype.kind == np.dtype(array.dtype).kind
    if array.metadata.zarr_format == 2 and array.metadata.compressor is not None:
        assert from_json.codec == array.metadata.compressor


AT_START = ShardingCodec(chunk_shape=(2, 2, 2), index_location="start")
SHARDED = {
    "index-at-end": dict(chunks=(2, 2, 2), shards=(4, 4, 4)),
    "index-at-start": dict(chunks=(4, 4, 4), serializer=AT_START, compressors=None),
}


@pytest.mark.parametrize("layout", SHARDED)
def test_shard_layouts_from_json_match_zarrs(tmp_path, layout):
    array = zarr.create_array(
        str(tmp_path / "s.zarr"), name="s", shape=(10, 7, 5), dtype="u1", **SHARDED[layout]
    )
    from_json = shard_layout(_document(tmp_path / "s.zarr", "s"), "s")
    assert from_json is not None and from_json == chunkio.shard_layout(array)
    assert from_json.shard == (4, 4, 4) and from_json.inner.chunks == (2, 2, 2)
    assert from_json.index_at_start == (layout == "index-at-start")
    assert chunk_format(_document(tmp_path / "s.zarr", "s"), "s", writing=False) is None


UNHANDLED = {
    "v3 transpose": dict(filters=[TransposeCodec(order=(2, 1, 0))]),
    "v3 complex": dict(dtype="c8"),
    "v2 filters": dict(zarr_format=2, filters=[numcodecs.Delta(dtype="f4")]),
    "v2 F order": dict(zarr_format=2, order="F"),
    "v2 object dtype": dict(zarr_format=2, dtype=str),
}


@pytest.mark.parametrize("layout", UNHANDLED)
def test_layouts_the_format_does_not_cover_are_left_to_zarr(tmp_path, layout):
    array = _create(tmp_path / "u.zarr", "u", **UNHANDLED[layout])
    assert chunk_format(_document(tmp_path / "u.zarr", "u"), "u", writing=False) is None
    assert chunkio.DirectBlockIO.maybe(array, []) is None  # the run goes through zarr


@pytest.mark.parametrize(
    "change",
    [
        {"chunk_grid": {"name": "rectilinear", "configuration": {}}},
        {"chunk_key_encoding": {"name": "custom"}},
        {"storage_transformers": [{"name": "x"}]},
        {"fill_value": "0x7fc00000"},  # hex-encoded float: zarr decodes it
        {"codecs": [{"name": "bytes"}, {"name": "crc32c"}]},
        {"data_type": {"name": "some.extension"}},
        {"node_type": "group"},
        {"zarr_format": 4},
        {"shape": None},
    ],
)
def test_documents_with_unknown_parts_are_left_to_zarr(tmp_path, change):
    _create(tmp_path / "d.zarr", "d")
    doc = {**_document(tmp_path / "d.zarr", "d"), **change}
    assert chunk_format(doc, "d", writing=False) is None
    assert shard_layout(doc, "d") is None


def test_reading_a_format_imports_no_zarr(tmp_path):
    _create(tmp_path / "n.zarr", "n")
    code = (
        "import json, sys\n"
        "from threshold_worker.chunk_format import chunk_format\n"
        f"doc = json.load(open({str(tmp_path / 'n.zarr' / 'n' / 'zarr.json')!r}))\n"
        "assert chunk_format(doc, 'n', writing=True) is not None\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('zarr', 'fsspec')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
