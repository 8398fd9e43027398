"""A Server-Sent Events parser over a body's lines, in the batches `ResponseReader` reads.

It follows the WHATWG event-stream rules that matter for model APIs: `data:` lines of one
event join with newlines, a blank line dispatches, `:` lines are comments, `id:` and
`retry:` are ignored, and an event cut off before its blank line is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain

DEFAULT_EVENT = "message"

# OpenAI-style streams end with `data: [DONE]`; it is yielded like any other data so the
# caller can tell a finished stream from one that was cut short.
DONE = "[DONE]"


def parse_sse(batches: Iterable[list[str]]) -> Iterator[tuple[str, str]]:
    """Yield `(event, data)` for each dispatched event; `event` defaults to "message".

    `batches` are lists of lines without their line breaks (`ResponseReader.batches`).
    """
    event = ""
    data: list[str] = []
    for line in chain.from_iterable(batches):
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
