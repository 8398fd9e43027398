"""The copies of a message: where the same filename is, in a queue folder or the archive."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom.store.message import FILENAME_RE
from loom.store.queue import FAILED, IN_PROGRESS, PROCESSED, UNREADABLE

# Queue folders, as (label, path below the process folder); the label is what users see.
FOLDERS = (
    ("outbox", "outbox"),
    ("pending", "inbox"),
    ("in progress", f"inbox/{IN_PROGRESS}"),
    ("processed", f"inbox/{PROCESSED}"),
    ("failed", f"inbox/{FAILED}"),
    ("unreadable", f"inbox/{UNREADABLE}"),
)
LABEL_OF = {path: label for label, path in FOLDERS}


@dataclass(frozen=True)
class Process:
    """An agent or pipe instance folder."""

    kind: str  # agent | pipe
    name: str
    path: Path


@dataclass(frozen=True)
class Copy:
    """One copy of a message file: in a queue folder, or a record in the archive."""

    process: Process | None
    folder: str  # a label of FOLDERS
    path: str  # relative to $LOOM_HOME (the original path, for an archived copy)
    archive: str | None = None  # the archive file holding it, relative to $LOOM_HOME
    arrived_ms: int | None = None  # when it arrived in its folder, when known
    record: dict[str, Any] | None = None  # the archive record


def ts_of(filename: str) -> int | None:
    """The creation time in a `{ts}-{id}.msg` filename, or None for another name."""
    m = FILENAME_RE.fullmatch(filename)
    return int(m.group(1)) if m else None
