"""Who may write an output now: a lease that the processes and pods of one job share and
that a different job cannot take.

Holders name their job by its plan fingerprint. Taking the lease happens under a short
mutex, which also covers the caller's claim of the output (see `ownership`), so two jobs
never both find the output free, and the pods of one job never claim it twice at once.

Local disks and NFS volumes: files under `<output>/.threshold-lease/`. The mutex is an
exclusive `flock` on `mutex`; each holder keeps a shared `flock` on `<fingerprint>.lock`.
The kernel (or the NFS server, when the client's lease lapses) releases the locks of a
holder that dies, so a crash never blocks the next run; a lock file that can be locked
exclusively belongs to nobody alive and is removed.

Object stores have no locks. The mutex is an object created with a conditional PUT
(If-None-Match: *); each holder keeps `members/<fingerprint>/<id>` fresh with a heartbeat
every TTL/6 seconds. Holders whose object the store last modified more than TTL ago are
dead; ages come from the store's own clock (LastModified), never from ours. A stale mutex
(its holder died inside it) expires after TTL too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from upath import UPath

from .errors import OutputConflict, StorageUnavailable
from .safefiles import SafeDir, SymlinkInOutput

logger = logging.getLogger(__name__)

LEASE_DIR = ".threshold-lease"
T = TypeVar("T")


def ttl() -> float:
    """Seconds after which a silent holder on an object store counts as dead."""
    return float(os.environ.get("THRESHOLD_LEASE_TTL", "60"))


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Holder:
    """Who holds the lease, as a refused job is told."""

    fingerprint: str
    threshold: float
    started: str
    host: str
    pid: int

    @classmethod
    def me(cls, fingerprint: str, threshold: float) -> Holder:
        return cls(fingerprint, threshold, utcnow(), socket.gethostname(), os.getpid())

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @staticmethod
    def describe(data: bytes | None, fingerprint: str) -> str:
        try:
            h = json.loads(data or b"")
            return (
                f"threshold {h['threshold']:g}, plan {h['fingerprint']}, started {h['started']} "
                f"on host {h['host']} (pid {h['pid']})"
            )
        except (ValueError, KeyError, TypeError):
            return f"plan {fingerprint}"


def _busy(where: str, who: str, silent_for: float | None = None) -> OutputConflict:
    """`silent_for`: seconds since an object-store holder last beat, which may have died
    (no lock tells): its lease ends by itself TTL seconds after the last beat."""
    ends = (
        ""
        if silent_for is None
        else f", or did until it stopped: its lease ends by itself within "
        f"{max(0, ttl() - silent_for):.0f} s if it no longer runs"
    )
    return OutputConflict(
        "output_dataset",
        f"{where} is being written by another job right now ({who}){ends}; wait for it to "
        "end or stop it, then rerun",
    )


class Freshness:
    """Whether a lease is still ours, shared with forked worker processes.

    An object-store lease lapses when its heartbeat stops (a paused or cut-off process);
    another job may then take the output. Every block and marker write first asks
    `check()`: after a lapse nothing more is written. `confirmed` is the monotonic time
    (the same clock in every process of the machine) of the last beat that proved the
    lease still ours; `lost` is set once another job is seen to have taken it.
    """

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
        self.confirmed = ctx.Value("d", time.monotonic(), lock=False)
        self.lost = ctx.Value("b", 0, lock=False)
        self.where = ""

    def check_after_write(self, started: float) -> None:
        """After a write that began at monotonic time `started`: if the lease went silent for
        longer than the TTL meanwhile (the process froze with the write in flight), another
        job may have taken the output, and the write may have landed in its result."""
        if time.monotonic() - max(self.confirmed.value, started) > ttl():
            raise self._lapsed()

    def check(self) -> None:
        """Before a write: the lease must have been confirmed lately."""
        silent = time.monotonic() - self.confirmed.value
        if self.lost.value or silent > ttl():
            raise self._lapsed()
        if silent > ttl() / 2:
            raise StorageUnavailable(
                "output_container",
                f"the lease on {self.where} could not be renewed for {silent:.0f} s; stopping "
                "so as not to write where another job may have taken over: rerun to resume",
            )

    def _lapsed(self) -> OutputConflict:
        # Object stores cannot fence off requests that were in flight when the process
        # froze: say so, loudly, with what to do.
        return OutputConflict(
            "output_dataset",
            f"the lease on {self.where} lapsed (this process was frozen or cut off for longer "
            f"than {ttl():.0f} s) and another job may have taken the output over; this run "
            "stops. Blocks it was writing when it froze may have landed in that job's result: "
            "rerun that job with --overwrite to be sure",
        )


class Lease:
    """A held lease; `release` (or the context manager) gives it up."""

    #: None where the lease cannot lapse while its holder lives (flock).
    freshness: Freshness | None = None

    def release(self) -> None:
        raise NotImplementedError

    def _claim(self, claim: Callable[[], T]) -> T:
        """Run the caller's claim as a holder (the mutex still held); a failed claim gives
        the lease up again."""
        try:
            return claim()
        except BaseException:
            self.release()
            raise

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LocalLease(Lease):
    def __init__(self, files: SafeDir, holder: Holder, where: str) -> None:
        self.files, self.holder, self.where = files, holder, where
        self._fd: int | None = None

    def acquire(self, claim: Callable[[], T]) -> T:
        """Join the lease and run `claim` under the mutex; refuse if another job holds it."""
        dfd = self.files.dir_fd(LEASE_DIR, create=True)
        assert dfd is not None
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        mutex = _open_lock(dfd, "mutex", flags, self.files)
        try:
            _wait_for(lambda: _try_flock(mutex, fcntl.LOCK_EX), self.where)
            own = f"{self.holder.fingerprint}.lock"
            for name in self.files.listdir(LEASE_DIR):
                if name.endswith(".lock") and name != own:
                    self._check(dfd, name)
            fd = _open_lock(dfd, own, flags, self.files)
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.fstat(fd).st_size == 0:
                os.pwrite(fd, self.holder.to_bytes(), 0)
            self._fd = fd
            return self._claim(claim)
        finally:
            os.close(mutex)  # releases the mutex

    def _check(self, dfd: int, name: str) -> None:
        """Remove the lock file of a dead holder; refuse if its holder is alive."""
        try:
            fd = _open_lock(dfd, name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, self.files)
        except FileNotFoundError:
            return
        try:
            if _try_flock(fd, fcntl.LOCK_EX):
                os.unlink(name, dir_fd=dfd)
                return
            data = os.pread(fd, 4096, 0)
        finally:
            os.close(fd)
        raise _busy(self.where, Holder.describe(data, name.removesuffix(".lock")))

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _open_lock(dfd: int, name: str, flags: int, files: SafeDir) -> int:
    """A lock file of the lease folder, never through a link (refused, naming it)."""
    try:
        return os.open(name, flags, 0o666, dir_fd=dfd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise SymlinkInOutput(files.path(f"{LEASE_DIR}/{name}")) from None
        raise


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for(attempt: Callable[[], bool], where: str, poll: float = 0.2) -> None:
    """Wait for the mutex: another holder claims (or clears) the output inside it."""
    start = time.monotonic()
    told = False
    while not attempt():
        if not told and time.monotonic() - start > 2:
            logger.warning("waiting for another process that is claiming %s", where)
            told = True
        time.sleep(poll)


class RemoteLease(Lease):
    """The object-store lease (see the module docstring)."""

    def __init__(self, fs: Any, base: str, holder: Holder, where: str) -> None:
        self.fs, self.holder, self.where = fs, holder, where
        self.base = f"{base.rstrip('/')}/{LEASE_DIR}"
        self.mutex = f"{self.base}/mutex"
        self.member = f"{self.base}/members/{holder.fingerprint}/{uuid.uuid4().hex}"
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.freshness = Freshness()
        self.freshness.where = where

    def _server_now(self) -> dt.datetime:
        probe = f"{self.base}/clock/{uuid.uuid4().hex}"
        self.fs.pipe_file(probe, b"")
        try:
            return self.fs.info(probe)["LastModified"]
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(probe)

    def _take_mutex(self) -> bool:
        try:
            self.fs.pipe_file(self.mutex, self.holder.to_bytes(), mode="create")
            return True
        except FileExistsError:
            pass
        with contextlib.suppress(FileNotFoundError):
            age = (self._server_now() - self.fs.info(self.mutex)["LastModified"]).total_seconds()
            if age > ttl():
                logger.warning("removing the lease mutex of %s, left %.0f s ago", self.where, age)
                self.fs.rm_file(self.mutex)
        return False

    def acquire(self, claim: Callable[[], T]) -> T:
        self._stop = threading.Event()
        _wait_for(self._take_mutex, self.where, poll=0.5)
        try:
            self.fs.pipe_file(self.member, self.holder.to_bytes())
            self.fs.invalidate_cache()
            now = self.fs.info(self.member)["LastModified"]
            for path, info in self.fs.find(f"{self.base}/members", detail=True).items():
                fingerprint = path.rsplit("/", 2)[-2]
                if fingerprint == self.holder.fingerprint:
                    continue
                if (now - info["LastModified"]).total_seconds() > ttl():
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm_file(path)
                    continue
                data = self.fs.cat_file(path)
                self._drop_member()
                silent = (now - info["LastModified"]).total_seconds()
                raise _busy(self.where, Holder.describe(data, fingerprint), silent)
            self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="lease")
            self._beat.start()
            return self._claim(claim)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.mutex)

    def _heartbeat(self) -> None:
        fresh = self.freshness
        assert fresh is not None
        fresh.confirmed.value = time.monotonic()
        while not self._stop.wait(ttl() / 6) and not fresh.lost.value:
            started = time.monotonic()
            try:
                if started - fresh.confirmed.value > ttl() / 2 and self._taken():
                    fresh.lost.value = 1
                    logger.error("the lease on %s was taken by another job", self.where)
                    return
                self.fs.pipe_file(self.member, self.holder.to_bytes())
                fresh.confirmed.value = started
            except Exception as e:  # the next beat may pass; writes wait for it
                logger.warning("lease heartbeat for %s failed: %s", self.where, e)

    def _taken(self) -> bool:
        """After a silence long enough for others to think this holder dead: whether one
        did (its member object removed as stale, or another job's is live)."""
        self.fs.invalidate_cache()
        if not self.fs.exists(self.member):
            return True
        now = self._server_now()
        return any(
            path.rsplit("/", 2)[-2] != self.holder.fingerprint
            and (now - info["LastModified"]).total_seconds() <= ttl()
            for path, info in self.fs.find(f"{self.base}/members", detail=True).items()
        )

    def _drop_member(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.member)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(5)
            self._beat = None
        self._drop_member()


def lease_for(container: UPath, dataset: str, files: SafeDir | None, holder: Holder) -> Lease:
    """The lease of output array `dataset` in `container` (not yet acquired)."""
    where = f"{container}/{dataset}"
    if files is not None:
        return LocalLease(files, holder, where)
    fs = container.fs
    return RemoteLease(fs, f"{container.path.rstrip('/')}/{dataset}", holder, where)
