"""Functions scripts call: send a message (or many), read an outbox, wait for replies."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from loom.errors import LoomError, NotFound, UnreadableMessage
from loom.names import validate_process_name
from loom.store import home as homes
from loom.store.home import ProcessDir
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
    create: bool = False,
) -> Path:
    """Deliver `body` as a new message to agent or pipe instance `name`; return its path.

    `name` must exist (see `target`), or NoSuchProcess is raised and nothing is written:
    a typo is an error, not an inbox nobody reads. With `create`, a name that does not
    exist yet gets its inbox, and the message waits durably until it starts.
    """
    return queue_for(name, home=home, create=create).send(new_message(sender, body))


class NoSuchProcess(NotFound):
    """A send to a name that is no agent or pipe instance (and `create` was not asked)."""

    def __init__(self, name: str, close: str | None) -> None:
        self.name = name
        self.close = close
        super().__init__(self.sentence("create=True queues it for one that starts later"))

    def sentence(self, hint: str) -> str:
        """The error line, ending with `hint` (how to queue for it anyway) in brackets."""
        guess = f"; did you mean '{self.close}'?" if self.close else ""
        return f"no agent or pipe named '{self.name}'{guess} ({hint})"


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
    create: bool = False,
) -> Queue:
    """Deliver `messages`, in order, into the inbox of `name` (which must exist, or
    `create` be given, as for `send`); return the queue they went to.

    Each file is written atomically under the message's own name, a batch at a time
    with one disk flush per batch; `progress` is told how many were sent after each.
    A failure or Ctrl-C part way raises PartlySent saying how many were delivered.
    """
    queue = queue_for(name, home=home, create=create)
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
    except OSError as exc:
        raise PartlySent(sent, len(messages), exc) from exc
    except LoomError as exc:
        # A message refused (too large once encoded) keeps its own exit code.
        raise PartlySent(sent, len(messages), exc, exit_code=exc.exit_code) from exc
    return queue


def queue_for(name: str, *, home: Path | None = None, create: bool = False) -> Queue:
    """The queue of agent or pipe instance `name` (see `target`), its folders created."""
    proc = target(name, home=home, create=create)
    proc.create()
    return Queue(proc.inbox, proc.outbox)


def target(name: str, *, home: Path | None = None, create: bool = False) -> ProcessDir:
    """The folder messages for `name` go to, not created; NoSuchProcess when there is none.

    A name exists when its folder under the home was started at least once (it has a
    status file), already holds an inbox (queued for earlier, with `create`), or is a
    pipe defined with `loom pipe create` and not started yet. A started one comes first
    (an agent before a pipe), then a queued one. With `create`, a name that does not
    exist is an agent's, or a pipe instance's for `<pipe>~<source>→<dest>`.
    """
    validate_process_name(name)
    root = homes.home(home)
    for unstarted in (False, True):
        for kind in homes.KINDS:
            proc = ProcessDir(root, kind, name)
            if homes.is_process(proc.path, unstarted=unstarted):
                return proc
    pipe = homes.pipe_instance(name, root)
    if (pipe.path / "config.json").is_file():
        return pipe
    if create:
        return pipe if "~" in name else homes.agent(name, root)
    known = [p.name for p in homes.all_processes(root, unstarted=True)]
    import difflib  # only for a name that is not there: it costs start-up otherwise

    close = difflib.get_close_matches(name, known, n=1)
    raise NoSuchProcess(name, close[0] if close else None)


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
