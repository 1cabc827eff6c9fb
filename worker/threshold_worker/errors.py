"""Errors that carry a message meant for the person who wrote the job.

Each is one line that names the field or path, what is wrong and what to do; the CLI
prints it and exits with the error's code. Code 2 means no retry can fix it (the
Kubernetes pod failure policy then fails the index at once); code 1 means it may pass (the
Job retries the pod, which resumes).
"""

from __future__ import annotations

from typing import Any


class WorkerError(Exception):
    """An error with a one-line message for the user and the exit code it ends with."""

    exit_code = 1

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)

    def __reduce__(self) -> tuple[Any, ...]:
        # Worker processes send their errors to the parent pickled; subclasses take other
        # arguments, so rebuild from the fields rather than from the constructor.
        return (_rebuild, (type(self), self.field, self.problem))


def _rebuild(cls: type[WorkerError], field: str, problem: str) -> WorkerError:
    error = cls.__new__(cls)
    WorkerError.__init__(error, field, problem)
    return error


class JobError(WorkerError):
    """The job cannot go on as written; a retry would fail the same way."""

    exit_code = 2


class InputError(JobError, ValueError):
    """Bad input, found before anything was written: storage is untouched."""


class PlanChanged(InputError):
    """A partition plans other than its job's prepare step did: the input or the job
    changed since, and no retry of the partition makes them agree."""


class OutputConflict(JobError):
    """The output belongs to, or is being written by, another job."""


class OutputTaken(OutputConflict):
    """The output holds another job's result (or a replacement not finished): only a job
    that replaces it, never a rerun or a partition, can write there."""


class StorageError(JobError):
    """Storage refuses for a reason only a person can fix: no space, no permission, no
    credentials, a symlink inside the output. Finished blocks keep their done-markers, so
    the same command resumes once the cause is fixed."""


class Terminated(BaseException):
    """SIGTERM: a pod being deleted or preempted, or a user stopping a run. A BaseException,
    like KeyboardInterrupt, so that no `except Exception` swallows it on the way out."""


#: What zarr's codecs raise for stored bytes they cannot decode (a damaged chunk).
CODEC_ERRORS = (RuntimeError, ValueError, TypeError)


class DamagedInput(JobError):
    """Stored bytes of the input that its codec cannot decode: damaged, not unreachable."""

    def __init__(self, where: str, error: BaseException) -> None:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        super().__init__(
            "input_dataset",
            f"{where} cannot be decoded ({type(error).__name__}: {detail}); the input is "
            "damaged there: rewrite it, or leave that region out with --roi-offset/--roi-shape",
        )


class StorageUnavailable(WorkerError):
    """Storage kept failing in ways that may pass (network, throttling) through all the
    worker's retries: exit 1, so that the Job retries the pod later."""


#: What a partition that cannot go on without a new prepare step says to do (the operator:
#: create the ThresholdJob again).
PREPARE_AGAIN = "prepare the job again (`threshold-worker prepare`, then its partitions)"

#: How a BlocksFailed message ends: what to do next on one machine (the operator says it
#: in a ThresholdJob's terms).
RERUN = (
    "`threshold-worker status` lists them; fix the cause, then rerun the same command: it "
    "processes only the blocks not done"
)


class BlocksFailed(WorkerError):
    """The run processed every block it could; some failed in a way that concerns them
    alone (damaged input) and are recorded in the failure ledger (`ledger`). Exit 3: not
    2, since the rest of the job is done and a rerun after the fix does only those blocks."""

    exit_code = 3
    #: What the run did (`worker.Stats`, or the local engine's `Summary`), when known.
    stats: Any = None
    summary: Any = None


class OutputWrong(WorkerError):
    """A verifying pass found blocks whose output differs from `input > threshold`. Their
    done-markers are taken back, so exit 1: the retry (the Job's, or a rerun) rewrites
    exactly them."""


class WorkerDied(WorkerError):
    """A worker process was killed (out of memory, most often): exit 1, resumable."""


def first_error(error: Any, prefix: str = "") -> str:
    """A pydantic ValidationError as one line: `prefix.field.path: message`."""
    first = error.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
    message = first["msg"].removeprefix("Value error, ")
    where = ".".join(p for p in (prefix, loc) if p)
    return f"{where}: {message}" if where else message
