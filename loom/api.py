"""Functions scripts call: send a message, read an outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from loom.errors import NotFound, UnreadableMessage
from loom.store import home as homes
from loom.store.message import Message, new_message
from loom.store.queue import Queue, list_messages, read_message


def send(
    name: str,
    body: str,
    *,
    sender: str = "cli",
    home: Path | None = None,
) -> Path:
    """Deliver `body` as a new message to agent or pipe instance `name`; return its path.

    Sending to a name that does not exist yet creates that agent's inbox, so the
    message waits durably until the agent starts.
    """
    root = homes.home(home)
    try:
        target = homes.find(name, root)
    except NotFound:
        target = homes.agent(name, root)
    target.create()
    return Queue(target.inbox, target.outbox).send(new_message(sender, body))


def read_outbox(
    name: str, *, home: Path | None = None, after: str | None = None
) -> Iterator[Message]:
    """Yield the messages in `name`'s outbox, oldest first, after filename `after` if given.

    Unreadable files are skipped.
    """
    target = homes.find(name, homes.home(home))
    for filename in list_messages(target.outbox):
        if after is not None and filename <= after:
            continue
        try:
            yield read_message(target.outbox / filename)
        except (UnreadableMessage, FileNotFoundError):
            continue
