"""What happened to one copy of a message: pending, in progress, processed, failed (and
why), dropped (by which operator), unreadable, or sent from an outbox."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom.ops.gc import archive
from loom.ops.trace.copies import Copy
from loom.store.logs import parse_line


@dataclass(frozen=True)
class Outcome:
    """One copy's status; `process` is the agent or pipe whose folder holds it."""

    process: str | None
    kind: str | None
    state: str  # sent | pending | in progress | processed | failed | dropped | unreadable
    path: str
    archive: str | None = None
    detail: str | None = None
    arrived_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "kind": self.kind,
            "state": self.state,
            "path": self.path,
            "archive": self.archive,
            "detail": self.detail,
            "arrived_ms": self.arrived_ms,
        }


def outcome(home: Path, copy: Copy, filename: str) -> Outcome:
    """The status of `copy`, with the error, dropping operator or step progress when known."""
    proc = copy.process
    state = "sent" if copy.folder == "outbox" else copy.folder
    detail: str | None = None
    folder = home / copy.path
    if copy.archive is None and copy.folder in ("failed", "unreadable"):
        detail = _error_record(folder.parent / f"{filename}.error.json")
    elif proc is not None and proc.kind == "pipe" and copy.folder == "processed":
        state, detail = _pipe_result(proc.path / "logs", filename, copy.arrived_ms)
    elif proc is not None and proc.kind == "pipe" and copy.folder == "in progress":
        detail = _steps_done(proc.path / "steps", filename)
    return Outcome(
        proc.name if proc else None,
        proc.kind if proc else None,
        state,
        copy.path,
        copy.archive,
        detail,
        copy.arrived_ms,
    )


def _error_record(path: Path) -> str | None:
    try:
        record = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    text = record.get("last_error") or record.get("reason")
    kind = record.get("error_type")
    if text and kind:
        return f"{kind}: {text}"
    return str(text) if text else None


def _pipe_result(logs: Path, filename: str, acked_ms: int | None) -> tuple[str, str | None]:
    """`dropped` with the operator, or `processed` (noting when nothing was forwarded),
    from the pipe process's log lines about `filename`."""
    days = {archive.day_of(acked_ms)} if acked_ms is not None else set()
    ts = filename.split("-", 1)[0]
    if ts.isdigit():
        days.add(archive.day_of(int(ts)))
    dropped: list[str] = []
    nothing = False
    needle = filename.encode()
    for day in sorted(days):
        for line in _log_lines(logs, day, needle):
            record = parse_line(line)
            if record is None or record.get("msg") != filename:
                continue
            if record.get("event") == "dropped":
                dropped.append(str(record.get("operator")))
            elif record.get("event") == "processed" and record.get("outputs") == []:
                nothing = True
    if dropped:
        return "dropped", "by operator " + ", ".join(dict.fromkeys(dropped))
    return "processed", "nothing forwarded" if nothing else None


def _log_lines(logs: Path, day: str, needle: bytes) -> list[bytes]:
    # The day's log, plain, or gzipped by `loom gc` (then the plain one may be gone).
    found: list[bytes] = []
    for path in (logs / f"{day}.ndjson", logs / f"{day}.ndjson.gz"):
        try:
            with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
                found.extend(line for line in f if needle in line)
        except (OSError, EOFError):
            continue
    return found


def _steps_done(steps: Path, filename: str) -> str | None:
    """`operators 1-2 done` for a message a pipe is working on (its step manifests)."""
    stem = filename[:-4] if filename.endswith(".msg") else filename
    done = []
    try:
        folders = os.listdir(steps)
    except OSError:
        return None
    for folder in folders:
        if folder.isdigit() and (steps / folder / f"{stem}.done").exists():
            done.append(int(folder))
    if not done:
        return "no operator finished yet"
    return f"operators 1-{max(done)} done" if max(done) > 1 else "operator 1 done"
