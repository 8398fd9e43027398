"""Atomic file writes: the only way loom writes a file that others may read (SPEC 1).

A write goes to a hidden temporary file in the same directory and is renamed into
place, so a reader sees the old file or the whole new one, never a part. By default
the file and its directory are fsynced so the rename survives a power cut; set
`LOOM_FSYNC=0` to trade that durability for speed (a crash of the process alone
never loses data either way, only a crash of the machine can).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from random import getrandbits

from loom import settings

# Not typing's: `loom send` and `loom agent ps` do not import typing
# (tests/test_architecture.py). mypy takes it as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

_fsync: bool | None = None
# From this many files on, a batch is flushed with one syncfs rather than an fsync each;
# for fewer, flushing the whole filesystem would cost more than it saves.
SYNCFS_FROM = 16


def fsync_enabled() -> bool:
    """Whether writes are fsynced; read once from `LOOM_FSYNC` (default on)."""
    global _fsync
    if _fsync is None:
        _fsync = settings.FSYNC.get()
    return _fsync


def set_fsync(enabled: bool | None) -> None:
    """Override the fsync policy for this process (None: read the environment again)."""
    global _fsync
    _fsync = enabled


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirSyncs:
    """Folders whose fsync is owed, each paid once by `flush` however many renames in it
    wait for one (group commit: one fsync of the outbox for a batch of replies)."""

    def __init__(self) -> None:
        self._dirs: dict[str, None] = {}

    def add(self, directory: str) -> None:
        self._dirs[directory] = None

    def flush(self) -> None:
        """fsync every folder owed, in the order first owed; then none is owed."""
        while self._dirs:
            directory = next(iter(self._dirs))
            fsync_dir(directory)
            del self._dirs[directory]


def write_bytes(path: str | os.PathLike[str], data: bytes, owed: DirSyncs | None = None) -> None:
    """Write `data` to `path` atomically (temp file in the same directory, then rename).

    With `owed`, the fsync of the folder that makes the rename durable is left to
    `owed.flush()` (the file itself is fsynced here, under the fsync policy).
    """
    # Plain strings rather than Path objects: this runs several times per message.
    target = os.fspath(path)
    tmp, fd = _create_temporary(target)
    sync = fsync_enabled()
    try:
        written = os.write(fd, data)
        if written < len(data):
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _about(exc, target) from None
        raise
    os.close(fd)
    _commit(tmp, target, sync, owed)


def write_batch(directory: str | os.PathLike[str], files: list[tuple[str, bytes]]) -> None:
    """Write each `(name, data)` into `directory` atomically, as `write_bytes` would.

    All temporary files are written first, then flushed to disk together (a batch of
    SYNCFS_FROM files or more with one `syncfs` on Linux, else with an fsync each), then
    renamed in order, and the directory is fsynced once: the disk commits the batch in
    one journal flush instead of one per file (five times faster for a few hundred small
    files on a busy disk). When a write fails, no file of the batch is renamed into
    place (renames within one folder do not fail for want of space).
    """
    where = os.fspath(directory).rstrip("/") or "/"
    sync = fsync_enabled()
    made: list[tuple[str, str]] = []
    renamed = 0
    try:
        fds: list[int] = []
        try:
            for name, data in files:
                target = f"{where}/{name}"
                tmp, fd = _create_temporary(target)
                made.append((tmp, target))
                fds.append(fd)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            if sync and not (len(fds) >= SYNCFS_FROM and _syncfs(fds[0])):
                for fd in fds:
                    os.fsync(fd)
        except OSError as exc:
            target = made[-1][1] if made else where
            raise _about(exc, target) from None
        finally:
            for fd in fds:
                os.close(fd)
        for tmp, target in made:
            os.replace(tmp, target)
            renamed += 1
    except BaseException:
        for tmp, _ in made[renamed:]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    if sync and files:
        fsync_dir(where)


_syncfs_fn: Callable[[int], int] | None = None
_syncfs_looked = False


def _syncfs(fd: int) -> bool:
    """Flush the whole filesystem holding `fd` (Linux syncfs); False where there is none."""
    global _syncfs_fn, _syncfs_looked
    if not _syncfs_looked:
        _syncfs_looked = True
        if sys.platform.startswith("linux"):
            try:
                # Imported here: ctypes costs a few ms of every command's start-up, and
                # only fsyncing writers get this far. The interpreter links libc.
                import ctypes

                lib = ctypes.CDLL(None, use_errno=True)
                lib.syncfs.argtypes = [ctypes.c_int]
                _syncfs_fn = lib.syncfs
            except (OSError, AttributeError):
                _syncfs_fn = None
    if _syncfs_fn is None:
        return False
    if _syncfs_fn(fd) != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return True


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A file to write the new content of `path` into, put in its place atomically
    when the block ends; when the block raises, `path` is left as it was.

    For content written in pieces (an archive copied and extended), where `write_bytes`
    would need it all in memory.
    """
    target = os.fspath(path)
    tmp, fd = _create_temporary(target)
    sync = fsync_enabled()
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            if sync:
                os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _commit(tmp, target, sync)


def write_symlink(path: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Make `path` a symbolic link to `target` atomically: a reader finds the old entry
    or the new link, never no entry at all."""
    where = os.fspath(path)
    tmp = _temporary(where)
    try:
        os.symlink(target, tmp)
    except OSError as exc:
        raise _about(exc, where) from None
    _commit(tmp, where, fsync_enabled())


def _create_temporary(target: str) -> tuple[str, int]:
    """A new private temporary file beside `target`: its name and an open descriptor."""
    tmp = _temporary(target)
    try:
        return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise _about(exc, target) from None


def _temporary(target: str) -> str:
    """A hidden name beside `target` for its next content (`.tmp-<name>-<8 hex>`, the
    form `loom gc` recognises as a killed writer's leftover)."""
    cut = target.rfind("/") + 1
    # A random suffix (Python's generator: no system call) keeps writers of the same
    # name apart, and a file left by a killed writer never blocks the next one.
    return f"{target[:cut]}.tmp-{target[cut:]}-{getrandbits(32):08x}"


def _commit(tmp: str, target: str, sync: bool, owed: DirSyncs | None = None) -> None:
    """Rename a finished temporary file over `target`; then, under the fsync policy,
    make the rename durable (or, with `owed`, leave that to its flush)."""
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync:
        directory = target[: target.rfind("/") + 1] or "."
        if owed is None:
            fsync_dir(directory)
        else:
            owed.add(directory)


def utf8(text: str) -> bytes:
    """`text` as UTF-8; a lone surrogate, which UTF-8 cannot encode, is written `\\udXXX`.

    Every text loom writes is encoded here. What loom writes is JSON, and the JSON
    encoder only emits such a character inside a string, where `\\udXXX` is the JSON
    escape for that same character (RFC 8259 section 7): the text reads back identical.
    Such characters come from input that escaped them (`"\\ud800"` is valid JSON).
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically (encoded by `utf8`)."""
    write_bytes(path, utf8(text))


def rename(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], owed: DirSyncs | None = None
) -> None:
    """Rename within one filesystem, making the new entry durable under the fsync policy
    (with `owed`: once `owed.flush()` has run)."""
    os.rename(src, dst)
    if fsync_enabled():
        src_dir, dst_dir = os.path.dirname(src), os.path.dirname(dst)
        for directory in (dst_dir, src_dir) if src_dir != dst_dir else (dst_dir,):
            if owed is None:
                fsync_dir(directory or ".")
            else:
                owed.add(directory or ".")


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a folder as a whole: first renamed to a hidden name next to it, which no
    listing takes for anything, so nobody sees it half deleted; then deleted."""
    source = Path(path)
    doomed = source.with_name(f".{source.name}.removed-{os.getpid()}")
    os.rename(source, doomed)
    import shutil  # only here: it costs every command's start-up otherwise

    shutil.rmtree(doomed)


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append one line with a single O_APPEND write, so concurrent writers never interleave.

    A write the kernel cuts short (a signal, a nearly full disk) is finished with more
    writes; only then can another writer's line come between, which callers that share
    a file between threads rule out with a lock.
    """
    data = memoryview(utf8(line.rstrip("\n") + "\n"))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError as exc:
        raise _about(exc, os.fspath(path)) from None
    finally:
        os.close(fd)


# How often a kept-open append file checks that its name still leads to it (see Appender).
REOPEN_CHECK_S = 1.0


class Appender:
    """Appends lines to one file at a time, kept open between lines (O_APPEND, 0600).

    For files a process appends to many times (its day log, its conversation file):
    one `write` per line instead of open, write and close. A line for another path
    (the next day's file) closes the old file and opens the new one. The file is
    reopened when its name no longer leads to it (deleted or moved aside by hand or
    by a tool), checked at most every REOPEN_CHECK_S, so at most that long of lines
    goes to the old file; `loom gc` touches only past days' files, never an open one.
    """

    def __init__(self) -> None:
        self._path = ""
        self._fd = -1
        self._id = (0, 0)
        self._checked = 0.0

    def append(self, path: str, line: str) -> None:
        """Append `line` and a newline to `path` (created if missing, not its folder:
        FileNotFoundError then) with one write, as `append_line` does."""
        data = memoryview(utf8(line.rstrip("\n") + "\n"))
        fd = self._open(path)
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError as exc:
            self.close()
            raise _about(exc, path) from None

    def _open(self, path: str) -> int:
        now = time.monotonic()
        if self._fd >= 0 and path == self._path:
            if now - self._checked < REOPEN_CHECK_S:
                return self._fd
            self._checked = now
            try:
                info = os.stat(path)
                if (info.st_dev, info.st_ino) == self._id:
                    return self._fd
            except OSError:
                pass
        self.close()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        info = os.fstat(fd)
        self._path, self._fd, self._id, self._checked = path, fd, (info.st_dev, info.st_ino), now
        return fd

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd, self._path = self._fd, -1, ""
            os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()


def _about(exc: OSError, target: str) -> OSError:
    """`exc` naming the file the caller wrote, not our temporary name (or none: a failed
    `write` carries no path), so the user's one line says where the disk was full."""
    exc.filename = target
    return exc


def make_private_dir(path: Path) -> Path:
    """Create `path` and every missing parent readable only by the user (0700); return it.

    `Path.mkdir(parents=True)` would give the parents the umask's mode (0755), and the
    umask is left alone because commands and tools create the user's own files.
    """
    missing: list[str] = []
    current = os.fspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current or not parent:
            break
        current = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise
    return path


def open_append(path: str | os.PathLike[str]) -> BinaryIO:
    """Open `path` for appending in binary, created readable only by the user (0600).

    For logs handed to a child as its stderr and for lock files, which `open(..., "ab")`
    would create with the umask's mode. These are loom's own files: a FIFO, a link or a
    folder in their place raises OSError (ENXIO, ELOOP, EISDIR or ENOTSUP) at once
    instead of blocking or writing elsewhere.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENOTSUP, "not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")
