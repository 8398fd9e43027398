"""Spans of time for people: `420ms`, `3.2s`, `5m10s`, `2h05m`, `3d04h`.

One spelling for every table and trace: a span is shown in its largest unit with the
next one beside it, and the largest unit a caller wants caps the ladder.
"""

from __future__ import annotations

# Not typing's: `loom agent ps` does not import typing (tests/test_architecture.py). mypy
# takes it as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    Unit = Literal["s", "m", "h", "d"]
# Largest first: each unit is shown with the one below it (`5m10s`, `2h05m`).
_LADDER: tuple[tuple[Unit, int], ...] = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_elapsed(seconds: float | None, *, fraction: bool = False, largest: Unit = "d") -> str:
    """`seconds` in the largest unit up to `largest` it reaches, with the next unit beside it.

    With `fraction`, a span under a second is in milliseconds and one in seconds has a
    decimal (`420ms`, `3.2s`); without, seconds are whole (`0s`, `42s`). None is `-`.
    """
    if seconds is None:
        return "-"
    if fraction and seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    ladder = _LADDER[[name for name, _ in _LADDER].index(largest) :]
    whole = int(seconds)
    for (name, size), (below, below_size) in zip(ladder, ladder[1:], strict=False):
        if whole >= size:
            return f"{whole // size}{name}{whole % size // below_size:02d}{below}"
    return f"{seconds:.1f}s" if fraction else f"{whole}s"
