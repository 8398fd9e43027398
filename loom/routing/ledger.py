"""What the router has done, kept on disk so it survives the router's own crash (SPEC 7).

- `router/delivered/<source>→<dest>.log`: every filename copied from `source`'s outbox
  into `dest`'s inbox, one per line, append-only. Keyed by the pair of folders rather
  than by edge, because the rule it enforces is "never the same message twice into the
  same inbox", whichever edges lead there.
- `router/since.json`: for each leg, when it came into existence, as
  `[filesystem-clock ns, wall-clock ms]`. A leg delivers only messages that appeared in
  its source's outbox from then on, so a new edge never replays an outbox's history.

`loom gc` prunes a delivery log of names that left the source outbox; a `#pruned N`
first line keeps the count, so `loom routes` still shows every message forwarded.
Appends hold a shared flock and a prune an exclusive one, so no line is lost to the
rewrite while the router runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from loom.store import atomic, files
from loom.store.files import load_json
from loom.store.message import FILENAME_RE

# Longest wait for the filesystem clock to tick (see filesystem_now_ns). A tick is a few
# milliseconds; the margin is for a loaded machine, where a short cap could return
# before the tick and let a route replay a file from the tick it was created in.
FS_TICK_WAIT_S = 1.0


def router_dir(home: Path) -> Path:
    """`$LOOM_HOME/router/`: the router's logs, delivery logs and stats."""
    return home / "router"


def stats_path(home: Path) -> Path:
    """`router/stats.json`: the router's per-route counters, rewritten now and then."""
    return router_dir(home) / "stats.json"


class UnreadableLedger(OSError):
    """A delivery log that is not a regular file, or is past STATE_LIMIT."""


class DeliveryLog:
    """The filenames delivered from one outbox into one inbox, loaded once and appended to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._names: set[str] | None = None
        self._pruned = 0

    def _loaded(self) -> set[str]:
        if self._names is None:
            try:
                raw = files.read_bounded(self.path, files.STATE_LIMIT, "delivery log", follow=False)
            except FileNotFoundError:
                raw = b""
            except (files.NotARegularFile, files.FileTooLarge) as exc:
                # Delivering without the log could copy a message twice: the leg waits,
                # reported like an outbox that cannot be read, until the file is fixed.
                raise UnreadableLedger(str(exc)) from None
            text = raw.decode("utf-8", errors="replace")
            names, self._pruned = _parse(text)
            self._names = names
        return self._names

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __len__(self) -> int:
        """How many names were ever recorded, those pruned by `loom gc` included."""
        return len(self._loaded()) + self._pruned

    def record(self, name: str) -> None:
        """Append `name`; a single O_APPEND write, so a crash leaves the line whole or absent."""
        try:
            _append_locked(self.path, name)
        except FileNotFoundError:
            atomic.make_private_dir(self.path.parent)
            _append_locked(self.path, name)
        self._loaded().add(name)

    def last_activity(self) -> float | None:
        """When a filename was last recorded (Unix seconds), or None if never."""
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return None


def delivery_log(home: Path, source: str, dest: str) -> DeliveryLog:
    return DeliveryLog(router_dir(home) / "delivered" / f"{source}→{dest}.log")


def _parse(text: str) -> tuple[set[str], int]:
    # A line torn by a power cut matches no filename, so it is harmless.
    names: set[str] = set()
    pruned = 0
    for line in text.splitlines():
        if line.startswith(PRUNED):
            rest = line[len(PRUNED) :].strip()
            pruned += int(rest) if rest.isdigit() else 0
        elif line:
            names.add(line)
    return names, pruned


PRUNED = "#pruned "


def _append_locked(path: Path, line: str) -> None:
    data = (line + "\n").encode("utf-8")
    while True:
        # O_NONBLOCK: a FIFO in the log's place fails (ENXIO) instead of waiting forever.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            # A prune may have replaced the file while we waited: write to the new one.
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                os.write(fd, data)
                return
        finally:
            os.close(fd)


def prune(path: Path, present: Callable[[], set[str]], *, dry_run: bool = False) -> int:
    """Drop from delivery log `path` the names not in `present()`; return how many went.

    `present` (the source outbox's names) is called while appends are locked out, so a
    name recorded meanwhile was in the outbox when it was listed and stays.
    """
    try:
        f = files.open_regular(path, "delivery log", follow=False)
    except (FileNotFoundError, files.NotARegularFile):
        return 0  # not a log loom wrote: nothing to prune
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        names, pruned = _parse(f.read().decode("utf-8", errors="replace"))
        keep = names & present()
        gone = len(names) - len(keep)
        if gone and not dry_run:
            lines = [f"{PRUNED}{pruned + gone}", *sorted(keep)]
            atomic.write_text(path, "\n".join(lines) + "\n")
        return gone  # closing releases the lock; waiting appenders see the new file


def delivery_counters(logs: list[DeliveryLog]) -> tuple[int, str | None]:
    """(forwarded, last activity as ISO 8601) of a route whose fixed legs have `logs`, in order.

    Forwarded counts what reached the last fixed leg's inbox: the destination, or the
    routing node for a route that ends in one.
    """
    times = [t for t in (log.last_activity() for log in logs) if t is not None]
    last = None
    if times:
        moment = datetime.fromtimestamp(max(times), UTC)
        last = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return (len(logs[-1]) if logs else 0), last


@dataclass(frozen=True)
class Start:
    """When a leg came into existence: `fs_ns` on the filesystem's clock, `ms` on the wall clock.

    `fs_ns` is a tick of the clock the kernel stamps files with, taken after the tick in
    which the leg was created, so every file that appeared before has an older ctime and
    every file that appears after has one at least as new.
    """

    fs_ns: int
    ms: int

    def precedes(self, name: str, outbox_fd: int) -> bool:
        """Whether outbox file `name` appeared before this start (it is then history).

        `outbox_fd` is an open descriptor of the outbox: with 100,000 files to look at
        after a restart, stat relative to it is several times faster than through paths.
        """
        m = FILENAME_RE.fullmatch(name)
        if m and int(m.group(1)) > self.ms:
            return False  # created after the start, so it cannot have arrived before it
        try:
            # A rename into the outbox sets ctime: the moment the file appeared there
            # (the entry's own: a symbolic link is not followed).
            return os.stat(name, dir_fd=outbox_fd, follow_symlinks=False).st_ctime_ns < self.fs_ns
        except FileNotFoundError:
            return True


def since_path(home: Path) -> Path:
    return router_dir(home) / "since.json"


def read_since(home: Path) -> dict[str, Start]:
    """Leg key → Start; an unreadable file counts as empty (its legs start again from now)."""
    try:
        raw = files.read_bounded(since_path(home), files.CONFIG_LIMIT, "since.json", follow=False)
        data = load_json(raw)
    except (FileNotFoundError, ValueError, files.NotARegularFile, files.FileTooLarge):
        return {}
    if not isinstance(data, dict):
        return {}
    found = {}
    for key, value in data.items():
        if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
            found[str(key)] = Start(value[0], value[1])
    return found


def filesystem_now_ns(directory: Path) -> int:
    """The next tick of the clock the filesystem stamps files with.

    That clock is coarse (a few milliseconds per tick) and may lag time.time(). Waiting
    for its next tick means a file renamed into an outbox once we return is stamped at
    or after the value returned, and a file renamed before we were called strictly
    before it. A filesystem with very coarse times gives up after FS_TICK_WAIT_S.
    """
    atomic.make_private_dir(directory)
    clock = directory / ".clock"
    with atomic.open_append(clock):
        pass
    os.utime(clock)
    first = clock.stat().st_mtime_ns
    deadline = time.monotonic() + FS_TICK_WAIT_S
    while True:
        os.utime(clock)
        now = clock.stat().st_mtime_ns
        if now > first or time.monotonic() > deadline:
            return now
        time.sleep(0.0005)


def reconcile_since(home: Path, keys: Iterable[str]) -> dict[str, Start]:
    """Give legs that have no start "now", forget legs that are gone; return the map.

    The caller holds the routes lock, so a leg removed and added again by two
    `loom route` calls gets a fresh start and does not replay the gap between them.
    """
    wanted = set(keys)
    current = read_since(home)
    missing = wanted - current.keys()
    stale = current.keys() - wanted
    if not missing and not stale:
        return current
    fs_ns = filesystem_now_ns(router_dir(home))
    now = Start(fs_ns, time.time_ns() // 1_000_000)
    updated = {k: v for k, v in current.items() if k in wanted}
    updated.update({k: now for k in missing})
    data = {k: [v.fs_ns, v.ms] for k, v in sorted(updated.items())}
    atomic.write_text(since_path(home), json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    return updated
