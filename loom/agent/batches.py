"""What the model reads of a message: its body, or a batch rendered as labelled bodies.

A batch (a body holding the JSON list of envelopes a `window` or `buffer` gathered,
marked `"batch": true`: docs/format.md) is shown to the model as one item per held
message, `[sender] body`, since ids, stamps and origins are noise to it and cost tokens.
A body that continues over several lines has its further lines indented by two spaces,
so every line that starts an item starts with `[`. An agent with `input: envelopes`
gets the JSON as it is; so does every message without the marker.
"""

from __future__ import annotations

import json
from typing import Any

from loom.store.message import Message

INPUT_MODES = ("bodies", "envelopes")
DEFAULT_INPUT = "bodies"
# What `buffer` appends when its timeout, not its condition, closed the batch.
_BUFFER_TIMEOUT = {"_buffer_timeout": True}
_INDENT = "  "


def check_input(mode: str) -> str | None:
    """Why `mode` is not an input mode, or None."""
    if mode in INPUT_MODES:
        return None
    return f"input must be one of {', '.join(INPUT_MODES)}, got {mode!r}"


def prompt_text(msg: Message, mode: str = DEFAULT_INPUT) -> str:
    """The user turn for `msg`: a marked batch rendered as labelled bodies (mode
    `bodies`), anything else its body as it is."""
    if mode != "bodies" or not msg.is_batch:
        return msg.body
    try:
        items = json.loads(msg.body)
    except ValueError:
        return msg.body
    if not isinstance(items, list):
        return msg.body
    return "\n".join(_item(item) for item in items)


def _item(item: Any) -> str:
    if isinstance(item, dict) and isinstance(item.get("body"), str):
        sender = item.get("from")
        label = sender if isinstance(sender, str) else "?"
        if item.get("error") is True:
            label += ", error"
        lines = item["body"].split("\n")
        rest = [_INDENT + line if line else "" for line in lines[1:]]
        return "\n".join([f"[{label}] {lines[0]}", *rest])
    if item == _BUFFER_TIMEOUT:
        return "(the batch closed on its timeout, before it was complete)"
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))
