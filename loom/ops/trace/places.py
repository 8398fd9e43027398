"""Where a message file can be under `$LOOM_HOME`, found without an index.

Every queue folder of every agent and pipe instance is listed at most once (names
only); message files are read only when their name can match. Archived messages
(`archive/<day>.ndjson.gz`, written by `loom gc`) are opened per day, and only the
days a search can reach.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path

from loom.ops.trace.archived import ArchiveView
from loom.ops.trace.copies import FOLDERS, Copy, Process, ts_of
from loom.store.home import all_processes

# After this many lookups by name, listing every folder once beats a stat per folder.
STAT_LOOKUPS = 64


class Places:
    """Lazy listings of a home's queue folders and archive days."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.processes: list[Process] = []
        for proc in all_processes(home, unstarted=True):
            self.processes.append(Process(proc.kind[:-1], proc.name, proc.path))
        self.by_name = {p.name: p for p in self.processes}
        self._listings: dict[str, set[str]] = {}
        self._sorted: dict[str, list[tuple[int, str]]] = {}
        self._lookups = 0
        self.archive = ArchiveView(home, self.by_name)

    # -- live folders --------------------------------------------------------------
    def names(self, folder: str) -> set[str]:
        """Everything in `folder` (listed once; a missing or closed folder is empty)."""
        found = self._listings.get(folder)
        if found is None:
            try:
                found = set(os.listdir(folder))
            except OSError:
                found = set()
            self._listings[folder] = found
        return found

    def live_copies(self, filename: str) -> list[Copy]:
        """Every queue folder that holds `filename` now.

        The first lookups stat the file in each folder, which is cheaper than listing
        folders of 100,000 files; after many (a long origin) every folder is listed once.
        """
        self._lookups += 1
        listed = self._lookups > STAT_LOOKUPS
        found = []
        for proc in self.processes:
            base = f"{proc.kind}s/{proc.name}"
            for label, sub in FOLDERS:
                folder = f"{proc.path}/{sub}"
                if (listed or folder in self._listings) and filename not in self.names(folder):
                    continue
                try:
                    arrived = os.stat(f"{folder}/{filename}").st_ctime_ns // 1_000_000
                except OSError:
                    continue
                found.append(Copy(proc, label, f"{base}/{sub}/{filename}", arrived_ms=arrived))
        return found

    def with_id(self, mid: str) -> list[str]:
        """Filenames `{ts}-{mid}.msg` present in any queue folder or archive day."""
        suffix = f"-{mid}.msg"
        found: set[str] = set()
        for proc in self.processes:
            for _, sub in FOLDERS:
                found.update(n for n in self.names(f"{proc.path}/{sub}") if n.endswith(suffix))
        if not found:
            found = self.archive.with_id(mid)
        return sorted(found)

    def outbox_between(self, proc: Process, low: int, high: int | None) -> list[str]:
        """Names in `proc`'s outbox whose timestamp is in [low, high] (no bound: None)."""
        folder = f"{proc.path}/outbox"
        ordered = self._sorted.get(folder)
        if ordered is None:
            ordered = sorted((ts, n) for n in self.names(folder) if (ts := ts_of(n)) is not None)
            self._sorted[folder] = ordered
        start = bisect.bisect_left(ordered, (low, ""))
        stop = len(ordered) if high is None else bisect.bisect_right(ordered, (high, "\U0010ffff"))
        return [name for _, name in ordered[start:stop]]

    # -- the archive ---------------------------------------------------------------
    @property
    def archive_files(self) -> int:
        return len(self.archive.days)

    def archived_copies(self, filename: str) -> list[Copy]:
        return self.archive.copies(filename)
