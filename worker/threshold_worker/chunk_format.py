"""How an array's chunks are keyed and encoded, read from its metadata document alone.

The document is `zarr.json` (v3) or `.zarray` (v2) as JSON, or zarr-python's `to_dict()` of
the same metadata: so the direct chunk path (chunkio.py) needs zarr only to fetch it, and a
caller that reads the JSON itself needs no zarr at all. Accepted, everything else is None
(zarr's codec pipeline moves those chunks):

- dtype: bool, int, uint or float; fill value a number, a boolean, `null` (v2: zero, as
  zarr-python reads it) or "NaN"/"Infinity"/"-Infinity";
- v3: a regular chunk grid, the `default` or `v2` key encoding, no storage transformers, and
  the codecs `bytes` (either endian) + optionally `zstd`, or (reading only) `blosc`/`gzip`;
  for outputs also `sharding_indexed` around that chain, its index `bytes` (little) + `crc32c`;
- v2: C order, no filters, one numcodecs compressor or none (writing: zstd, blosc, lz4, zlib).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numcodecs
import numpy as np

from .errors import DamagedInput

V2_WRITABLE = ("zstd", "blosc", "lz4", "zlib")
V3_READ_ONLY = {"blosc": numcodecs.Blosc, "gzip": numcodecs.GZip}
SPECIAL_FLOATS = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}


@dataclass(frozen=True)
class ChunkFormat:
    """How one array's chunks are keyed and encoded."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype  # with the stored byte order
    fill_value: Any
    codec: Any  # numcodecs codec or None
    prefix: str  # the array's path in its store, with a trailing "/" (or "")
    separator: str
    v3_default_keys: bool  # keys "c/0/1" (v3 `default`) rather than "0.1" (v2 style)

    def key(self, coords: Sequence[int]) -> str:
        """The chunk's key, as zarr-python encodes it."""
        if self.v3_default_keys:
            return self.prefix + self.separator.join(map(str, ("c", *coords)))
        return self.prefix + (self.separator.join(map(str, coords)) or "0")

    def decode(self, data: Any, out: np.ndarray | None = None, key: str = "") -> np.ndarray:
        """The chunk as an array; into `out` (a reused buffer) when given, which saves the
        page faults of a fresh megabyte per chunk -- a third of the decode time."""
        try:
            return self._decode(data, out)
        except Exception as e:  # a damaged chunk: no retry makes it decodable
            raise DamagedInput(key or "a chunk", e) from None

    def _decode(self, data: Any, out: np.ndarray | None) -> np.ndarray:
        if self.codec is None:
            view = np.frombuffer(data, dtype=self.dtype).reshape(self.chunks)
            if out is None:
                return view
            out[...] = view
            return out
        if out is None:
            return np.frombuffer(self.codec.decode(data), dtype=self.dtype).reshape(self.chunks)
        self.codec.decode(data, out=out)
        return out

    def encode(self, chunk: np.ndarray) -> bytes:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        return bytes(self.codec.encode(chunk)) if self.codec is not None else chunk.tobytes()


@dataclass(frozen=True)
class ShardLayout:
    """zarr v3 sharding of an output: inner chunks in Morton order, empty ones left out,
    then an index of (offset, nbytes) uint64 pairs with a CRC32C, as zarr writes it."""

    shard: tuple[int, ...]
    inner: ChunkFormat
    order: tuple[tuple[int, ...], ...]
    index_at_start: bool

    def encode(self, parts: dict[tuple[int, ...], bytes]) -> bytes | None:
        """A shard from its non-empty inner chunks; None when all are empty."""
        import google_crc32c

        per_shard = tuple(s // c for s, c in zip(self.shard, self.inner.chunks, strict=True))
        index = np.full((*per_shard, 2), 2**64 - 1, dtype="<u8")
        chunks, pos = [], 0
        for coords in self.order:
            data = parts.get(coords)
            if data:
                index[coords] = (pos, len(data))
                chunks.append(data)
                pos += len(data)
        if not chunks:
            return None

        def index_bytes() -> bytes:
            raw = index.tobytes()
            return raw + np.array([google_crc32c.value(raw)], dtype=np.uint32).tobytes()

        if self.index_at_start:
            head = index_bytes()
            index[index[..., 0] != 2**64 - 1, 0] += len(head)
            return index_bytes() + b"".join(chunks)
        return b"".join(chunks) + index_bytes()


def _config(codec: Mapping[str, Any]) -> Mapping[str, Any]:
    return codec.get("configuration") or {}


def _fill_value(value: Any, dtype: np.dtype) -> Any:
    """The fill value as zarr-python reads it (a scalar of the array's dtype), or None."""
    if value is None:
        return np.zeros((), dtype=dtype)[()]
    if isinstance(value, str):
        if value not in SPECIAL_FLOATS or dtype.kind != "f":
            return None  # hex-encoded floats and the like: zarr's to decode
        value = SPECIAL_FLOATS[value]
    elif not isinstance(value, (bool, int, float)):
        return None
    return np.array(value, dtype=dtype.newbyteorder("="))[()]


def _v3_chain(codecs: Sequence[Mapping[str, Any]], dtype: np.dtype, writing: bool) -> Any:
    """(stored dtype, numcodecs codec or None) for `bytes` + optional zstd/blosc/gzip."""
    if not codecs or codecs[0].get("name") != "bytes" or len(codecs) > 2:
        return None
    endian = _config(codecs[0]).get("endian")
    if endian not in (None, "little", "big"):
        return None
    stored = dtype.newbyteorder(">" if endian == "big" else "<")
    if len(codecs) == 1:
        return stored, None
    name, config = codecs[1].get("name"), _config(codecs[1])
    if name == "zstd":
        return stored, numcodecs.Zstd(level=config["level"], checksum=config["checksum"])
    if name in V3_READ_ONLY and not writing:
        return stored, V3_READ_ONLY[name]()
    return None


def _v3_keys(doc: Mapping[str, Any]) -> tuple[str, bool] | None:
    encoding = doc.get("chunk_key_encoding") or {}
    name, separator = encoding.get("name"), _config(encoding).get("separator")
    if name == "default" and separator in ("/", ".", None):
        return separator or "/", True
    if name == "v2" and separator in ("/", ".", None):
        return separator or ".", False
    return None


def chunk_format(doc: Mapping[str, Any], path: str, writing: bool) -> ChunkFormat | None:
    """The format of the array at `path` (in its store) that `doc` describes, or None
    where zarr must move its chunks (see the module docstring)."""
    fmt = _chunk_format(doc, path, writing)
    return fmt[0] if fmt is not None else None


def _chunk_format(
    doc: Mapping[str, Any], path: str, writing: bool, sharded: bool = False
) -> tuple[ChunkFormat, Mapping[str, Any] | None] | None:
    """The format, and the sharding codec's configuration where `sharded` allows one."""
    try:
        prefix = f"{path}/" if path else ""
        shape = tuple(int(n) for n in doc["shape"])
        if doc.get("zarr_format") == 2:
            dtype = np.dtype(doc["dtype"])
            compressor = doc.get("compressor")
            if doc.get("filters") or doc.get("order", "C") != "C":
                return None
            if writing and compressor is not None and compressor.get("id") not in V2_WRITABLE:
                return None
            codec = numcodecs.get_codec(dict(compressor)) if compressor is not None else None
            chunks, stored, sharding = tuple(doc["chunks"]), dtype, None
            keys: tuple[str, bool] | None = (doc.get("dimension_separator") or ".", False)
        elif doc.get("zarr_format") == 3 and doc.get("node_type") == "array":
            dtype = np.dtype(doc["data_type"]) if isinstance(doc["data_type"], str) else None
            grid = doc.get("chunk_grid") or {}
            if dtype is None or grid.get("name") != "regular" or doc.get("storage_transformers"):
                return None
            chunks = tuple(int(n) for n in _config(grid)["chunk_shape"])
            codecs = list(doc["codecs"])
            sharding = None
            if sharded and len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed":
                sharding = _config(codecs[0])
                chunks = tuple(int(n) for n in sharding["chunk_shape"])
                codecs = list(sharding["codecs"])
            mapped = _v3_chain(codecs, dtype, writing)
            if mapped is None:
                return None
            stored, codec = mapped
            keys = _v3_keys(doc)
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None  # a document this reading does not understand: zarr's to judge
    fill = _fill_value(doc.get("fill_value"), stored)
    if dtype.kind not in "biuf" or keys is None or fill is None:
        return None
    return ChunkFormat(shape, chunks, stored, fill, codec, prefix, *keys), sharding


def shard_layout(doc: Mapping[str, Any], path: str) -> ShardLayout | None:
    """The shard layout of a sharded v3 output that `doc` describes, or None."""
    try:
        import google_crc32c  # noqa: F401  -- zarr's own checksum library
    except ImportError:
        return None
    found = _chunk_format(doc, path, writing=True, sharded=True)
    if found is None or found[1] is None:
        return None
    inner, sharding = found
    index = list(sharding.get("index_codecs") or ())
    if not (
        len(index) == 2
        and index[0].get("name") == "bytes"
        and _config(index[0]).get("endian") in (None, "little")
        and index[1].get("name") == "crc32c"
        and sharding.get("index_location", "end") in ("start", "end")
    ):
        return None
    shard = tuple(int(n) for n in _config(doc["chunk_grid"])["chunk_shape"])
    if any(s % c for s, c in zip(shard, inner.chunks, strict=True)):
        return None
    from .zarr_internals import morton_order  # sharded outputs only (zarr's own order)

    per_shard = tuple(s // c for s, c in zip(shard, inner.chunks, strict=True))
    return ShardLayout(
        shard=shard,
        inner=inner,
        order=morton_order(per_shard),
        index_at_start=sharding.get("index_location") == "start",
    )
