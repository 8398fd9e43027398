"""Day logs and crash records: gzip, then delete, by age (SPEC 11).

A day log's age counts from the end of its UTC day, the last moment a line can land in
it, so today's file is never touched, whatever the retention.
"""

from __future__ import annotations

import gzip
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from loom.ops.gc import archive
from loom.ops.gc.report import Report
from loom.supervisor.policy import crash_time

DAY_FILE_RE = re.compile(r"(\d{4}-\d{2}-\d{2})\.ndjson(\.gz)?")
# A late writer may still append while a file is compressed: read again until stable.
_MAX_ROUNDS = 5


def day_end(day: str) -> float:
    """Unix seconds at the end of UTC day `YYYY-MM-DD`."""
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    return (start + timedelta(days=1)).timestamp()


def tidy_logs(
    logs_dir: Path, *, compress_after: int, delete_after: int, now: float, report: Report
) -> None:
    """Gzip day logs `compress_after` seconds after their day, delete them after `delete_after`."""
    try:
        names = sorted(os.listdir(logs_dir))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        m = DAY_FILE_RE.fullmatch(name)
        if m is None:
            continue
        end = day_end(m.group(1))
        path = logs_dir / name
        if end + delete_after <= now:
            report.remove(path)
        elif not m.group(2) and end + compress_after <= now:
            _compress(path, logs_dir / f"{name}.gz", report)


def _compress(path: Path, target: Path, report: Report) -> None:
    """Append the log to `target` as a gzip member, then delete it (never losing a line)."""
    if report.dry_run:
        report.add("compress", path, target=target)
        return
    try:
        with open(path, "rb") as f:
            done = 0
            for _ in range(_MAX_ROUNDS):
                chunk = f.read()
                if chunk:
                    archive.append_member(target, _gzip(chunk))
                    done += len(chunk)
                if os.fstat(f.fileno()).st_size == done:
                    break
            else:
                return  # still growing: try again next run
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        report.error(path, exc)
        return
    report.add("compress", path, target=target)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def tidy_crashes(crashes_dir: Path, *, keep: int, now: float, report: Report) -> None:
    """Delete crash records older than `keep` seconds (by the time in their name)."""
    try:
        names = sorted(os.listdir(crashes_dir))
    except (FileNotFoundError, NotADirectoryError):
        return
    cutoff = now - keep
    for name in names:
        written = crash_time(name)
        if written is not None and written < cutoff:
            report.remove(crashes_dir / name)
