"""`loom trace`: the lineage of one message across the weave (SPEC 2 origin, SPEC 10).

A message is found wherever it is under `$LOOM_HOME` (inboxes and their sub-folders,
outboxes, and the archive `loom gc` writes), followed back along its `origin` to the
root of its run, and forward to every message produced from it. The router keeps
filenames, so one filename in an outbox and in the next inbox is one message that
moved; each copy says where it is and what happened to it there.
"""

from __future__ import annotations

from pathlib import Path

from loom.ops.trace.lineage import Lineage, Node, Tracer
from loom.ops.trace.render import text, to_json

__all__ = ["Lineage", "Node", "text", "to_json", "trace"]


def trace(home: Path, ref: str) -> Lineage:
    """The lineage of the message `ref` (a filename, a path to one, or an id).

    Raises UsageError for a malformed `ref` and LoomError when no such message exists.
    """
    tracer = Tracer(home)
    return tracer.lineage(tracer.resolve(ref))
