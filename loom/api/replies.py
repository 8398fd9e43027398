"""Waiting for the replies to messages sent into a queue (`loom send --wait`).

The reply to a message is the first file in the receiver's outbox whose origin ends with
that message's file name (SPEC 2, origin propagation). The router copies outbox files
onward and leaves them in place (SPEC 7), so the outbox is the one place to look; it is
watched (inotify where available), and each file in it is read once, as soon as it is
seen, so a file archived later by `loom gc` has already been read.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from loom.errors import LoomError
from loom.store.message import FILENAME_RE, Message
from loom.store.queue import RECOVERY_SKEW_MS, Queue
from loom.store.watch import watcher

# Even with inotify, look at the outbox now and then: an event can be missed.
RECHECK_S = 1.0
# Replies to many messages arrive one by one, each a wake-up: the outbox is listed at
# most this often, and never more than a tenth of the time (a listing of a large outbox
# takes milliseconds), so the wait leaves the agent the CPU it answers with; but at
# least every quarter of a second while replies come.
MIN_SCAN_GAP_S = 0.02
MAX_SCAN_GAP_S = 0.25
SCAN_SHARE = 0.1


class NoReply(LoomError):
    """The timeout passed before every reply came; `missing` are the indexes of the
    messages still unanswered (they stay queued)."""

    def __init__(self, missing: list[int], timeout: float) -> None:
        super().__init__(f"{len(missing)} messages got no reply within {timeout:g}s")
        self.missing = missing
        self.timeout = timeout


class Interrupted(LoomError):
    """SIGINT or SIGTERM while waiting; the messages not answered yet stay queued."""

    def __init__(self, signum: int) -> None:
        super().__init__("stopped waiting")
        self.exit_code = 128 + signum
        self.missing: list[int] = []


def wait_replies(
    inbox: Path,
    outbox: Path,
    filenames: list[str],
    *,
    timeout: float | None = None,
    ordered: bool = False,
) -> Iterator[tuple[int, Message]]:
    """Yield `(index, reply)` for each message named in `filenames` (sent into `inbox`)
    as its reply reaches `outbox`: in order of arrival, or in the order of `filenames`
    when `ordered`.

    Raise NoReply once `timeout` seconds (None: no limit) pass with replies missing,
    after yielding every reply that did come, and Interrupted on SIGINT or SIGTERM.
    """
    queue = Queue(inbox, outbox)
    index = {name: i for i, name in enumerate(filenames)}
    pending = set(index)
    # Outbox files older than the first message, less the clock skew recovery allows,
    # cannot be replies to it.
    stamps = [int(m.group(1)) for m in map(FILENAME_RE.fullmatch, filenames) if m]
    floor = (min(stamps) if stamps else 0) - RECOVERY_SKEW_MS
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: set[str] = set()
    held: dict[int, Message] = {}
    next_out = 0
    watch = watcher([outbox])
    previous = _on_signals()
    try:
        while True:
            scanned = time.monotonic()
            for parent, reply in queue.replies_to(pending, floor, seen).items():
                pending.discard(parent)
                if ordered:
                    held[index[parent]] = reply
                else:
                    yield index[parent], reply
            while next_out in held:
                yield next_out, held.pop(next_out)
                next_out += 1
            if not pending:
                return
            left = RECHECK_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                for i in sorted(held):
                    yield i, held.pop(i)
                assert timeout is not None
                raise NoReply(sorted(index[name] for name in pending), timeout)
            cost = time.monotonic() - scanned
            watch.wait(min(RECHECK_S, left))
            gap = min(MAX_SCAN_GAP_S, max(MIN_SCAN_GAP_S, cost / SCAN_SHARE))
            gap += scanned - time.monotonic()
            if gap > 0:
                time.sleep(gap)
    finally:
        watch.close()
        _restore(previous)


def _on_signals() -> dict[int, Any]:
    """Turn SIGINT and SIGTERM into Interrupted while waiting (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    return {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
