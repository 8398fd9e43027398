"""Waking up when a message lands in a folder: inotify on Linux, polling elsewhere (SPEC 4).

Both watchers answer one question, `wait(timeout)`: block until the folder may have
changed or the timeout passes. Callers always rescan the folder after waking, so a
spurious wake-up costs one `listdir` and a missed event costs at most one poll.
"""

from __future__ import annotations

import ctypes
import os
import select
import sys
import time
from pathlib import Path
from typing import Protocol

from loom import settings

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
POLL_INTERVAL_S = 0.05


class Watcher(Protocol):
    def wait(self, timeout: float) -> bool:
        """Block until something may have changed (True) or `timeout` passed (False)."""

    def close(self) -> None: ...


class PollingWatcher:
    """Fallback: wakes every POLL_INTERVAL_S and reports a change when the folder's mtime moved."""

    def __init__(self, paths: list[Path], interval: float = POLL_INTERVAL_S) -> None:
        self.paths = paths
        self.interval = interval
        self._seen = self._snapshot()

    def _snapshot(self) -> list[int]:
        out = []
        for p in self.paths:
            try:
                out.append(os.stat(p).st_mtime_ns)
            except FileNotFoundError:
                out.append(0)
        return out

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            now = self._snapshot()
            if now != self._seen:
                self._seen = now
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.interval, left))

    def close(self) -> None:
        pass


class InotifyWatcher:
    """Linux inotify through libc: a rename into the folder wakes the waiter at once."""

    def __init__(self, paths: list[Path]) -> None:
        libc = _libc()
        if libc is None:
            raise OSError("inotify is not available")
        self._fd: int = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        mask = IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE
        for p in paths:
            if libc.inotify_add_watch(self._fd, os.fsencode(p), mask) < 0:
                err = ctypes.get_errno()
                os.close(self._fd)
                raise OSError(err, f"inotify_add_watch failed for {p}")

    def fileno(self) -> int:
        return self._fd

    def wait(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._fd], [], [], max(timeout, 0))
        if not ready:
            return False
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL | None:
    global _LIBC
    if _LIBC is None and sys.platform.startswith("linux"):
        try:
            # The running interpreter already links libc; find_library would fork.
            lib = ctypes.CDLL(None, use_errno=True)
            lib.inotify_init1.argtypes = [ctypes.c_int]
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            _LIBC = lib
        except (OSError, AttributeError):
            return None
    return _LIBC


def watcher(paths: list[Path]) -> Watcher:
    """The best watcher for this platform; `LOOM_WATCH=poll` forces polling."""
    if settings.WATCH.get() != "poll":
        try:
            return InotifyWatcher(paths)
        except OSError:
            pass
    return PollingWatcher(paths)
