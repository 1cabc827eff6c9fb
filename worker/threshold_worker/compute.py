"""Compute contexts: where `spawn_worker` runs a job.

`create_compute_context()` reads the options file, the first that exists of
`$THRESHOLD_OPTIONS_FILE`, `./threshold.yaml` and
`~/.config/threshold-operator/threshold.yaml`:

    compute_context:
      type: Local          # or Kubernetes
      config:
        num_workers: 4

Without a file the context is `Local` with one process per core.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError, first_error
from .job import JobSpec

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

    def spawn(self, spec: JobSpec) -> Callable[[], Any]:
        raise NotImplementedError


class LocalComputeContext(ComputeContext):
    """Processes on this machine."""

    type: Literal["Local"] = "Local"
    num_workers: int | None = Field(default=None, ge=1, description="processes; default all cores")

    def spawn(self, spec: JobSpec) -> Callable[[], Any]:
        from .local import run_local

        def run() -> Any:
            return run_local(spec, self.num_workers, progress=False)

        return run


class KubernetesComputeContext(ComputeContext):
    """A ThresholdJob on a cluster that runs threshold-operator."""

    type: Literal["Kubernetes"] = "Kubernetes"
    namespace: str = "default"
    compute_context: str = Field(default="cpu", description="name in the cluster's catalog")
    image: str | None = None
    parallelism: int | None = Field(default=None, ge=1)
    poll_seconds: float = Field(default=5.0, gt=0)
    timeout_seconds: float | None = Field(default=None, gt=0)

    def spawn(self, spec: JobSpec) -> Callable[[], Any]:
        try:
            from threshold_operator.client import spawn_threshold_job
        except ImportError as e:  # the operator package ships in the same distribution
            raise RuntimeError(
                f"the Kubernetes compute context needs threshold_operator: {e}"
            ) from e
        return spawn_threshold_job(self, spec)


CONTEXTS: dict[str, type[ComputeContext]] = {
    "Local": LocalComputeContext,
    "Kubernetes": KubernetesComputeContext,
}


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
    if kind not in CONTEXTS:
        raise InputError(
            f"{where}: compute_context.type",
            f"{kind!r} is unknown; expected one of {', '.join(CONTEXTS)}",
        )
    config = section.get("config") or {}
    if not isinstance(config, dict):
        raise InputError(f"{where}: compute_context.config", "must be a mapping")
    try:
        return CONTEXTS[kind](**config)
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
