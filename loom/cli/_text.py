"""Plain-text layout the commands share, with no typer or click in it (loom.cli.fast
uses it too)."""

from __future__ import annotations

from collections.abc import Sequence


def columns(rows: Sequence[Sequence[str]]) -> str:
    """`rows` (a header first) as columns two spaces apart, each as wide as its widest
    cell, with no blanks at the end of a line."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
