"""A Server-Sent Events parser over text lines, as `httpx.Response.iter_lines()` yields them.

It follows the WHATWG event-stream rules that matter for model APIs: `data:` lines of one
event join with newlines, a blank line dispatches, `:` lines are comments, `id:` and
`retry:` are ignored, and an event cut off before its blank line is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

DEFAULT_EVENT = "message"

# OpenAI-style streams end with `data: [DONE]`; it is yielded like any other data so the
# caller can tell a finished stream from one that was cut short.
DONE = "[DONE]"


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Yield `(event, data)` for each dispatched event; `event` defaults to "message"."""
    event = ""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line.startswith("data:"):
            # Nearly every line of a model's stream: the general case below, made short.
            data.append(line[6:] if line.startswith(" ", 5) else line[5:])
            continue
        if not line:
            if data:
                yield event or DEFAULT_EVENT, "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
