"""threshold_worker: DaCapo's `threshold_worker` and `local_array_store` on zarr-python 3.

The names of `dacapo.blockwise.threshold_worker` are kept here, at the top level:
`ZarrArray`, `LocalArrayIdentifier`, `create_compute_context`, `cli`, `start_worker`,
`start_worker_fn`, `spawn_worker`, `read_write_conflict` and `fit`. `LocalArrayStore`
lives in `threshold_worker.store`, as in `dacapo.store.local_array_store`.

Names are imported when first used (PEP 562), so that importing the package, or one light
module of it (the operator imports `params` and `store`), does not load zarr and numcodecs.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from .plan import DEFAULT_FIT

logger = logging.getLogger(__name__)

#: Blocks never overlap, so reads never see another block's writes.
read_write_conflict: bool = False
#: Default handling of border blocks. DaCapo's "valid" skipped partial border blocks,
#: leaving voxels unprocessed; "shrink" clips them to the ROI. "valid" stays available.
fit: str = DEFAULT_FIT
#: This module's location, as in the seed.
path = Path(__file__).parent

__version__ = "0.1.0"

#: name -> the module that holds it
_LAZY = {
    "InputError": "errors",
    "JobParameters": "params",
    "LocalArrayIdentifier": "store",
    "LocalArrayStore": "store",
    "LocalContainerIdentifier": "store",
    "Plan": "plan",
    "ZarrArray": "arrays",
    "ZarrArrayConfig": "arrays",
    "cli": "commands",
    "create_compute_context": "compute",
    "spawn_worker": "compute",
    "start_worker": "worker",
    "start_worker_fn": "worker",
}

__all__ = [*sorted(_LAZY), "fit", "path", "read_write_conflict"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
