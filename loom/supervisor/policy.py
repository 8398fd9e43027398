"""The one restart policy agents and pipes share (SPEC 8)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from loom import settings
from loom.errors import LoomError
from loom.store.files import FIELD_LIMIT, load_json, read_bounded

POLICIES = ("always", "on-failure", "never")
MAX_DELAY_S = 300.0
DEAD_AFTER = 10  # failures ...
DEAD_WINDOW_S = 3600.0  # ... within this many seconds
# A consumer that met a message from a newer loom exits with EX_CONFIG (sysexits.h):
# restarting it would only meet the same message again (SPEC 2).
UPGRADE_EXIT = 78
UPGRADE_ERROR = "unsupported_version"  # its crash record's error_type
# The same exit without a newer message: a file of its own is unusable (NeedsOperator).
OPERATOR_ERROR = "needs_operator"
# Crash records of a process left stopped until the operator acts (not failures).
HELD_ERRORS = (UPGRADE_ERROR, OPERATOR_ERROR)


@dataclass(frozen=True)
class Backoff:
    """`min(base × 2^restarts, 5 min) + random(0..jitter)`; base and jitter shrink in tests."""

    base: float = 1.0
    jitter: float = 0.5

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Backoff:
        """Read LOOM_RESTART_BASE and LOOM_RESTART_JITTER (SettingError when malformed)."""
        return cls(base=settings.RESTART_BASE.get(env), jitter=settings.RESTART_JITTER.get(env))

    def delay(self, restarts: int) -> float:
        """Seconds to wait before the restart that follows `restarts` recent failures."""
        exponent = min(max(restarts, 0), 30)
        return min(self.base * float(2**exponent), MAX_DELAY_S) + random.uniform(0, self.jitter)


def wants_restart(policy: str, exit_code: int | None, stopped: bool) -> bool:
    """Whether a process that exited should come back (a stopped one never does)."""
    if stopped or policy == "never":
        return False
    if policy == "on-failure":
        return exit_code != 0
    return True


def crash_time(name: str) -> float | None:
    """When the crash record called `name` (`<stamp>-<id>.json`) was written, Unix seconds.

    Ours stamp milliseconds (13 digits); the original TypeScript loom stamps nanoseconds
    (19): the number of digits tells the unit, 16 being microseconds.
    """
    stamp, sep, rest = name.partition("-")
    if not sep or not stamp.isdigit() or not rest.endswith(".json") or not rest[:-5].isalnum():
        return None
    digits = len(stamp)
    if digits <= 13:
        return int(stamp) / 1e3
    if digits <= 16:
        return int(stamp) / 1e6
    if digits <= 19:
        return int(stamp) / 1e9
    return None


def recent_failures(crashes: Path, now: float | None = None) -> int:
    """How many crash records are younger than the dead-after window.

    A stop for a message from a newer loom is recorded but is no failure: restarting
    would not have helped, so it must not push the process toward `dead`.
    """
    horizon = (time.time() if now is None else now) - DEAD_WINDOW_S
    count = 0
    try:
        names = os.listdir(crashes)
    except FileNotFoundError:
        return 0
    for name in names:
        written = crash_time(name)
        if written is not None and written >= horizon and _is_failure(crashes / name):
            count += 1
    return count


def _is_failure(record: Path) -> bool:
    try:
        data = load_json(read_bounded(record, FIELD_LIMIT, "crash record", follow=False))
    except (OSError, ValueError, LoomError):
        return True  # a crash it is, even if its record cannot be read
    return not (isinstance(data, dict) and data.get("error_type") in HELD_ERRORS)


def last_crash(crashes: Path) -> dict[str, object] | None:
    """The newest crash record, if any (for `ps` and the operations guide)."""
    try:
        names = os.listdir(crashes)
    except FileNotFoundError:
        return None
    dated = [(t, n) for n in names if (t := crash_time(n)) is not None]
    newest = max(dated)[1] if dated else None
    if newest is None:
        return None
    try:
        data = load_json(read_bounded(crashes / newest, FIELD_LIMIT, "crash record", follow=False))
    except (OSError, ValueError, LoomError):
        return None
    return data if isinstance(data, dict) else None
