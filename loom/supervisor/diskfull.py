"""What the supervisor does when the disk takes no more writes (ENOSPC, EDQUOT, EROFS).

Every message stays where it is (writes are atomic, so a failed one leaves nothing
half-written), the problem is logged once rather than on every tick, and the loop
retries with a growing pause until a write succeeds, then says it has resumed. The
log is on the same disk and may fail too; stderr then carries the line.
"""

from __future__ import annotations

import sys

from loom.errors import describe_os_error
from loom.store.logs import Log

FIRST_PAUSE_S = 0.25
MAX_PAUSE_S = 30.0


class DiskTrouble:
    """Tracks one disk-full problem at a time; `failed` returns how long to pause."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self._errno: int | None = None
        self._pause = FIRST_PAUSE_S

    @property
    def active(self) -> bool:
        return self._errno is not None

    def failed(self, exc: OSError) -> float:
        """Note a failed write; log it if it is a new problem; the pause before retrying."""
        if exc.errno != self._errno:
            self._errno = exc.errno
            self._pause = FIRST_PAUSE_S
            self._say(
                "error",
                "disk full; supervision and routing wait for space",
                describe_os_error(exc),
            )
        pause = self._pause
        self._pause = min(self._pause * 2, MAX_PAUSE_S)
        return pause

    def recovered(self) -> None:
        """A whole round of work went through: the problem, if any, is over."""
        if self._errno is None:
            return
        self._errno = None
        self._pause = FIRST_PAUSE_S
        self._say("info", "disk writable again; supervision and routing resumed", None)

    def _say(self, level: str, event: str, detail: str | None) -> None:
        try:
            self.log.event(event, level, error=detail)
        except OSError:
            text = f"loom: supervisor: {event}" + (f": {detail}" if detail else "")
            print(text, file=sys.stderr, flush=True)
