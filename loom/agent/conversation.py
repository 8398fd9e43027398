"""Reading an agent's conversation files back as context (`loom agent start --continue`).

The runner appends one line per turn to `conversations/<date>.ndjson` (SPEC 3); each
line names the message it answered (`msg`), so the turns of one answer stay together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from loom.providers.base import Turn
from loom.store.files import MiB, NotARegularFile, open_regular
from loom.store.home import ProcessDir

# How many earlier turns a continued session starts with (user and model turns counted
# apart), and how much of each conversation file is read for them: enough for a long
# chat, not a year of it in every request.
CONTINUE_TURNS = 40
TAIL_BYTES = 8 * MiB


def recent_turns(proc: ProcessDir, limit: int = CONTINUE_TURNS) -> list[Turn]:
    """The agent's last `limit` user and model turns, oldest first, whole answers only.

    Tool calls and their results are left out (a provider refuses a tool result whose
    call it has not seen), and so are answers cut to fit: a continued conversation
    starts with a user turn. Unreadable lines are skipped.
    """
    folder = proc.conversations
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".ndjson")
    except OSError:
        return []
    answers: list[list[Turn]] = []
    count = 0
    for path in reversed(files):
        for group in reversed(_answers(path)):
            if count + len(group) > limit:
                return [t for a in reversed(answers) for t in a]
            answers.append(group)
            count += len(group)
    return [t for a in reversed(answers) for t in a]


def _answers(path: Path) -> list[list[Turn]]:
    """The turns of one conversation file, grouped by the message they answered."""
    groups: list[list[Turn]] = []
    current: object = None
    for record in _records(path):
        role, content = record.get("role"), record.get("content")
        if role not in ("user", "assistant") or not isinstance(content, str):
            continue
        if record.get("tool_calls") or not content:
            continue
        msg = record.get("msg")
        if role == "user" and (msg != current or not groups):
            groups.append([])
        if not groups:
            continue  # a model turn whose question was cut off by the tail
        current = msg
        groups[-1].append(Turn(role, content))
    return [g for g in groups if g and g[-1].role == "assistant"]


def _records(path: Path) -> list[dict[str, object]]:
    try:
        with open_regular(path, "conversation file") as f:
            size = os.fstat(f.fileno()).st_size
            start = max(0, size - TAIL_BYTES)
            f.seek(start)
            data = f.read(TAIL_BYTES)
    except (OSError, NotARegularFile):
        return []
    lines = data.split(b"\n")
    if start:
        lines = lines[1:]  # the first line was cut by the tail
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
