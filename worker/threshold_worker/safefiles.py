"""Files below the output array's directory, never reached through a symbolic link.

Every folder below the output's root is opened one name at a time, relative to its parent's
descriptor and with O_NOFOLLOW, so a symlink anywhere in the output tree (a chunk folder
linked elsewhere, a chunk file linked to a file outside) is refused with a message naming it
instead of being written through. The root itself may be reached through links: that is the
user's choice of where the output lives; what is below it is ours. Folder descriptors are
cached, so a chunk write costs no more system calls than opening it by its full path.

Writes are atomic: a reader, or a resumed run, never sees half a chunk. On Linux the bytes
go into an unnamed file (O_TMPFILE) that is then linked in place, one change to the folder
instead of a create and a rename; where the file system has no O_TMPFILE (NFS, FUSE), the
bytes go into a file with an unpredictable name in the output's `.threshold-tmp` folder,
created with O_EXCL|O_NOFOLLOW, which is then linked in place. Where the name exists (a
chunk rewritten), the file is renamed over it; a link in its place is refused. Temporaries that a
killed run left there are removed when the next run starts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from .errors import StorageError

TMP_DIR = ".threshold-tmp"
#: A temporary lives for milliseconds; one this old was left by a killed writer.
TMP_MAX_AGE = 300.0
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LINK_ERRORS = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


class SymlinkInOutput(StorageError):
    def __init__(self, path: str) -> None:
        super().__init__(
            "output_dataset",
            f"{path} is a symbolic link (or not a folder) inside the output array, and the "
            "worker never writes through links: remove it, then rerun",
        )


class SafeDir:
    """The output array's folder tree; paths are relative to `root`, '/'-separated."""

    MAX_OPEN = 128

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._root_fd: int | None = None
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._unnamed = hasattr(os, "O_TMPFILE")

    # -- folders ---------------------------------------------------------------------------

    def _root(self, create: bool) -> int | None:
        if self._root_fd is None:
            try:
                self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                if not create:
                    return None
                os.makedirs(self.root, exist_ok=True)
                self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._root_fd

    def dir_fd(self, rel: str, create: bool = False) -> int | None:
        """A descriptor of folder `rel` ('' for the root); None if it does not exist."""
        if not rel:
            return self._root(create)
        fd = self._fds.get(rel)
        if fd is not None:
            self._fds.move_to_end(rel)
            return fd
        parent, _, name = rel.rpartition("/")
        pfd = self.dir_fd(parent, create)
        if pfd is None:
            return None
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                return None
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=pfd)
            fd = self._open_dir(name, pfd, rel)
        except OSError as e:
            if e.errno in _LINK_ERRORS:
                raise SymlinkInOutput(self.path(rel)) from None
            raise
        self._fds[rel] = fd
        if len(self._fds) > self.MAX_OPEN:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def _open_dir(self, name: str, pfd: int, rel: str) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            if e.errno in _LINK_ERRORS:
                raise SymlinkInOutput(self.path(rel)) from None
            raise

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    # -- files -----------------------------------------------------------------------------

    def open_read(self, rel: str) -> int | None:
        """A descriptor to read file `rel`, or None if it does not exist."""
        head, _, name = rel.rpartition("/")
        dfd = self.dir_fd(head)
        if dfd is None:
            return None
        try:
            return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno in _LINK_ERRORS:
                raise SymlinkInOutput(self.path(rel)) from None
            raise

    def read(self, rel: str) -> bytes | None:
        fd = self.open_read(rel)
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def exists(self, rel: str) -> bool:
        return self._lstat(rel) is not None

    def _lstat(self, rel: str) -> os.stat_result | None:
        """`rel` itself (a link is not followed), or None if it or a folder above is missing."""
        head, _, name = rel.rpartition("/")
        dfd = self.dir_fd(head)
        if dfd is None:
            return None
        try:
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def write(self, rel: str, data: bytes | memoryview) -> None:
        """Atomically replace (or create) file `rel` with `data`."""
        with self._naming(rel):
            self._write(rel, data)

    @contextlib.contextmanager
    def _naming(self, rel: str) -> Iterator[None]:
        """OS errors of calls relative to a folder descriptor name only the last part (or a
        temporary): name the output's path instead, as the user knows it."""
        try:
            yield
        except OSError as e:
            if not e.filename or not str(e.filename).startswith("/"):
                e.filename = self.path(rel)
            raise

    def _write(self, rel: str, data: bytes | memoryview) -> None:
        head, _, name = rel.rpartition("/")
        dfd = self.dir_fd(head, create=True)
        assert dfd is not None
        if self._unnamed and self._write_unnamed(data, name, dfd, rel):
            return
        tfd, tmp = self._tmp_dir(), self._tmp_name()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o666, dir_fd=tfd)
        try:
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            try:
                os.link(tmp, name, src_dir_fd=tfd, dst_dir_fd=dfd, follow_symlinks=False)
            except FileExistsError:
                self._replace(tmp, tfd, name, dfd, rel)
                return
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=tfd)
            raise
        os.unlink(tmp, dir_fd=tfd)

    def _write_unnamed(self, data: bytes | memoryview, name: str, dfd: int, rel: str) -> bool:
        """Write through an unnamed file; False where this file system cannot (the caller
        then writes a named temporary)."""
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666, dir_fd=dfd)
        except OSError:  # no O_TMPFILE on this file system (NFS, FUSE, ...)
            self._unnamed = False
            return False
        try:
            _write_all(fd, data)
            if _link(fd, name, dfd):
                return True
            # The name exists: give the file a temporary name, then rename it over.
            tfd, tmp = self._tmp_dir(), self._tmp_name()
            if not _link(fd, tmp, tfd):
                raise FileExistsError(self.path(f"{TMP_DIR}/{tmp}"))
        except FileNotFoundError:  # no /proc to name the file through
            self._unnamed = False
            return False
        finally:
            os.close(fd)
        self._replace(tmp, tfd, name, dfd, rel)
        return True

    def _replace(self, tmp: str, tfd: int, name: str, dfd: int, rel: str) -> None:
        """Rename temporary `tmp` over the existing `name`, unless that is a link."""
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                raise SymlinkInOutput(self.path(rel))
            os.rename(tmp, name, src_dir_fd=tfd, dst_dir_fd=dfd)
        except BaseException as e:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=tfd)
            if isinstance(e, IsADirectoryError):
                raise SymlinkInOutput(self.path(rel)) from None
            raise

    def _tmp_dir(self) -> int:
        fd = self.dir_fd(TMP_DIR, create=True)
        assert fd is not None
        return fd

    @staticmethod
    def _tmp_name() -> str:
        return f"{secrets.token_hex(12)}.{os.getpid()}"

    def touch(self, rel: str) -> None:
        """Create an empty file (its existence is all it says: atomic without a rename)."""
        with self._naming(rel):
            self._touch(rel)

    def _touch(self, rel: str) -> None:
        head, _, name = rel.rpartition("/")
        dfd = self.dir_fd(head, create=True)
        assert dfd is not None
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o666, dir_fd=dfd)
        except OSError as e:
            if e.errno in _LINK_ERRORS:
                raise SymlinkInOutput(self.path(rel)) from None
            raise
        os.close(fd)

    def unlink(self, rel: str) -> None:
        """Remove file `rel` if it exists (a symlink is removed, never followed)."""
        head, _, name = rel.rpartition("/")
        dfd = self.dir_fd(head)
        if dfd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dfd)

    def listdir(self, rel: str) -> list[str]:
        fd = self.dir_fd(rel)
        return _names(fd) if fd is not None else []

    # -- whole trees -----------------------------------------------------------------------

    def files(self, rel: str = "", skip: Iterable[str] = ()) -> Iterator[str]:
        """Paths of the files (and links) below `rel`, depth first, without following links;
        top-level names in `skip` are left out."""
        fd = self.dir_fd(rel)
        if fd is None:
            return
        for _, sub, is_dir in _entries(fd, rel, skip):
            if is_dir:
                yield from self.files(sub)
            else:
                yield sub

    def remove_tree(self, rel: str = "", keep: Iterable[str] = ()) -> int:
        """Delete everything below `rel` except the top-level names in `keep`, bottom up,
        never following a link (a link, even at `rel`, is itself removed); returns the
        number of files removed."""
        with self._naming(rel):
            return self._remove_tree(rel, keep)

    def _remove_tree(self, rel: str, keep: Iterable[str]) -> int:
        if rel and not self._is_dir(rel):
            self.unlink(rel)
            return 1
        fd = self.dir_fd(rel)
        if fd is None:
            return 0
        removed = 0
        for name, sub, is_dir in _entries(fd, rel, keep):
            if is_dir:
                removed += self._remove_tree(sub, ())
                self._forget(sub)
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(name, dir_fd=fd)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
                removed += 1
        return removed

    def _is_dir(self, rel: str) -> bool:
        """Whether `rel` is a real folder (not a link to one); True if it is missing."""
        found = self._lstat(rel)
        return found is None or stat.S_ISDIR(found.st_mode)

    def _forget(self, rel: str) -> None:
        for key in [k for k in self._fds if k == rel or k.startswith(rel + "/")]:
            os.close(self._fds.pop(key))

    def clean_temporaries(self, max_age: float = TMP_MAX_AGE) -> int:
        """Remove temporaries older than `max_age` seconds: left by killed writers (a live
        writer renames its temporary within milliseconds)."""
        fd = self.dir_fd(TMP_DIR)
        if fd is None:
            return 0
        cutoff = time.time() - max_age
        removed = 0
        for name in _names(fd):
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if st.st_mtime < cutoff or not stat.S_ISREG(st.st_mode):
                    os.unlink(name, dir_fd=fd)
                    removed += 1
        return removed


def _fresh(fd: int) -> int:
    """A new descriptor of folder `fd`, to list it with. A listing reads through the
    descriptor's position, which forked worker processes share with their parent (and
    os.listdir/scandir only duplicate it): two listing one cached descriptor at once would
    each see part of the names."""
    return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)


def _names(fd: int) -> list[str]:
    own = _fresh(fd)
    try:
        return os.listdir(own)
    finally:
        os.close(own)


def _entries(fd: int, rel: str, skip: Iterable[str]) -> list[tuple[str, str, bool]]:
    """(name, path, is a real folder) of the entries of folder `fd` (at `rel`) but `skip`."""
    skipped = set(skip)
    own = _fresh(fd)
    try:
        with os.scandir(own) as entries:
            return [
                (e.name, f"{rel}/{e.name}" if rel else e.name, e.is_dir(follow_symlinks=False))
                for e in entries
                if e.name not in skipped
            ]
    finally:
        os.close(own)


def _link(fd: int, name: str, dfd: int) -> bool:
    """Give the unnamed file `fd` the name `name` in folder `dfd`; False if it exists.

    linkat(AT_SYMLINK_FOLLOW) on the descriptor's /proc entry names the file; an existing
    `name`, even a symlink, makes it fail rather than follow.
    """
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dfd, follow_symlinks=True)
    except FileExistsError:
        return False
    return True


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
