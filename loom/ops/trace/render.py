"""A Lineage for people (a tree, one line per message) and for scripts (JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from loom.elapsed import format_elapsed
from loom.ops.trace.lineage import Lineage, Node
from loom.ops.trace.status import Outcome
from loom.wording import count

# Deeper than this, the tree stops indenting (an origin may have 1,000 segments).
MAX_INDENT = 24


def iso(ms: int | None) -> str:
    if ms is None:
        return "?"
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hop(ms: int | None) -> str:
    """`+420ms`, `+3.2s`, `+5m10s`: time from the parent's creation to this message's."""
    if ms is None:
        return ""
    sign = "+" if ms >= 0 else "-"
    return sign + format_elapsed(abs(ms) / 1000, fraction=True, largest="h")


def hop_ms(node: Node, by_file: dict[str, Node]) -> int | None:
    parent = by_file.get(node.parent) if node.parent else None
    if parent is None or node.ts is None or parent.ts is None:
        return None
    return node.ts - parent.ts


def where(outcomes: list[Outcome]) -> str:
    """`out of a, b: processed, c: failed (timeout: ...)` for one message."""
    parts = []
    for o in sorted(outcomes, key=lambda o: o.state != "sent"):
        archived = " [archived]" if o.archive else ""
        if o.state == "sent":
            parts.append(f"out of {o.process}{archived}")
        else:
            detail = f" ({o.detail})" if o.detail else ""
            parts.append(f"{o.process}: {o.state}{detail}{archived}")
    return ", ".join(parts)


def text(lineage: Lineage) -> str:
    """The tree: `file  from  time  +hop  where it is / what happened`."""
    by_file = {n.file: n for n in lineage.nodes}
    lines = []
    last_at_depth: dict[int, bool] = {}
    for index, node in enumerate(lineage.nodes):
        later = lineage.nodes[index + 1 :]
        is_last = not any(n.depth == node.depth and n.parent == node.parent for n in later)
        last_at_depth[node.depth] = is_last
        prefix = ""
        for depth in range(1, min(node.depth, MAX_INDENT)):
            prefix += "   " if last_at_depth.get(depth, True) else "│  "
        if node.depth:
            prefix += "└─ " if is_last else "├─ "
        fields = [node.file, node.sender or "?", iso(node.ts), hop(hop_ms(node, by_file))]
        status = node.note if node.note and not node.outcomes else where(node.outcomes)
        if node.note and node.outcomes:
            status += f" ({node.note})"
        fields.append(status)
        line = prefix + "  ".join(f for f in fields if f)
        lines.append(line + ("  ◀" if node.target else ""))
    if lineage.unreadable:
        lines.append(f"({count(len(lineage.unreadable), 'unreadable file')} skipped)")
    for problem in lineage.damaged_archives:
        lines.append(f"(damaged archive skipped: {problem})")
    return "\n".join(lines)


def to_json(lineage: Lineage) -> dict[str, Any]:
    """`{target, root, messages: [...], unreadable, damaged_archives}`; messages in tree
    order, each with its parent, depth, hop and every copy's status."""
    by_file = {n.file: n for n in lineage.nodes}
    messages = []
    for node in lineage.nodes:
        message = node.message or {}
        messages.append(
            {
                "file": node.file,
                "id": message.get("id"),
                "from": node.sender,
                "ts": node.ts,
                "time": iso(node.ts) if node.ts is not None else None,
                "parent": node.parent,
                "depth": node.depth,
                "hop_ms": hop_ms(node, by_file),
                "target": node.target,
                "error": bool(message.get("error", False)),
                "note": node.note,
                "status": [o.to_json() for o in node.outcomes],
                "children": node.children,
            }
        )
    return {
        "target": lineage.target,
        "root": lineage.nodes[0].file if lineage.nodes else lineage.target,
        "messages": messages,
        "unreadable": lineage.unreadable,
        "damaged_archives": lineage.damaged_archives,
    }
