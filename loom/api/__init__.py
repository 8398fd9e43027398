"""Functions scripts call: send a message (or many), read an outbox, wait for replies."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from loom.errors import LoomError, NotFound, UnreadableMessage
from loom.store import home as homes
from loom.store.message import Message, new_message
from loom.store.queue import Queue, list_messages, read_message

# Messages written per disk flush by `send_all` (and per progress report).
BATCH = 256


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
    return queue_for(name, home=home).send(new_message(sender, body))


class PartlySent(LoomError):
    """Sending many messages stopped part way (a failed write, a signal): the first
    `sent` were delivered, whole, and none after them."""

    def __init__(self, sent: int, total: int, cause: BaseException, exit_code: int = 1) -> None:
        super().__init__(f"{cause}" if str(cause) else type(cause).__name__)
        self.sent = sent
        self.total = total
        self.cause = cause
        self.exit_code = exit_code


def send_all(
    name: str,
    messages: list[Message],
    *,
    home: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> Queue:
    """Deliver `messages`, in order, into the inbox of `name` (created as `send` does);
    return the queue they went to.

    Each file is written atomically under the message's own name, a batch at a time
    with one disk flush per batch; `progress` is told how many were sent after each.
    A failure or Ctrl-C part way raises PartlySent saying how many were delivered.
    """
    queue = queue_for(name, home=home)
    sent = 0
    try:
        for start in range(0, len(messages), BATCH):
            batch = messages[start : start + BATCH]
            # Ctrl-C and SIGTERM wait until the batch is written and counted, so the
            # count said afterwards is what was delivered.
            with _signals_held():
                queue.send_batch(batch)
                sent += len(batch)
            if progress is not None:
                progress(sent)
    except KeyboardInterrupt as exc:
        raise PartlySent(sent, len(messages), exc, exit_code=130) from None
    except (OSError, LoomError) as exc:
        raise PartlySent(sent, len(messages), exc) from exc
    return queue


def queue_for(name: str, *, home: Path | None = None) -> Queue:
    """The queue of agent or pipe instance `name`, its folders created; a name that
    exists as neither is an agent's (see `send`)."""
    root = homes.home(home)
    try:
        target = homes.find(name, root)
    except NotFound:
        target = homes.agent(name, root)
    target.create()
    return Queue(target.inbox, target.outbox)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block; one that came is acted on after it."""
    held = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
