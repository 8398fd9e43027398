"""The limits tools run under, read from the environment (docs/configuration.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from loom.errors import UsageError

TIMEOUT_VARIABLE = "LOOM_TOOL_TIMEOUT"
DESCRIBE_TIMEOUT_VARIABLE = "LOOM_TOOL_DESCRIBE_TIMEOUT"
ROUNDS_VARIABLE = "LOOM_TOOL_ROUNDS"
# More output than this is a runaway plugin, not an answer a model could read.
OUTPUT_LIMIT = 1 << 20


@dataclass(frozen=True)
class ToolSettings:
    """Per-call deadline, `describe` deadline, rounds of tool calls per message, and the
    cap on a plugin's output."""

    timeout: float = 60.0
    describe_timeout: float = 5.0
    rounds: int = 10
    output_limit: int = OUTPUT_LIMIT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ToolSettings:
        """Read LOOM_TOOL_TIMEOUT, LOOM_TOOL_DESCRIBE_TIMEOUT and LOOM_TOOL_ROUNDS; a
        malformed value is a usage error naming the variable."""
        return cls(
            timeout=_seconds(env, TIMEOUT_VARIABLE, cls.timeout),
            describe_timeout=_seconds(env, DESCRIBE_TIMEOUT_VARIABLE, cls.describe_timeout),
            rounds=_count(env, ROUNDS_VARIABLE, cls.rounds),
        )


def _seconds(env: Mapping[str, str], variable: str, default: float) -> float:
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{variable} must be a positive number of seconds, not '{raw}'.")
    return value


def _count(env: Mapping[str, str], variable: str, default: int) -> int:
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise UsageError(f"{variable} must be a whole number (0 or more), not '{raw}'.")
    return int(raw)
