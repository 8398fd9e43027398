"""What every model call of one agent passes first: its rate limit (`--rate 60/m`) and
the back-off a 429 with Retry-After asked for, shared by all of the agent's calls in
flight, so that N calls wait together instead of each hammering the server."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from loom.errors import UsageError
from loom.store.home import concurrency_problem

_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*")


def check_concurrency(value: int) -> int:
    """`value`, or a UsageError saying why it is not a concurrency."""
    problem = concurrency_problem(value)
    if problem is not None:
        raise UsageError(problem)
    return value


def parse_rate(text: str) -> float:
    """Calls per second from `N/s`, `N/m` or `N/h` (N > 0, e.g. `60/m`); UsageError if not."""
    match = _RATE.fullmatch(text)
    count = float(match.group(1)) if match else 0.0
    if match is None or count <= 0:
        raise UsageError(
            f"rate must look like 60/m, 10/s or 500/h (a number above 0 per s, m or h), "
            f"got {text!r}"
        )
    return count / _PER[match.group(2)]


@dataclass(frozen=True)
class Throttle:
    """A back-off now in force: new calls wait until `until` (time.time())."""

    until: float
    started: bool  # True for the first 429 of this back-off, the one to log
    lengthened: bool  # the end moved later (always so when started)


class CallGate:
    """Spaces an agent's model calls to its rate and holds them during a back-off.

    The rate is a token bucket of one token: a call starts at most every 1/rate
    seconds, however many are in flight, so `10/s` on 20 messages takes about 2 s.
    Thread-safe; `sleep` is how a caller waits (it raises to abandon the wait on stop).
    """

    def __init__(self, per_second: float | None = None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time the next call may start at
        self._held_until = 0.0  # monotonic end of the back-off
        self._until_wall = 0.0

    def enter(self, sleep: Callable[[float], None]) -> None:
        """Wait for this call's turn: the back-off over, and a token."""
        while True:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._held_until, self._next)
                if start <= now:
                    if self.interval:
                        self._next = now + self.interval
                    return
            sleep(start - now)

    def hold(self, seconds: float) -> Throttle:
        """Hold new calls for `seconds` from now (a 429's Retry-After); a back-off
        already in force is only ever lengthened."""
        with self._lock:
            now = time.monotonic()
            started = self._held_until <= now
            lengthened = now + seconds > self._held_until
            if lengthened:
                self._held_until = now + seconds
                self._until_wall = time.time() + seconds
            return Throttle(self._until_wall, started, lengthened)
