"""`loom trace`: where a message came from, where it went, and what happened to it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from loom.cli._common import handle_errors


@handle_errors
def trace(
    message: Annotated[
        str,
        typer.Argument(metavar="ID|FILENAME", help="A message id, filename, or path to one."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object for scripts.")] = False,
) -> None:
    """Show the lineage of a message: its ancestors back to the root of the run, and
    everything produced from it, as a tree.

    Each line is one message: filename, sender, creation time, the time since its
    parent, and where it is now (out of which outbox, pending, in progress, processed,
    failed with the error, dropped by which operator, archived by loom gc).

    Example: loom trace 1742860000000-01JBXYZ9K2ABCDEFGHJKMNPQRS.msg
    """
    from loom.ops import trace as lineage
    from loom.store import home as homes

    found = lineage.trace(homes.home(), message)
    if as_json:
        print(json.dumps(lineage.to_json(found), ensure_ascii=False))
    else:
        print(lineage.text(found))
