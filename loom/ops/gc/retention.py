"""`gc.retention` in loom.yml: how long `loom gc` keeps things (SPEC 11).

Durations are a whole number and a unit, `30m`, `12h`, `7d` (`s` and `m` too); `0d`
means "as soon as it is safe". `dedupe_keys` is a count. Unknown keys are errors, so a
typo never silently keeps the default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

_DURATION_RE = re.compile(r"(\d+)(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Retention:
    """Every retention setting, in seconds (durations) or keys (`dedupe_keys`)."""

    processed: int = 7 * 86400  # inbox/.processed/ files, then archived
    outbox: int = 7 * 86400  # delivered (or final) outbox files, then archived
    crashes: int = 90 * 86400  # crashes/*.json, then deleted
    logs_compress: int = 86400  # logs/<date>.ndjson, gzipped this long after the day ends
    logs_delete: int = 30 * 86400  # and deleted this long after the day ends
    steps: int = 7 * 86400  # a pipe's steps/ entries, then deleted
    dedupe_keys: int = 10_000  # keys a dedupe operator keeps
    asks: int = 86400  # the folders `loom ask` leaves (agents/ask-<id>), then deleted

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object]) -> Retention:
        """The defaults overridden by `raw`; ValueError naming the first bad key."""
        values: dict[str, int] = {}
        for key, value in raw.items():
            values[key] = check(key, value)
        return cls(**values)


KEYS = tuple(f.name for f in fields(Retention))
COUNT_KEYS = ("dedupe_keys",)


def parse_duration(text: str) -> int:
    """Seconds in `7d`, `12h`, `30m`, `90s`; ValueError otherwise."""
    m = _DURATION_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"must be a duration like 7d, 12h, 30m or 0d, got {text!r}")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def check(key: str, value: object) -> int:
    """The value of one retention setting; ValueError with a sentence saying what is wrong."""
    if key not in KEYS:
        raise ValueError(f"unknown gc.retention key '{key}' (known: {', '.join(KEYS)})")
    if key in COUNT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"gc.retention.{key} must be a whole number, got {value!r}")
        text = str(value).strip()
        if not text.isdigit():
            raise ValueError(f"gc.retention.{key} must be a whole number, got {value!r}")
        return int(text)
    if not isinstance(value, str):
        raise ValueError(f"gc.retention.{key} must be a duration like 7d (quoted), got {value!r}")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"gc.retention.{key} {exc}") from None
