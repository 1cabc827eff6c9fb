"""Storage errors, sorted into those that may pass and those only a person can fix.

Transient (retried with back-off in the worker, then exit 1, which a Kubernetes Job
retries): network errors of every client in the stack (builtin OSError/ConnectionError/
TimeoutError, botocore's connection and HTTP client errors, aiohttp's client errors),
throttling, I/O errors of network file systems. Fatal (one line naming the path and what
to do, exit 2 at once, never retried): no space, no permission, a read-only file system,
missing or rejected credentials.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from .errors import InputError, StorageError, StorageUnavailable, WorkerError

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Seconds between attempts: an object store that is away for ~15 s is ridden out.
#: THRESHOLD_RETRY_DELAYS (comma-separated seconds) sets another schedule; empty: no retry.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


def delays(default: Iterable[float] = RETRY_DELAYS) -> tuple[float, ...]:
    text = os.environ.get("THRESHOLD_RETRY_DELAYS")
    if text is None:
        return tuple(default)
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(
            "THRESHOLD_RETRY_DELAYS", f"{text!r} is not comma-separated seconds, e.g. 0.5,2,5"
        ) from None


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_PERMISSION = (errno.EACCES, errno.EPERM, errno.EROFS)
_CREDENTIALS = (
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "NoAuthTokenError",
    "TokenRetrievalError",
    "ProfileNotFound",
)
_BOTOCORE_TRANSIENT = {"HTTPClientError", "ConnectionError"}  # connection, read timeouts


def _class_names(e: BaseException) -> set[str]:
    return {c.__name__ for c in type(e).__mro__}


def fatal(
    e: BaseException, where: str, field: str = "output_container", inputs: str | None = None
) -> StorageError | None:
    """The one-line error for a failure no retry can fix, or None if it may pass. `inputs`:
    the input's location, to tell a refused read of the input from a refused write."""
    path = str(getattr(e, "filename", None) or where)
    reading = inputs is not None and path.startswith(inputs)
    if reading:
        field = "input_container"
    if isinstance(e, OSError) and e.errno in _NO_SPACE:
        return StorageError(
            field,
            f"no space left on the device holding {path}; free space (or grow the volume), "
            "then rerun the same command: finished blocks are kept",
        )
    if isinstance(e, PermissionError) or (isinstance(e, OSError) and e.errno in _NO_PERMISSION):
        what = "read-only file system" if e.errno == errno.EROFS else "permission denied"
        fix = "readable" if reading else "writable"
        return StorageError(
            field,
            f"{what} on {path}: {e.strerror or e}; make it {fix} for this user (uid "
            f"{os.getuid()}), or fix the credentials' permissions, then rerun",
        )
    if _class_names(e) & set(_CREDENTIALS):
        return StorageError(
            field,
            f"no usable credentials for {where} ({type(e).__name__}: {e}); set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile), then rerun",
        )
    return None


#: OS errors that repeat the same way however often they are retried.
_PERMANENT = (errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL, errno.EXDEV, errno.EMLINK)


def transient(e: BaseException) -> bool:
    """Whether `e` may pass if the same request is made again later."""
    if isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(e, OSError) and e.errno in _PERMANENT:
        return False
    if isinstance(e, (OSError, TimeoutError, ConnectionError)):
        return True
    module = type(e).__module__.split(".")[0]
    if module == "aiohttp":  # all of its client errors are about the connection
        return True
    return module in ("botocore", "aiobotocore") and bool(_class_names(e) & _BOTOCORE_TRANSIENT)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def retry(
    fn: Callable[[], T],
    what: str,
    where: str,
    field: str = "output_container",
    waits: Iterable[float] | None = None,
    inputs: str | None = None,
) -> T:
    """Call `fn`; retry what may pass, with growing, jittered delays; raise a `StorageError`
    at once for what cannot."""
    waits = delays(RETRY_DELAYS if waits is None else waits)
    schedule = (*waits, None)
    began = time.monotonic()  # the attempts' own time counts too (connect timeouts)
    for delay in schedule:
        try:
            return fn()
        except WorkerError:
            raise
        except Exception as e:
            error = fatal(e, where, field, inputs)
            if error is not None:
                raise error from e
            if not transient(e):
                raise
            if delay is None:
                raise StorageUnavailable(
                    field,
                    f"{what} on {where} failed {len(schedule)} times over about "
                    f"{time.monotonic() - began:.0f} s ({type(e).__name__}: {_first_line(e)}); "
                    "check the endpoint, the network and the storage service, then rerun: "
                    "finished blocks are kept",
                ) from e
            wait = delay * random.uniform(0.8, 1.2)
            logger.warning(
                "%s failed (%s: %s); retrying in %.1f s", what, type(e).__name__, e, wait
            )
            time.sleep(wait)
    raise AssertionError("unreachable")
