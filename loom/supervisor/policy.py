"""The one restart policy agents and pipes share (SPEC 8)."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from loom import settings

POLICIES = ("always", "on-failure", "never")
MAX_DELAY_S = 300.0
DEAD_AFTER = 10  # failures ...
DEAD_WINDOW_S = 3600.0  # ... within this many seconds


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


def recent_failures(crashes: Path, now: float | None = None) -> int:
    """How many crash records are younger than the dead-after window."""
    horizon = (time.time() if now is None else now) - DEAD_WINDOW_S
    count = 0
    try:
        names = os.listdir(crashes)
    except FileNotFoundError:
        return 0
    for name in names:
        if not name.endswith(".json"):
            continue
        stamp = name.split("-", 1)[0]
        if stamp.isdigit() and int(stamp) / 1000 >= horizon:
            count += 1
    return count


def last_crash(crashes: Path) -> dict[str, object] | None:
    """The newest crash record, if any (for `ps` and the operations guide)."""
    try:
        newest = max((n for n in os.listdir(crashes) if n.endswith(".json")), default=None)
    except FileNotFoundError:
        return None
    if newest is None:
        return None
    try:
        data = json.loads((crashes / newest).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
