"""Which code moves a block's chunks: the direct path (chunkio.py) or zarr's codec pipeline.

`THRESHOLD_CHUNK_PATH` chooses, for every process of a run and every pod of a ThresholdJob
(set it in the job's `env`):

- `direct` (the default): the direct path wherever it covers the layout, zarr's codec
  pipeline elsewhere. `make bench` keeps it the default only where it is at least 1.2x the
  best library path of the same run; it was 2.2-3.6x in every layout measured (README,
  Performance). A layout where a run shows less should default to zarr's pipeline here.
- `zarr`: always zarr's codec pipeline. Which pipeline is zarr's own configuration: e.g.
  `ZARR_CODEC_PIPELINE__PATH=zarrs.ZarrsCodecPipeline` selects the Rust `zarrs` pipeline
  (PyPI `zarrs`).
"""

from __future__ import annotations

import os
from typing import Literal

import zarr

from .errors import JobError

ENV = "THRESHOLD_CHUNK_PATH"
ChunkPath = Literal["direct", "zarr"]
CHOICES: tuple[ChunkPath, ...] = ("direct", "zarr")


def requested() -> ChunkPath:
    """The chunk path this process was asked for; an unknown value stops the job."""
    text = os.environ.get(ENV, "direct").strip().lower() or "direct"
    for choice in CHOICES:
        if text == choice:
            return choice
    raise JobError(ENV, f"{text!r} is not one of {', '.join(CHOICES)}")


def pipeline_survives_fork() -> bool:
    """Whether worker processes may be forked from one that has opened arrays.

    zarr-python's own pipeline re-creates its event loop in a forked child. The `zarrs`
    pipeline does not survive a fork: a forked child hangs on its first block of several
    chunks once the parent has opened the arrays (zarrs 0.2.3; zarrs-python issue 171).
    Other pipelines are unknown. With those the local engine spawns its processes, which
    read zarr's configuration from the environment (`ZARR_CODEC_PIPELINE__PATH`), not from
    a `zarr.config.set` in the parent.
    """
    return str(zarr.config.get("codec_pipeline.path")).startswith("zarr.")
