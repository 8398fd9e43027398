"""How counts are written for people: `1 agent`, `2 pipes`, `0 problems`."""

from __future__ import annotations


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`n` and the noun, singular for exactly one: count(1, "agent") is `1 agent`."""
    word = singular if n == 1 else (plural or singular + "s")
    return f"{n} {word}"
