"""DaCapo's `LocalArrayStore`: where a run's validation and snapshot arrays live.

The layout is DaCapo's, exactly, so that a DaCapo run directory can be pointed at:
`basedir/<run>/validation.zarr` holding `<iteration>/<dataset>/prediction`,
`<iteration>/<dataset>/output/<parameters>`, `[<index>/]<criterion>` and
`inputs[/<index>]/{raw,gt}`, and `basedir/<run>/snapshot.zarr`. Containers are `UPath`s,
so `basedir` may be an object-store URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from upath import UPath

from .paths import as_upath

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalArrayIdentifier:
    """An array: a zarr container and a dataset path inside it."""

    container: UPath
    dataset: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "container", as_upath(self.container))
        object.__setattr__(self, "dataset", str(self.dataset).strip("/"))

    def __str__(self) -> str:
        return f"LocalArrayIdentifier({self.container}, {self.dataset})"


@dataclass(frozen=True)
class LocalContainerIdentifier:
    """A zarr container."""

    container: UPath

    def __post_init__(self) -> None:
        object.__setattr__(self, "container", as_upath(self.container))

    def array_identifier(self, dataset: str) -> LocalArrayIdentifier:
        return LocalArrayIdentifier(self.container, dataset)


class LocalArrayStore:
    """A local (or object-store) array store that uses zarr containers."""

    def __init__(self, basedir: UPath | Path | str) -> None:
        self.basedir = as_upath(basedir)

    def best_validation_array(
        self, run_name: str, criterion: str, index: str | None = None
    ) -> LocalArrayIdentifier:
        container = self.validation_container(run_name).container
        dataset = criterion if index is None else f"{index}/{criterion}"
        return LocalArrayIdentifier(container, dataset)

    def validation_prediction_array(
        self, run_name: str, iteration: int, dataset: str
    ) -> LocalArrayIdentifier:
        container = self.validation_container(run_name).container
        return LocalArrayIdentifier(container, f"{iteration}/{dataset}/prediction")

    def validation_output_array(
        self, run_name: str, iteration: int, parameters: str, dataset: str
    ) -> LocalArrayIdentifier:
        container = self.validation_container(run_name).container
        return LocalArrayIdentifier(container, f"{iteration}/{dataset}/output/{parameters}")

    def validation_input_arrays(
        self, run_name: str, index: str | None = None
    ) -> tuple[LocalArrayIdentifier, LocalArrayIdentifier]:
        container = self.validation_container(run_name).container
        prefix = "inputs" if index is None else f"inputs/{index}"
        return (
            LocalArrayIdentifier(container, f"{prefix}/raw"),
            LocalArrayIdentifier(container, f"{prefix}/gt"),
        )

    def snapshot_container(self, run_name: str) -> LocalContainerIdentifier:
        return LocalContainerIdentifier(self._run_dir(run_name) / "snapshot.zarr")

    def validation_container(self, run_name: str) -> LocalContainerIdentifier:
        return LocalContainerIdentifier(self._run_dir(run_name) / "validation.zarr")

    def remove(self, array_identifier: LocalArrayIdentifier) -> None:
        """Delete one dataset; refuses anything that is not inside a `.zarr` container."""
        container = as_upath(array_identifier.container)
        dataset = array_identifier.dataset
        if not container.name.endswith(".zarr"):
            raise ValueError(
                f"container: {container} does not end in '.zarr'; refusing to delete from it"
            )
        if not dataset:
            raise ValueError(f"dataset: empty; refusing to delete all of {container}")
        from .storage import open_store
        from .zarr_internals import run

        store = open_store(container)

        async def _has_any() -> bool:
            async for _ in store.list_prefix(dataset + "/"):
                return True
            return False

        if not run(_has_any()):
            logger.warning("%s has no dataset %s: nothing to remove", container, dataset)
            return
        run(store.delete_dir(dataset))

    def _run_dir(self, run_name: str) -> UPath:
        return self.basedir / run_name
