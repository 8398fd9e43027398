"""Asking the process that already serves an agent: send into its inbox, wait for the reply.

`loom agent start NAME --stdin` while another process owns NAME's queue (SPEC 4: one
owner per queue) cannot answer the message itself. It hands the message over instead:
the message goes into the inbox, and the reply is the outbox message whose origin ends
with that message's filename (SPEC 2 origin propagation), the same test recovery uses.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

from loom.errors import LoomError
from loom.store.home import ProcessDir
from loom.store.message import Message
from loom.store.queue import RECOVERY_SKEW_MS, Queue
from loom.store.watch import watcher

# Even with inotify, look at the outbox and at the owner now and then: an event can
# be missed, and the owner may stop without answering.
RECHECK_S = 1.0
# States in which a queue without an owner is not about to get one again.
GONE = ("stopped", "dead")
# Written by a chat on a terminal (its pid): an owner that does not answer its inbox.
CHATTING = "chatting"


class Abandoned(LoomError):
    """The wait for a reply was interrupted by a signal; the message is still answered."""

    def __init__(self, signum: int, proc: ProcessDir, names: list[str]) -> None:
        super().__init__(
            f"stopped waiting; {proc.name} will still answer {', '.join(names)} "
            f"(its reply lands in {proc.outbox})"
        )
        self.exit_code = 128 + signum


def check_model(proc: ProcessDir, model: str, owner: int | None) -> None:
    """Refuse to hand a message to an owner that runs another model than the one asked for."""
    running = proc.read("model")
    if running is not None and running != model:
        by = f"pid {owner}" if owner else "another process"
        raise LoomError(
            f"agent '{proc.name}' is already served by {by} with model '{running}', "
            f"not '{model}'; use --model {running}, or stop it first with "
            f"'loom agent stop {proc.name}'"
        )


def ask(proc: ProcessDir, model: str, messages: list[Message]) -> Iterator[Message]:
    """Deliver `messages` to the owner of `proc`'s queue and yield each reply, in order.

    Waits on the outbox (inotify where available) without a deadline: a model may take
    long. Raise Abandoned on SIGINT/SIGTERM (the messages stay queued and are answered),
    and LoomError when the queue loses its owner for good before answering.
    """
    owner = proc.owner_pid()
    check_model(proc, model, owner)
    if owner is not None and proc.read(CHATTING) == str(owner):
        raise LoomError(
            f"agent '{proc.name}' is a chat on a terminal (pid {owner}), which does not "
            f"answer its inbox; use another agent name, or wait for the chat to end"
        )
    queue = Queue(proc.inbox, proc.outbox)
    waiting = [msg.filename for msg in messages]
    # Outbox files older than the first message (less the clock skew recovery allows)
    # cannot be its replies; each file is read once.
    floor = min(msg.ts for msg in messages) - RECOVERY_SKEW_MS
    seen: set[str] = set()
    replies: dict[str, Message] = {}
    watch = watcher([proc.outbox])
    previous = _on_signals(proc, waiting)
    try:
        for msg in messages:
            queue.send(msg, msg.filename)
        for name in list(waiting):
            while name not in replies:
                _scan(queue, floor, seen, set(waiting), replies)
                if name in replies:
                    break
                _check_owner(proc, name)
                watch.wait(RECHECK_S)
            waiting.remove(name)
            yield replies.pop(name)
    finally:
        watch.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _scan(
    queue: Queue, floor: int, seen: set[str], wanted: set[str], found: dict[str, Message]
) -> None:
    for parent, reply in queue.replies_to(wanted, floor, seen).items():
        found.setdefault(parent, reply)


def _check_owner(proc: ProcessDir, name: str) -> None:
    """Fail when nobody serves the queue and nobody will: a foreground owner that ended,
    or a detached one stopped or dead (a crashed detached one is restarted, SPEC 8)."""
    if proc.served_by() is not None:
        return
    if proc.read("mode") != "detached" or proc.status in GONE:
        raise LoomError(
            f"agent '{proc.name}' stopped before answering; {name} waits in its inbox "
            f"for its next start"
        )


def _on_signals(proc: ProcessDir, waiting: list[str]) -> dict[int, Any]:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Abandoned(signum, proc, list(waiting))

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, stop)
    return previous
