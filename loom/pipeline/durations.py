"""Durations in pipe definitions: `500ms`, `30s`, `5m`, `1h` (SPEC 6)."""

from __future__ import annotations

import re

from loom.pipeline.errors import ArgError

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
EXAMPLES = "'500ms', '30s', '5m' or '1h'"


def parse_duration(value: object, *, key: str = "duration", allow_zero: bool = False) -> float:
    """Seconds in a duration string; raise ArgError naming `key` for anything else.

    Bare numbers are refused because `timeout: 30` is ambiguous (seconds? ms?).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ArgError(key, f"must be a duration such as {EXAMPLES}, got {value!r}")
    if not isinstance(value, str):
        raise ArgError(key, f"needs a unit: write '{value}s' or '{value}ms', not {value!r}")
    text = value.strip()
    if text.startswith("-"):
        raise ArgError(key, f"must not be negative, got {value!r}")
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        raise ArgError(key, f"must be a duration such as {EXAMPLES}, got {value!r}")
    seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds == 0 and not allow_zero:
        raise ArgError(key, f"must be longer than zero, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of `seconds` in the units parse_duration reads."""
    ms = round(seconds * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
