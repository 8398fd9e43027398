"""Archiving old messages: `inbox/.processed/` files, and outbox files the router is done with.

An outbox file is archived only when nothing can still need it: every current route
from its process has delivered it (or never will: it is older than the route, its
`when` is false, its `to` names nobody), or the process has no outgoing route (it is
a final result), and its parent is not in `.in-progress/` (where recovery looks for
it, SPEC 4 step 6). Files are deleted only after their archive file was written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loom.errors import LoomError
from loom.names import validate_name
from loom.ops.gc import archive
from loom.ops.gc.report import Report
from loom.routing import Leg
from loom.routing.condition import Condition, ExpressionError
from loom.routing.endpoints import is_known
from loom.routing.ledger import DeliveryLog, Start, delivery_log
from loom.store.files import load_json
from loom.store.message import FILENAME_RE, Message, from_dict
from loom.store.queue import IN_PROGRESS, PROCESSED, is_message_name


@dataclass
class Batch:
    """Records waiting to be written, per archive day, and the files they come from."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sources: dict[str, list[Path]] = field(default_factory=dict)

    def add(self, day: str, record: dict[str, Any], source: Path) -> None:
        self.records.setdefault(day, []).append(record)
        self.sources.setdefault(day, []).append(source)


def old_files(folder: Path, cutoff_ms: int) -> Iterator[tuple[str, int]]:
    """`(name, arrival ms)` of the messages in `folder` created and arrived before `cutoff_ms`.

    The filename's timestamp rules most files out without a stat; the ctime (set by the
    rename that brought the file here) says when it arrived.
    """
    try:
        names = sorted(n for n in os.listdir(folder) if is_message_name(n))
    except FileNotFoundError:
        return
    base = str(folder)
    for name in names:
        m = FILENAME_RE.fullmatch(name)
        if m and int(m.group(1)) >= cutoff_ms:
            continue
        try:
            arrived = os.stat(os.path.join(base, name)).st_ctime_ns // 1_000_000
        except FileNotFoundError:
            continue
        if arrived < cutoff_ms:
            yield name, arrived


def _old_contents(
    folder: Path, cutoff_ms: int, report: Report
) -> Iterator[tuple[Path, int, bytes]]:
    """`(path, arrival ms, bytes)` of each old message in `folder` (see old_files); a file
    that cannot be read is reported and passed over, one gone meanwhile is passed over."""
    for name, arrived in old_files(folder, cutoff_ms):
        path = folder / name
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.error(path, exc)
            continue
        yield path, arrived, raw


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        data = load_json(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _decode(data: dict[str, Any] | None) -> Message | None:
    if data is None:
        return None
    try:
        return from_dict(data)
    except LoomError:
        return None


def _record(
    report: Report, path: Path, arrived: int, raw: bytes, data: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    record: dict[str, Any] = {"path": report.relative(path), "arrived": arrived}
    if data is not None:
        record["message"] = data
    else:
        record["raw"] = raw.decode("utf-8", errors="replace")
    m = FILENAME_RE.fullmatch(path.name)
    created = int(m.group(1)) if m else arrived
    return archive.day_of(created), record


def collect_processed(proc_dir: Path, cutoff_ms: int, batch: Batch, report: Report) -> None:
    """Queue every old `.processed/` file of one process for the archive."""
    for path, arrived, raw in _old_contents(proc_dir / "inbox" / PROCESSED, cutoff_ms, report):
        day, record = _record(report, path, arrived, raw, _json(raw))
        batch.add(day, record, path)


class OutboxRules:
    """Decides whether the router is done with a file in one process's outbox."""

    def __init__(self, home: Path, source: str, legs: list[Leg], starts: dict[str, Start]) -> None:
        self.home = home
        self.source = source
        self.legs = [leg for leg in legs if leg.source == source]
        self.starts = starts
        self.conditions = {leg.key: Condition(leg.when) for leg in self.legs if leg.when}
        self._logs: dict[str, DeliveryLog] = {}

    def _delivered(self, dest: str, name: str) -> bool:
        log = self._logs.get(dest)
        if log is None:
            log = self._logs[dest] = delivery_log(self.home, self.source, dest)
        return name in log

    def settled(self, name: str, msg: Message | None, outbox_fd: int) -> bool:
        """Whether no current route will ever deliver `name` again (SPEC 7)."""
        for leg in self.legs:
            start = self.starts.get(leg.key)
            if start is not None and start.precedes(name, outbox_fd):
                continue  # history when the route was made: never delivered
            if msg is None:
                continue  # the router does not route unreadable files
            condition = self.conditions.get(leg.key)
            if condition is not None:
                try:
                    if not condition.matches(msg):
                        continue
                except ExpressionError:
                    continue  # the router logs it and does not route it either
            for dest in [leg.dest] if leg.dest is not None else _known(self.home, msg):
                if not self._delivered(dest, name):
                    return False
        return True


def _known(home: Path, msg: Message) -> list[str]:
    # A routing node delivers to the valid, existing names in `to` (docs/routing.md).
    found = []
    for dest in dict.fromkeys(msg.to or ()):
        with contextlib.suppress(LoomError):
            if is_known(home, validate_name(dest)):
                found.append(dest)
    return found


def collect_outbox(
    proc_dir: Path, rules: OutboxRules, cutoff_ms: int, batch: Batch, report: Report
) -> None:
    """Queue every old outbox file the router is done with for the archive."""
    outbox = proc_dir / "outbox"
    try:
        busy = set(os.listdir(proc_dir / "inbox" / IN_PROGRESS))
    except FileNotFoundError:
        busy = set()
    try:
        fd = os.open(outbox, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        for path, arrived, raw in _old_contents(outbox, cutoff_ms, report):
            data = _json(raw)
            msg = _decode(data)
            if msg is not None and msg.origin and msg.origin.rsplit("/", 1)[-1] in busy:
                continue  # the reply of a message a crash left in progress
            if not rules.settled(path.name, msg, fd):
                continue
            day, record = _record(report, path, arrived, raw, data)
            batch.add(day, record, path)
    finally:
        os.close(fd)


def write(home: Path, batch: Batch, report: Report) -> None:
    """Append each day's records to its archive file, then delete the archived files.

    Records already in the archive (a run interrupted between the two steps) are not
    added twice. A damaged archive file is never appended to: its files stay put.
    """
    for day in sorted(batch.records):
        target = archive.archive_path(home, day)
        sources = batch.sources[day]
        if report.dry_run:
            for source in sources:
                report.add("archive", source, target=target)
            continue
        try:
            done = archive.archived_paths(target)
            fresh = [r for r in batch.records[day] if r["path"] not in done]
            if fresh:
                archive.append_member(target, archive.member(fresh))
        except archive.DamagedArchive as exc:
            report.error(target, f"{exc}; move it away and run loom gc again")
            continue
        except OSError as exc:
            report.error(target, exc)
            continue
        for source in sources:
            # One moved meanwhile (a replay) is passed over: the archive keeps a copy.
            report.remove(source, "archive", target=target)
