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
import random
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from .errors import JobError, StorageError

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Seconds between attempts: an object store that is away for ~15 s is ridden out.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)

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


def fatal(e: BaseException, where: str, field: str = "output_container") -> StorageError | None:
    """The one-line error for a failure no retry can fix, or None if it may pass."""
    if isinstance(e, OSError) and e.errno in _NO_SPACE:
        return StorageError(
            field,
            f"no space left on the device holding {e.filename or where}; free space (or "
            "grow the volume), then rerun the same command: finished blocks are kept",
        )
    if isinstance(e, PermissionError) or (isinstance(e, OSError) and e.errno in _NO_PERMISSION):
        what = "read-only file system" if e.errno == errno.EROFS else "permission denied"
        return StorageError(
            field,
            f"{what} on {e.filename or where}: {e.strerror or e}; make it writable for this "
            "user (or fix the credentials' permissions), then rerun",
        )
    if _class_names(e) & set(_CREDENTIALS):
        return StorageError(
            field,
            f"no usable credentials for {where} ({type(e).__name__}: {e}); set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile), then rerun",
        )
    return None


def transient(e: BaseException) -> bool:
    """Whether `e` may pass if the same request is made again later."""
    if isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(e, (OSError, TimeoutError, ConnectionError)):
        return True
    module = type(e).__module__.split(".")[0]
    if module == "aiohttp":  # all of its client errors are about the connection
        return True
    return module in ("botocore", "aiobotocore") and bool(_class_names(e) & _BOTOCORE_TRANSIENT)


def retry(
    fn: Callable[[], T],
    what: str,
    where: str,
    delays: Iterable[float] = RETRY_DELAYS,
    field: str = "output_container",
) -> T:
    """Call `fn`; retry what may pass, with growing, jittered delays; raise a `StorageError`
    at once for what cannot."""
    for delay in (*delays, None):
        try:
            return fn()
        except JobError:
            raise
        except Exception as e:
            error = fatal(e, where, field)
            if error is not None:
                raise error from e
            if delay is None or not transient(e):
                raise
            wait = delay * random.uniform(0.8, 1.2)
            logger.warning(
                "%s failed (%s: %s); retrying in %.1f s", what, type(e).__name__, e, wait
            )
            time.sleep(wait)
    raise AssertionError("unreachable")
