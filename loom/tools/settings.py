"""The limits tools run under, read from the environment (docs/configuration.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from loom import settings

TIMEOUT_VARIABLE = settings.TOOL_TIMEOUT.name
DESCRIBE_TIMEOUT_VARIABLE = settings.TOOL_DESCRIBE_TIMEOUT.name
ROUNDS_VARIABLE = settings.TOOL_ROUNDS.name
# More output than this is a runaway plugin, not an answer a model could read.
OUTPUT_LIMIT = 1 << 20


@dataclass(frozen=True)
class ToolSettings:
    """Per-call deadline, `describe` deadline, rounds of tool calls per message, and the
    cap on a plugin's output."""

    timeout: float = settings.TOOL_TIMEOUT.default
    describe_timeout: float = settings.TOOL_DESCRIBE_TIMEOUT.default
    rounds: int = settings.TOOL_ROUNDS.default
    output_limit: int = OUTPUT_LIMIT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ToolSettings:
        """Read LOOM_TOOL_TIMEOUT, LOOM_TOOL_DESCRIBE_TIMEOUT and LOOM_TOOL_ROUNDS; a
        malformed value is a usage error naming the variable."""
        return cls(
            timeout=settings.TOOL_TIMEOUT.get(env),
            describe_timeout=settings.TOOL_DESCRIBE_TIMEOUT.get(env),
            rounds=settings.TOOL_ROUNDS.get(env),
        )
