"""Looking things up in the archive `loom gc` writes, without an index.

A day's archive file is decompressed once, whole, and searched with `bytes.find` for
the filename wanted: only the few lines that contain it are parsed. Which days are
opened follows from the timestamps: a message is archived under the day it was
created, and a child is never older than its parent.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Mapping
from pathlib import Path

from loom.ops.gc import archive
from loom.ops.trace.copies import LABEL_OF, Copy, Process, ts_of
from loom.store.home import KINDS


class ArchiveView:
    """The archive days of one home, decompressed on first use."""

    def __init__(self, home: Path, processes: Mapping[str, Process]) -> None:
        self.home = home
        self.processes = processes
        self.days = archive.archive_days(home)
        self.damaged: list[str] = []
        self._blobs: dict[str, bytes] = {}

    def _blob(self, day: str) -> bytes:
        blob = self._blobs.get(day)
        if blob is None:
            blob = self._blobs[day] = self._read(self.days[day]) if day in self.days else b""
        return blob

    def _read(self, path: Path) -> bytes:
        try:
            return gzip.decompress(path.read_bytes())
        except OSError as exc:
            if not isinstance(exc, gzip.BadGzipFile):
                self.damaged.append(f"{path}: {exc}")
                return b""
        except (EOFError, zlib.error):
            pass
        # Cut short or corrupt: keep the lines before the damage.
        lines: list[bytes] = []
        try:
            lines.extend(archive.read_lines(path))
        except (archive.DamagedArchive, OSError) as exc:
            self.damaged.append(str(exc))
        return b"".join(lines)

    def lines_with(self, day: str, needle: bytes) -> list[bytes]:
        """Every line of `day`'s archive that contains `needle`."""
        blob = self._blob(day)
        found = []
        start = 0
        while (at := blob.find(needle, start)) >= 0:
            begin = blob.rfind(b"\n", 0, at) + 1
            end = blob.find(b"\n", at)
            end = len(blob) if end < 0 else end
            found.append(blob[begin:end])
            start = end + 1
        return found

    def _days_between(self, low: int, high: int | None) -> list[str]:
        first = archive.day_of(max(low, 0))
        last = archive.day_of(high) if high is not None else "9999-12-31"
        return sorted(d for d in self.days if first <= d <= last)

    def copies(self, filename: str) -> list[Copy]:
        """The archive records of `filename`, from the day of its timestamp."""
        ts = ts_of(filename)
        days = [archive.day_of(ts)] if ts is not None else sorted(self.days)
        needle = f'/{filename}"'.encode()
        found = []
        for day in days:
            for line in self.lines_with(day, needle):
                path = archive.path_of(line)
                copy = self._copy(day, line) if path and path.endswith(f"/{filename}") else None
                if copy is not None:
                    found.append(copy)
        return found

    def children(self, parent: str, low: int, high: int | None) -> list[str]:
        """Archived outbox files created in [low, high] whose origin ends with `parent`."""
        found = []
        for day in self._days_between(low, high):
            for line in self.lines_with(day, parent.encode()):
                path = archive.path_of(line) or ""
                folder, _, name = path.rpartition("/")
                ts = ts_of(name)
                if not folder.endswith("/outbox") or ts is None or ts < low:
                    continue
                if high is not None and ts > high:
                    continue
                try:
                    record = json.loads(line)
                    origin = record["message"]["origin"]
                except (ValueError, KeyError, TypeError):
                    continue
                if isinstance(origin, str) and origin.rsplit("/", 1)[-1] == parent:
                    found.append(name)
        return found

    def with_id(self, mid: str) -> set[str]:
        """Filenames `{ts}-{mid}.msg` in any archive day."""
        needle = f'-{mid}.msg"'.encode()
        found = set()
        for day in sorted(self.days):
            for line in self.lines_with(day, needle):
                path = archive.path_of(line)
                if path and path.endswith(f"-{mid}.msg"):
                    found.add(path.rsplit("/", 1)[-1])
        return found

    def _copy(self, day: str, line: bytes) -> Copy | None:
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        rel = str(record.get("path", ""))
        parts = rel.split("/")
        proc = self.processes.get(parts[1]) if len(parts) > 2 else None
        if proc is None and len(parts) > 2 and parts[0] in KINDS:
            proc = Process(parts[0][:-1], parts[1], self.home / parts[0] / parts[1])
        arrived = record.get("arrived")
        return Copy(
            proc,
            LABEL_OF.get("/".join(parts[2:-1]), "archived"),
            rel,
            archive=str(self.days[day].relative_to(self.home)),
            arrived_ms=arrived if isinstance(arrived, int) else None,
            record=record,
        )
