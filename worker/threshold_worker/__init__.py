"""threshold_worker: DaCapo's `threshold_worker` and `local_array_store` on zarr-python 3.

The names of `dacapo.blockwise.threshold_worker` are kept here, at the top level:
`ZarrArray`, `LocalArrayIdentifier`, `create_compute_context`, `cli`, `start_worker`,
`start_worker_fn`, `spawn_worker`, `read_write_conflict` and `fit`. `LocalArrayStore`
lives in `threshold_worker.store`, as in `dacapo.store.local_array_store`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .arrays import ZarrArray, ZarrArrayConfig
from .cli import cli
from .compute import create_compute_context
from .errors import InputError
from .job import JobSpec
from .plan import DEFAULT_FIT, Plan
from .store import LocalArrayIdentifier, LocalArrayStore, LocalContainerIdentifier
from .worker import spawn_worker, start_worker, start_worker_fn

logger = logging.getLogger(__name__)

#: Blocks never overlap, so reads never see another block's writes.
read_write_conflict: bool = False
#: Default handling of border blocks. DaCapo's "valid" skipped partial border blocks,
#: leaving voxels unprocessed; "shrink" clips them to the ROI. "valid" stays available.
fit: str = DEFAULT_FIT
#: This module's location, as in the seed.
path = Path(__file__).parent

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "JobSpec",
    "LocalArrayIdentifier",
    "LocalArrayStore",
    "LocalContainerIdentifier",
    "Plan",
    "ZarrArray",
    "ZarrArrayConfig",
    "cli",
    "create_compute_context",
    "fit",
    "path",
    "read_write_conflict",
    "spawn_worker",
    "start_worker",
    "start_worker_fn",
]
