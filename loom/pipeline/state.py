"""Durable operator state: `state/<number>-<kind>/state.json`, rewritten atomically.

Besides the operator's own state the file records `applied`: which input (and which
outputs) the state already includes. A queued pipe writes an operator's outputs
before its state, so after a crash `applied` tells whether a step took effect.

Incremental operators (dedupe) append each commit's change as one line of
`journal.ndjson` instead, and the snapshot is rewritten only every COMPACT_EVERY
commits. Every commit has a sequence number: loading replays the journal lines newer
than the snapshot, so a crash between writing a snapshot and emptying the journal
replays nothing twice. A torn last line (a crash during the append) is ignored: its
commit did not happen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loom.errors import NeedsOperator
from loom.pipeline.spec import OperatorSpec
from loom.store import atomic, files
from loom.store.files import json_encoder, load_json

STATE_VERSION = 1
JOURNAL = "journal.ndjson"
COMPACT_EVERY = 2000
# Built once (`json_encoder`): `JSONEncoder.encode` builds a C encoder on every call.
_compact = json_encoder(ensure_ascii=False, separators=(",", ":"))


class Saved:
    """What is on disk for one operator: snapshot state, journal deltas, last `applied`."""

    def __init__(self, state: Any, applied: dict[str, Any] | None, seq: int) -> None:
        self.state = state
        self.applied = applied
        self.seq = seq
        self.deltas: list[Any] = []


class StateStore:
    """Reads and writes the state files of one pipe instance's operators."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self._seq: dict[str, int] = {}  # last commit number per operator folder
        self._journal_lines: dict[str, int] = {}
        # Per operator: its folder and journal file as plain strings (appends are per message).
        self._journals: dict[tuple[int, str], tuple[str, str]] = {}

    def path(self, spec: OperatorSpec) -> Path:
        return self.dir / f"{spec.number}-{spec.kind}" / "state.json"

    def load(self, spec: OperatorSpec) -> Saved | None:
        """The snapshot and newer journal deltas from disk, or None when there is no state."""
        path = self.path(spec)
        saved: Saved | None = None
        raw = _read_state_file(path)
        if raw is not None:
            try:
                doc = load_json(raw)
                if doc.get("operator") != spec.kind:
                    raise ValueError(f"it belongs to a '{doc.get('operator')}' operator")
                saved = Saved(doc["state"], doc.get("applied"), int(doc.get("seq", 0)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise _unusable(path, str(exc)) from None
        lines = self._read_journal(path.parent / JOURNAL)
        for entry in lines:
            if saved is None:
                saved = Saved(None, None, 0)
            if entry["seq"] > saved.seq:
                saved.deltas.append(entry["delta"])
                saved.applied = entry.get("applied")
                saved.seq = entry["seq"]
        key = str(path.parent)
        self._seq[key] = saved.seq if saved is not None else 0
        self._journal_lines[key] = len(lines)
        return saved

    @staticmethod
    def _read_journal(path: Path) -> list[dict[str, Any]]:
        raw = _read_state_file(path)
        if raw is None:
            return []
        entries = []
        for line in raw.splitlines():
            try:
                entry = load_json(line)  # bytes: JSON's own UTF-8 check, per line
                if isinstance(entry, dict) and isinstance(entry.get("seq"), int):
                    entries.append(entry)
            except ValueError:  # UnicodeDecodeError included
                continue  # a torn or garbled append: that commit never completed
        return entries

    def _journal(self, spec: OperatorSpec) -> tuple[str, str]:
        """`(folder, journal file)` of the operator of `spec`."""
        found = self._journals.get((spec.number, spec.kind))
        if found is None:
            folder = str(self.path(spec).parent)
            found = self._journals[(spec.number, spec.kind)] = (
                folder,
                os.path.join(folder, JOURNAL),
            )
        return found

    def append(self, spec: OperatorSpec, delta: Any, applied: dict[str, Any] | None) -> bool:
        """Journal one commit's change; False when the journal is due for compaction."""
        key, journal = self._journal(spec)
        if self._journal_lines.get(key, 0) >= COMPACT_EVERY:
            return False
        seq = self._seq.get(key, 0) + 1
        line = _compact({"seq": seq, "delta": delta, "applied": applied})
        try:
            atomic.append_line(journal, line)
        except FileNotFoundError:
            atomic.make_private_dir(Path(key))
            atomic.append_line(journal, line)
        self._seq[key] = seq
        self._journal_lines[key] = self._journal_lines.get(key, 0) + 1
        return True

    def save(self, spec: OperatorSpec, state: Any, applied: dict[str, Any] | None) -> None:
        """Write a whole snapshot (this commit included), then empty the journal."""
        path = self.path(spec)
        key = str(path.parent)
        seq = self._seq.get(key, 0) + 1
        doc = {
            "v": STATE_VERSION,
            "operator": spec.kind,
            "seq": seq,
            "state": state,
            "applied": applied,
        }
        text = _compact(doc)
        try:
            atomic.write_text(path, text)
        except FileNotFoundError:
            atomic.make_private_dir(path.parent)
            atomic.write_text(path, text)
        self._seq[key] = seq
        if self._journal_lines.get(key, 0):
            # Lines older than the snapshot would be skipped anyway; this keeps loading fast.
            atomic.write_text(path.parent / JOURNAL, "")
            self._journal_lines[key] = 0


def _read_state_file(path: Path) -> bytes | None:
    """The bytes of a state or journal file, None when absent; NeedsOperator when the
    path holds something loom did not write there (a FIFO, a link, a directory, a file
    past STATE_LIMIT), which no restart would get past."""
    try:
        # follow=False: loom writes these files itself, never as symbolic links.
        return files.read_bounded(path, files.STATE_LIMIT, "operator state", follow=False)
    except FileNotFoundError:
        return None
    except files.NotARegularFile as exc:
        raise _unusable(path, f"it is {exc.kind}, not a file loom wrote") from None
    except files.FileTooLarge:
        raise _unusable(path, f"larger than {files.size_text(files.STATE_LIMIT)}") from None
    except OSError as exc:
        raise _unusable(path, exc.strerror or str(exc)) from None


def _unusable(path: Path, reason: str) -> NeedsOperator:
    return NeedsOperator(
        f"{path}: unreadable operator state ({reason}); move it away to restart this operator empty"
    )
