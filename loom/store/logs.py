"""Structured NDJSON logs, one file per UTC day (SPEC 3): `logs/<date>.ndjson`."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from loom.store import atomic, files
from loom.store.home import now_iso

# Not typing's: `loom send` and `loom agent ps` do not import typing
# (tests/test_architecture.py). mypy takes it as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error")
# The original TypeScript loom writes `warn`: the same level, spelled its way.
_ALIASES = {"warn": "warning"}
# Built once (`files.json_encoder`): a queued pipe or an agent logs a few lines per message.
_encode = files.json_encoder(ensure_ascii=False, default=str)


class Log:
    """Appends one JSON object per event; warnings and errors can also go to a stream."""

    def __init__(self, logs_dir: Path, process: str, echo: TextIO | None = None) -> None:
        self.dir = logs_dir
        self.process = process
        self.echo = echo
        self._day = ""
        self._file = ""  # today's log file, a plain string (joined once a day)
        # Kept open between events; a Log shared by threads (a runner's calls in
        # flight) writes each line with one write, which never interleaves (O_APPEND).
        self._out = atomic.Appender()
        self._lock = threading.Lock()

    def event(self, event: str, level: str = "info", *, echo: bool = True, **fields: Any) -> None:
        """Log `event` with `fields`; `msg` names the message file involved, if any.

        `echo=False` keeps a warning or error off the stream, for one the caller reports.
        """
        self._write(event, level, echo, fields)

    def _write(self, event: str, level: str, echo: bool, fields: dict[str, Any]) -> None:
        # Every event comes here, whichever method logged it: a subclass that says its
        # lines its own way (the supervisor's Journal) overrides this.
        ts = now_iso()
        record: dict[str, Any] = {"ts": ts, "level": level, "event": event}
        record["process"] = self.process
        for key, value in fields.items():
            if value is not None:
                record[key] = value
        line = _encode(record)
        day = ts[:10]  # the UTC date the timestamp starts with: one file per day
        if day != self._day:
            self._day, self._file = day, os.path.join(self.dir, f"{day}.ndjson")
        with self._lock:
            try:
                self._out.append(self._file, line)
            except FileNotFoundError:
                atomic.make_private_dir(self.dir)
                self._out.append(self._file, line)
        if echo and self.echo is not None and level in ("warning", "error"):
            detail = fields.get("error") or fields.get("detail") or ""
            about = f" {fields['msg']}" if fields.get("msg") else ""
            text = f"loom: {self.process}: {event}{about}" + (f": {detail}" if detail else "")
            print(text, file=self.echo, flush=True)

    # `fields` passed on as the dict it is: every message logs a few lines.
    def info(self, event: str, **fields: Any) -> None:
        self._write(event, "info", fields.pop("echo", True), fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._write(event, "warning", fields.pop("echo", True), fields)

    def error(self, event: str, **fields: Any) -> None:
        self._write(event, "error", fields.pop("echo", True), fields)


def severity(level: object) -> int | None:
    """How severe a record's `level` is (its place in LEVELS), whichever loom wrote it;
    None for a level neither writes."""
    name = _ALIASES.get(level, level) if isinstance(level, str) else None
    return LEVELS.index(name) if name in LEVELS else None


def stderr_log(logs_dir: Path, process: str, foreground: bool) -> Log:
    """The log of a process; in the foreground warnings also reach stderr."""
    return Log(logs_dir, process, echo=sys.stderr if foreground else None)


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """The record on one log line; None for a line that is not a JSON object (torn by a
    crash, or written by something else)."""
    try:
        record = json.loads(line)
    except ValueError:  # UnicodeDecodeError included
        return None
    return record if isinstance(record, dict) else None


def read_lines(path: Path, offset: int = 0, budget: int | None = None) -> tuple[bytes, int]:
    """The whole lines of `path` after byte `offset`, and the offset to read on from.

    A last line still being written is left for the next call. A file shorter than
    `offset` was replaced: it is read from the start. With a `budget` (bytes read at
    most), a single line longer than it is passed over, since it could never be read
    whole. FileNotFoundError when there is no such file; NotARegularFile, without
    blocking, when a FIFO or device stands in its place.
    """
    with files.open_regular(path, "log file") as f:
        if os.fstat(f.fileno()).st_size < offset:
            offset = 0
        f.seek(offset)
        chunk = f.read(-1 if budget is None else budget)
    complete = chunk[: chunk.rfind(b"\n") + 1]
    if not complete and budget is not None and len(chunk) >= budget:
        return b"", offset + len(chunk)
    return complete, offset + len(complete)
