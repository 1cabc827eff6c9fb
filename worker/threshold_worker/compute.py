"""Compute contexts: where `spawn_worker` runs a job (DaCapo's name for it).

`create_compute_context()` reads the options file, the first that exists of
`$THRESHOLD_OPTIONS_FILE`, `./threshold.yaml` and
`~/.config/threshold-operator/threshold.yaml`:

    compute_context:
      type: Local          # or Kubernetes
      config:
        num_workers: 4

Without a file the context is `Local` with one process per core. Other types are found
through the entry point group `threshold_worker.compute_contexts`: `Kubernetes` is the
operator's (`threshold_operator.compute`), so this package never imports the operator.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError, first_error
from .params import JobParameters, seed_threshold

ENTRY_POINTS = "threshold_worker.compute_contexts"

OPTIONS_ENV = "THRESHOLD_OPTIONS_FILE"
logger = logging.getLogger(__name__)


def options_paths() -> list[Path]:
    paths = []
    if os.environ.get(OPTIONS_ENV):
        paths.append(Path(os.environ[OPTIONS_ENV]))
    paths.append(Path.cwd() / "threshold.yaml")
    paths.append(Path.home() / ".config" / "threshold-operator" / "threshold.yaml")
    return paths


class ComputeContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def spawn(self, params: JobParameters) -> Callable[[], Any]:
        raise NotImplementedError


class LocalComputeContext(ComputeContext):
    """Processes on this machine."""

    type: Literal["Local"] = "Local"
    num_workers: int | None = Field(default=None, ge=1, description="processes; default all cores")

    def spawn(self, params: JobParameters) -> Callable[[], Any]:
        from .local import run_local

        def run() -> Any:
            return run_local(params, self.num_workers, progress=False)

        return run


def contexts() -> dict[str, Any]:
    """Compute context types by name: Local, and the registered ones (not yet imported)."""
    found: dict[str, Any] = {"Local": LocalComputeContext}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
        found.setdefault(entry.name, entry)
    return found


def _load(kind: str, entry: Any, where: str) -> type[ComputeContext]:
    if isinstance(entry, type):
        return entry
    try:
        return entry.load()
    except ImportError as e:
        raise InputError(
            f"{where}: compute_context.type",
            f"{kind!r} needs what it is built on ({e}); install it with: "
            "pip install 'threshold-operator[operator]'",
        ) from None


def compute_context_from_options(options: Any, where: str) -> ComputeContext:
    if options is None:
        return LocalComputeContext()
    if not isinstance(options, dict):
        raise InputError(where, f"holds {type(options).__name__}; expected a mapping")
    section = options.get("compute_context")
    if section is None:
        return LocalComputeContext()
    if not isinstance(section, dict):
        raise InputError(f"{where}: compute_context", "must be a mapping with 'type' and 'config'")
    kind = section.get("type", "Local")
    known = contexts()
    if kind not in known:
        raise InputError(
            f"{where}: compute_context.type",
            f"{kind!r} is unknown; expected one of {', '.join(known)}",
        )
    context_type = _load(kind, known[kind], where)
    config = section.get("config") or {}
    if not isinstance(config, dict):
        raise InputError(f"{where}: compute_context.config", "must be a mapping")
    try:
        return context_type(**config)
    except ValidationError as e:
        raise InputError(f"{where}: compute_context.config", first_error(e)) from None
    except TypeError as e:
        raise InputError(f"{where}: compute_context.config", str(e)) from None


def create_compute_context() -> ComputeContext:
    """The compute context of the first options file found (Local without one)."""
    explicit = os.environ.get(OPTIONS_ENV)
    for path in options_paths():
        try:
            found = path.is_file()
            text = path.read_text() if found else ""
        except OSError as e:  # e.g. another user's home: an optional file it cannot read
            if explicit and path == Path(explicit):
                raise InputError(OPTIONS_ENV, f"cannot read {path}: {e.strerror}") from None
            logger.warning("options file %s cannot be read (%s); skipped", path, e.strerror)
            continue
        if found:
            try:
                options = yaml.safe_load(text)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                at = f" at line {mark.line + 1}" if mark else ""
                raise InputError(f"options file {path}", f"is not valid YAML{at}") from None
            return compute_context_from_options(options, f"options file {path}")
        if path == Path(os.environ.get(OPTIONS_ENV, "")) and os.environ.get(OPTIONS_ENV):
            raise InputError(OPTIONS_ENV, f"names {path}, which does not exist")
    return LocalComputeContext()


def spawn_worker(
    input_array_identifier: Any,
    output_array_identifier: Any,
    threshold: float = 0.0,
    **options: Any,
) -> Callable[[], Any]:
    """A callable that runs the whole job on the configured compute context.

    Locally that is `threshold-worker run` in this process with N worker processes; on
    Kubernetes it creates a ThresholdJob and waits for it. The threshold is passed on in
    both cases (DaCapo's local path dropped it). `options` are the other fields of
    `JobParameters`.
    """
    params = JobParameters(
        input_container=str(input_array_identifier.container),
        input_dataset=input_array_identifier.dataset,
        output_container=str(output_array_identifier.container),
        output_dataset=output_array_identifier.dataset,
        **seed_threshold(threshold, options),
    )
    return create_compute_context().spawn(params)
