"""Temporary files a killed writer left behind (`.tmp-<name>-<random>`, see loom/store/atomic.py).

A writer that dies between creating its temporary file and renaming it leaves the file
forever: nothing else ever opens that random name. Such files are deleted once they are
older than any write could take, wherever loom writes (queues, steps, state, router,
archive, tool scopes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from loom.ops.gc.report import Report

PREFIX = ".tmp-"
# loom's temporary names end in 8 hex digits of randomness; a file of the user's that
# merely starts with `.tmp-` (say in memory/ or plugins/) is not ours to delete.
TEMP_NAME = re.compile(r"\.tmp-.+-[0-9a-f]{8}")
# No write of loom's takes an hour; a younger file may belong to a writer at work.
MIN_AGE_S = 3600.0
DETAIL = "temporary file left by an interrupted write"


def remove_temp_files(root: Path, *, now: float, report: Report) -> None:
    """Delete (or with a dry run, list) every `.tmp-*` file under `root` older than an hour."""
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            report.error(Path(folder), exc)
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.name.startswith(PREFIX):
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                continue
            if entry.is_dir(follow_symlinks=False) or not TEMP_NAME.fullmatch(entry.name):
                continue  # not one of ours: those are files (or links) named like TEMP_NAME
            _remove(Path(entry.path), now, report)


def _remove(path: Path, now: float, report: Report) -> None:
    try:
        if now - path.lstat().st_mtime < MIN_AGE_S:
            return
    except FileNotFoundError:
        return  # its writer finished or another gc got there first
    except OSError as exc:
        report.error(path, exc)
        return
    report.remove(path, detail=DETAIL)
