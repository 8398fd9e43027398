"""Building `$LOOM_HOME` contents the way the runtime leaves them, for trace and gc tests.

Files are written with the same message and queue code the runners use; the router's
copy is a byte-for-byte copy under the same filename, as in SPEC 7.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from loom.store.home import pid_is_loom
from loom.store.message import Message, new_message
from loom.store.queue import write_message

QUEUE = {
    "pending": "inbox",
    "in progress": "inbox/.in-progress",
    "processed": "inbox/.processed",
    "failed": "inbox/.failed",
    "unreadable": "inbox/.unreadable",
}


def folder(home: Path, process: str, where: str) -> Path:
    """`agents/<process>/<where>` (or `pipes/...` for a name with `~`), created."""
    kind = "pipes" if "~" in process or process.startswith("pipe-") else "agents"
    path = home / kind / process / QUEUE.get(where, where)
    path.mkdir(parents=True, exist_ok=True)
    return path


def put(home: Path, process: str, where: str, msg: Message) -> Path:
    """Write `msg` into a queue folder (`outbox`, `pending`, `processed`, ...)."""
    return write_message(folder(home, process, where), msg)


def answer(home: Path, msg: Message, consumer: str, *, body: str = "done") -> Message:
    """`consumer` takes `msg` (already in its inbox) and replies: reply to its outbox,
    then `msg` moves to `.processed/` (SPEC 4 order)."""
    reply = msg.reply(consumer, body)
    put(home, consumer, "outbox", reply)
    inbox = folder(home, consumer, "pending")
    if (inbox / msg.filename).exists():
        os.rename(inbox / msg.filename, folder(home, consumer, "processed") / msg.filename)
    else:
        put(home, consumer, "processed", msg)
    return reply


def route(home: Path, msg: Message, dest: str) -> None:
    """The router's copy: same bytes, same filename, into `dest`'s inbox."""
    put(home, dest, "pending", msg)


def chain(home: Path) -> list[Message]:
    """cli → a → b → c: a root answered by a, routed to b, answered, routed to c (pending)."""
    root = new_message("cli", "question")
    put(home, "a", "pending", root)
    first = answer(home, root, "a")
    route(home, first, "b")
    second = answer(home, first, "b")
    route(home, second, "c")
    return [root, first, second]


def fail(home: Path, msg: Message, consumer: str, error: str) -> None:
    """`consumer` fails `msg`: failure reply first, then `.failed/` and its record."""
    put(home, consumer, "outbox", msg.reply(consumer, f"could not: {error}", error=True))
    failed = folder(home, consumer, "failed")
    os.rename(folder(home, consumer, "pending") / msg.filename, failed / msg.filename)
    record = {"ts": "2025-01-01T00:00:00Z", "attempts": 4, "last_error": error}
    record["error_type"] = "timeout"
    (failed / f"{msg.filename}.error.json").write_text(json.dumps(record))


@pytest.fixture
def stop_all(loom_home: Path) -> Iterator[None]:
    """Whatever a test started in the background is killed afterwards."""
    yield
    for pidfile in [loom_home / "supervisor.pid", *loom_home.glob("*/*/pid")]:
        try:
            raw = pidfile.read_text().strip()
        except FileNotFoundError:
            continue
        if raw.isdigit() and pid_is_loom(int(raw)):
            os.kill(int(raw), signal.SIGKILL)
