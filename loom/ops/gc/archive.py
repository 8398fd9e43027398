"""The message archive: `$LOOM_HOME/archive/<YYYY-MM-DD>.ndjson.gz` (SPEC 11).

One JSON line per archived file, `{"path": ..., "arrived": ms, "message": {...}}`
(`raw` instead of `message` for a file that was not a valid message), grouped by the
UTC day the message was created, so `loom trace` opens only the days that can hold
what it looks for. Each `loom gc` run adds one gzip member; the file is rewritten
atomically (old bytes, then the new member), so a crash never damages what was there,
and `zcat FILE | jq` reads all members as one stream.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loom.store import atomic

ARCHIVE_DIR = "archive"
DAY_RE = re.compile(r"(\d{4}-\d{2}-\d{2})\.ndjson\.gz")


class DamagedArchive(Exception):
    """An archive file that does not decompress to the end; it is never appended to."""


def archive_dir(home: Path) -> Path:
    return home / ARCHIVE_DIR


def day_of(ms: int) -> str:
    """The UTC day (`YYYY-MM-DD`) of a Unix time in milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def archive_path(home: Path, day: str) -> Path:
    return archive_dir(home) / f"{day}.ndjson.gz"


def archive_days(home: Path) -> dict[str, Path]:
    """Day → archive file, for every archive file present."""
    try:
        names = os.listdir(archive_dir(home))
    except FileNotFoundError:
        return {}
    found = {}
    for name in names:
        m = DAY_RE.fullmatch(name)
        if m:
            found[m.group(1)] = archive_dir(home) / name
    return found


def read_lines(path: Path) -> Iterator[bytes]:
    """The lines of every member of an archive file; DamagedArchive if it is cut short."""
    try:
        with gzip.open(path, "rb") as f:
            yield from f
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError):
            raise
        raise DamagedArchive(f"{path}: {exc}") from None


# Records are written with `path` first, so it is found without parsing the line.
_PATH_RE = re.compile(rb'^\{"path":"([^"]*)"')


def path_of(line: bytes) -> str | None:
    """The `path` of an archive line, or None for a line gc did not write."""
    m = _PATH_RE.match(line)
    return m.group(1).decode("utf-8", "replace") if m else None


def archived_paths(path: Path) -> set[str]:
    """The `path` of every record already in an archive file (empty when it is absent)."""
    if not path.exists():
        return set()
    return {found for line in read_lines(path) if (found := path_of(line)) is not None}


def member(lines: Iterable[dict[str, Any]]) -> bytes:
    """One gzip member holding `lines` as NDJSON."""
    text = "".join(
        json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n" for record in lines
    )
    return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)


def append_member(path: Path, data: bytes) -> None:
    """Add a gzip member to `path` atomically: the old bytes and the member go to a
    new file that then takes its place."""
    atomic.make_private_dir(path.parent)
    with atomic.replacing(path) as out:
        try:
            with open(path, "rb") as old:
                shutil.copyfileobj(old, out, 1 << 20)
        except FileNotFoundError:
            pass
        out.write(data)
