"""`loom agent history`: an agent's past turns, from what its runner already records.

The log says when and how each message ended (`claimed` with the sender, `replied` with
model, tokens and duration, `failed` with the error); the conversation file has the
texts. Both are read newest day first, and only as far back as the turns asked for.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from loom.errors import LoomError, NotFound, UnreadableMessage
from loom.store import home as homes
from loom.store.files import STATE_LIMIT, read_bounded
from loom.store.home import ProcessDir
from loom.store.logs import parse_line
from loom.store.message import parse
from loom.store.queue import FAILED

# Between the texts of successive model calls in one answer, as the runner joins them.
ROUND_SEPARATOR = "\n\n"


@dataclass
class HistoryTurn:
    """One message the agent answered or failed, and what it cost."""

    ts: str  # when it was answered or failed (ISO 8601, UTC)
    msg: str  # the message's file name
    sender: str | None
    prompt: str | None
    reply: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    duration_ms: float | None
    status: str  # ok | failed
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def agent_dir(name: str) -> ProcessDir:
    """The folder of agent `name`; InvalidName for a name that is none, NotFound when
    there is no such agent."""
    proc = homes.agent(name)
    if not proc.exists():
        raise NotFound(f"no agent named '{name}'; see 'loom agent ps --all'")
    return proc


def history(name: str, count: int) -> list[HistoryTurn]:
    """The last `count` turns of agent `name`, oldest first."""
    proc = agent_dir(name)
    if count <= 0:
        return []
    ended: list[dict[str, Any]] = []  # newest first
    claimed: dict[str, dict[str, Any]] = {}
    for records in _days_newest_first(proc.logs):
        for record in reversed(records):
            event, msg = record.get("event"), record.get("msg")
            if not isinstance(msg, str):
                continue
            if event in ("replied", "failed") and "child" not in record:
                if len(ended) < count:
                    ended.append(record)
            elif event == "claimed" and msg not in claimed:
                claimed[msg] = record
        if len(ended) >= count and all(r["msg"] in claimed for r in ended):
            break
    texts = _texts(proc, {r["msg"] for r in ended})
    return [_turn(proc, r, claimed.get(r["msg"]), texts.get(r["msg"])) for r in reversed(ended)]


def _turn(
    proc: ProcessDir,
    end: dict[str, Any],
    start: dict[str, Any] | None,
    text: tuple[str | None, str | None] | None,
) -> HistoryTurn:
    prompt, reply = text or (None, None)
    failed = end.get("event") == "failed"
    if prompt is None and failed:
        prompt = _failed_body(proc, end["msg"])
    duration = end.get("duration_ms")
    if not _is_number(duration) and start is not None:
        duration = _between(start.get("ts"), end.get("ts"))
    return HistoryTurn(
        ts=str(end.get("ts", "")),
        msg=end["msg"],
        sender=_str(start.get("sender")) if start else None,
        prompt=prompt,
        reply=reply,
        model=_str(end.get("model")),
        input_tokens=_int(end.get("input_tokens")),
        output_tokens=_int(end.get("output_tokens")),
        duration_ms=duration if _is_number(duration) else None,
        status="failed" if failed else "ok",
        error=_str(end.get("error")) if failed else None,
    )


def _days_newest_first(logs: Path) -> list[list[dict[str, Any]]]:
    """The records of each day log, newest day first; a day `loom gc` compressed is
    read from its `.ndjson.gz`."""
    try:
        names = os.listdir(logs)
    except (FileNotFoundError, NotADirectoryError):
        return []
    days: dict[str, str] = {}
    for entry in names:
        if entry.endswith(".ndjson"):
            days[entry[: -len(".ndjson")]] = entry
        elif entry.endswith(".ndjson.gz"):
            days.setdefault(entry[: -len(".ndjson.gz")], entry)
    found = []
    for day in sorted(days, reverse=True):
        data = _read(logs / days[day])
        found.append([r for line in data.splitlines() if (r := parse_line(line)) is not None])
    return found


def _read(path: Path) -> bytes:
    """A log or conversation file's bytes, unpacked when gzipped; b"" when unreadable."""
    try:
        data = read_bounded(path, STATE_LIMIT, "log", follow=False)
        return gzip.decompress(data) if path.name.endswith(".gz") else data
    except (OSError, EOFError, LoomError):
        return b""


def _texts(proc: ProcessDir, wanted: set[str]) -> dict[str, tuple[str | None, str | None]]:
    """Per message: the prompt (its first user turn) and the reply (the model's texts)."""
    found: dict[str, tuple[str | None, str | None]] = {}
    try:
        names = sorted(os.listdir(proc.conversations), reverse=True)
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in names:
        if not wanted - found.keys():
            break
        if not entry.endswith((".ndjson", ".ndjson.gz")):
            continue
        prompts: dict[str, str] = {}
        replies: dict[str, list[str]] = {}
        for line in _read(proc.conversations / entry).splitlines():
            record = parse_line(line)
            msg = record.get("msg") if record else None
            if record is None or msg not in wanted or msg in found:
                continue
            content = record.get("content")
            if not isinstance(content, str):
                continue
            if record.get("role") == "user":
                prompts.setdefault(msg, content)
            elif record.get("role") == "assistant" and content:
                replies.setdefault(msg, []).append(content)
        for msg in prompts.keys() | replies.keys():
            reply = ROUND_SEPARATOR.join(replies[msg]) if msg in replies else None
            found[msg] = (prompts.get(msg), reply)
    return found


def _failed_body(proc: ProcessDir, msg: str) -> str | None:
    """The body of a failed message that left no conversation lines (the model never
    answered), from its file in `.failed/`."""
    with contextlib.suppress(OSError, LoomError, UnreadableMessage):
        return parse(read_bounded(proc.inbox / FAILED / msg, STATE_LIMIT, "message")).body
    return None


def _between(start: object, end: object) -> float | None:
    try:
        began = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        ended = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        return None
    return round((ended - began).total_seconds() * 1000, 1)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def one_line(text: str | None, width: int = 40) -> str:
    """`text` on one line, cut to `width` characters with `…`; `-` for none."""
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def dumps(turn: HistoryTurn) -> str:
    """One NDJSON line of `--json`."""
    return json.dumps(turn.to_json(), ensure_ascii=False)
