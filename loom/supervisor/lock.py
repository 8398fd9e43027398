"""One supervisor per `$LOOM_HOME`: an flock on `supervisor.lock`, its pid in `supervisor.pid`.

The lock, not the pid file, decides who runs: the kernel drops it when the process
dies, so a stale pid file (or a pid reused by another program) can never block a
new supervisor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from loom import settings
from loom.errors import LoomError
from loom.store import atomic
from loom.store.files import FIELD_LIMIT, read_bounded
from loom.store.home import pid_is_loom


def lock_path(home: Path) -> Path:
    return home / "supervisor.lock"


def acquire(home: Path, locked: Callable[[], None] | None = None) -> IO[bytes] | None:
    """Take the supervisor lock and write `supervisor.pid`; None if another supervisor holds it.

    `locked` runs once the lock is held and before the pid file is written, so what it
    writes is in place by the time anyone finds this supervisor by its pid.
    """
    handle = atomic.open_append(lock_path(home))  # held for the process's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    if locked is not None:
        locked()
    atomic.write_text(home / "supervisor.pid", f"{os.getpid()}\n")
    return handle


def release(home: Path, handle: IO[bytes]) -> None:
    """Remove `supervisor.pid` (absent when none runs, SPEC 3) and drop the lock."""
    with contextlib.suppress(OSError, LoomError):
        pid = _read_pid_file(home)
        if pid == str(os.getpid()):
            (home / "supervisor.pid").unlink()
    handle.close()


def is_running(home: Path) -> bool:
    """Whether some process holds the supervisor lock right now."""
    try:
        handle = atomic.open_append(lock_path(home))
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def running_pid(home: Path) -> int | None:
    """The supervisor's pid when one runs.

    The pid file names it; when that file is garbage, a FIFO or someone else's pid while
    the lock is held, the kernel's table of locks does, so a broken pid file never hides
    a live supervisor from `stop` and `status`.
    """
    try:
        pid: int | None = int(_read_pid_file(home))
    except (OSError, ValueError, LoomError):
        pid = None
    if pid is not None and pid_is_loom(pid) and is_running(home):
        return pid
    if not is_running(home):
        return None
    holder = _lock_holder(home)
    return holder if holder is not None and pid_is_loom(holder) else None


def _lock_holder(home: Path) -> int | None:
    """Which process holds `supervisor.lock`, from /proc/locks (Linux); None if unknown."""
    try:
        inode = os.stat(lock_path(home)).st_ino
        table = read_bounded(Path("/proc/locks"), 1 << 20, "/proc/locks", follow=False)
    except (OSError, LoomError):
        return None
    # Lines read `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`; `->` marks a waiter.
    for line in table.decode("ascii", errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[3] == "WRITE":
            where = fields[5].rsplit(":", 1)
            if where[-1] == str(inode) and fields[4].isdigit():
                return int(fields[4])
    return None


def nudge(home: Path) -> bool:
    """Ask a running supervisor to rescan now (SIGHUP); False when none runs."""
    pid = running_pid(home)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGHUP)
        return True
    return False


def start_on_demand(home: Path) -> subprocess.Popen[bytes]:
    """Start a supervisor in the background that exits when nothing is left to supervise.

    Its settings are checked here first, so a malformed one is the caller's SettingError
    rather than a supervisor that exits at once into `supervisor.log`.
    """
    settings.check_all()
    log = atomic.open_append(home / "supervisor.log")  # handed to the child
    with log:
        return subprocess.Popen(
            [sys.executable, "-m", "loom", "supervisor", "run", "--on-demand"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, "LOOM_HOME": str(home)},
        )


def _read_pid_file(home: Path) -> str:
    """`supervisor.pid`'s line, read without blocking or past a line's size."""
    raw = read_bounded(home / "supervisor.pid", FIELD_LIMIT, "supervisor.pid", follow=False)
    return raw.decode("ascii", errors="replace").strip()
