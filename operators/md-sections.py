#!/usr/bin/env python3
"""md-sections.py - split a Markdown document into one message per section.

A loom `command:` operator (see README.md). The message body (a Markdown document)
arrives on stdin; for every section the operator prints one JSON object on its own
line, so each section becomes one message:

    {"heading":"Install","level":2,"index":1,"text":"Run pip install ..."}

`heading` is null and `level` 0 for text before the first heading. Headings inside
fenced code blocks are not headings. Sections with neither a heading nor text are
skipped. Exit 0 forwards the sections; a body with no text at all exits 1, which
drops the message (and the reason goes to stderr, which loom logs).

Standard library only; Python 3.8 or newer.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator

HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def sections(text: str) -> Iterator[dict[str, object]]:
    """Yield the sections of `text` in order."""
    heading: str | None = None
    level = 0
    lines: list[str] = []
    fence = ""
    index = 0
    for line in text.splitlines():
        opener = FENCE.match(line)
        if opener and (not fence or opener.group(1).startswith(fence)):
            fence = "" if fence else opener.group(1)
        match = None if fence else HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        body = "\n".join(lines).strip("\n")
        if heading is not None or body.strip():
            yield {"heading": heading, "level": level, "index": index, "text": body}
            index += 1
        heading, level, lines = (match.group(2) or "").strip(), len(match.group(1)), []
    body = "\n".join(lines).strip("\n")
    if heading is not None or body.strip():
        yield {"heading": heading, "level": level, "index": index, "text": body}


def main() -> int:
    text = sys.stdin.buffer.read().decode("utf-8", "replace")
    if not text.strip():
        print("md-sections: empty document, nothing to split", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    for section in sections(text):
        out.write(
            json.dumps(section, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        )
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
