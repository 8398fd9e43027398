"""Many messages from one input: a message per line (`loom send --lines`), or a JSON
value per line (`--ndjson`), all checked before any is sent.

The input is read whole (up to BULK_INPUT_LIMIT) and every line is checked first, so a
bad line means nothing is sent: fixing it and running the command again sends each
message once. Empty and blank lines are skipped; a line ending in CR LF loses the CR.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

from loom.errors import LoomError, UsageError
from loom.store.files import (
    BULK_INPUT_LIMIT,
    MESSAGE_BODY_LIMIT,
    FileTooLarge,
    json_encoder,
    read_bounded,
    read_stream_bounded,
    size_text,
)
from loom.store.message import MAX_BYTES, Message, from_dict, looks_like_envelope, new_messages
from loom.store.queue import MessageTooLarge, encode

# How many bad lines are named one by one before the rest are only counted.
BAD_LINES_SHOWN = 20
# A line this much shorter than a message file cannot outgrow one once JSON escapes it
# (a control character becomes six bytes, the fields around the body are small).
_SAFE_LINE = MAX_BYTES // 6 - 64 * 1024
_compact = json_encoder(ensure_ascii=False, separators=(",", ":"))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# NaN and Infinity are not JSON (RFC 8259 section 6): a line holding them is not JSON.
_decode = json.JSONDecoder(parse_constant=_no_constant).decode


@dataclass(frozen=True, slots=True)
class Line:
    """One message of the input and the line it came from (counting from 1)."""

    number: int
    message: Message


class BadLines(UsageError):
    """Lines that cannot be sent; none of the input was sent."""

    def __init__(self, where: str, bad: list[tuple[int, str]], total: int) -> None:
        self.where = where
        self.bad = bad
        self.total = total
        super().__init__(self.lines()[-1])

    def lines(self) -> list[str]:
        """What to tell the user, a sentence a line: each bad line, then the outcome."""
        if len(self.bad) == 1:
            number, reason = self.bad[0]
            return [f"{self.where} line {number} {reason}; nothing sent"]
        shown = [f"{self.where} line {n} {reason}" for n, reason in self.bad[:BAD_LINES_SHOWN]]
        if len(self.bad) > BAD_LINES_SHOWN:
            shown.append(f"... and {len(self.bad) - BAD_LINES_SHOWN} more bad lines")
        shown.append(f"{len(self.bad)} of {self.total} lines are bad; nothing sent")
        return shown


def read_all(path: str | os.PathLike[str] | None, stream: BinaryIO, flag: str) -> bytes:
    """All of the file at `path`, or of `stream` (stdin) when `path` is None, up to
    BULK_INPUT_LIMIT; a UsageError past it, naming `flag` and how to split the input."""
    try:
        if path is None:
            return read_stream_bounded(stream, BULK_INPUT_LIMIT, "stdin")
        return read_bounded(path, BULK_INPUT_LIMIT, "--file")
    except FileTooLarge:
        where = "stdin" if path is None else os.fspath(path)
        raise UsageError(
            f"{where} is larger than {size_text(BULK_INPUT_LIMIT)}, the limit for {flag}; "
            f"nothing sent. Split it first, e.g. split -l 100000 --filter "
            f"'loom send NAME {flag}'"
        ) from None
    except OSError as exc:
        if isinstance(exc, LoomError):
            raise
        raise UsageError(f"cannot read {os.fspath(path or '-')}: {exc.strerror}") from None


def frame(data: bytes, *, ndjson: bool, sender: str, where: str = "stdin") -> list[Line]:
    """The messages in `data`, one per non-blank line; BadLines naming every line that
    cannot be one (too long, not UTF-8, a NUL byte, not JSON under `ndjson`).

    Under `ndjson` a line that is a loom message envelope (`v`, `id`, `from`, `ts`,
    `body`) is that message, id and origin kept; any other JSON value becomes the body
    of a new message, as compact JSON text. `sender` is the `from` of new messages.
    """
    raw_lines = data.split(b"\n")
    if raw_lines and not raw_lines[-1]:
        raw_lines.pop()
    bad: list[tuple[int, str]] = []
    texts: list[tuple[int, str]] = []
    for number, raw in enumerate(raw_lines, 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        reason = _unreadable(raw)
        if reason is not None:
            bad.append((number, reason))
            continue
        text = raw.decode("utf-8")
        if text.strip():
            texts.append((number, text))
    if ndjson:
        lines = _json_lines(texts, sender, bad)
    else:
        made = new_messages(sender, [text for _, text in texts])
        lines = [Line(n, m) for (n, _), m in zip(texts, made, strict=True)]
    for line in lines:
        if len(line.message.body) > _SAFE_LINE:
            try:
                encode(line.message)
            except MessageTooLarge as exc:
                bad.append((line.number, f"is too large: {exc}"))
    if bad:
        raise BadLines(where, sorted(bad), len(raw_lines))
    return lines


def _unreadable(raw: bytes) -> str | None:
    """Why the bytes of one line cannot be a message body, None when they can."""
    if len(raw) > MESSAGE_BODY_LIMIT:
        return (
            f"is {len(raw)} bytes long, over {size_text(MESSAGE_BODY_LIMIT)}, "
            "the limit for a message body"
        )
    nul = raw.find(b"\0")
    if nul >= 0:
        return f"holds a NUL byte (byte {nul + 1}); a message is text"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"is not valid UTF-8 (byte {exc.start + 1} is 0x{raw[exc.start]:02x})"
    return None


def _json_lines(
    texts: list[tuple[int, str]], sender: str, bad: list[tuple[int, str]]
) -> list[Line]:
    """`--ndjson`: an envelope as itself, any other JSON value as a new message's body."""
    kept: list[tuple[int, Message | None, str]] = []
    for number, text in texts:
        try:
            value = _decode(text)
        except ValueError as exc:
            where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            problem = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            bad.append((number, f"is not JSON ({problem}{where})"))
            continue
        except RecursionError:
            bad.append((number, "is JSON nested too deeply to read"))
            continue
        if looks_like_envelope(value):
            try:
                kept.append((number, from_dict(value), ""))
            except LoomError as exc:  # UnreadableMessage, UnsupportedVersion
                bad.append((number, f"is a message envelope that does not validate: {exc}"))
            continue
        kept.append((number, None, _compact(value)))
    first: dict[str, int] = {}
    for number, msg, _ in kept:
        if msg is not None:
            if msg.filename in first:
                bad.append(
                    (number, f"is the message of line {first[msg.filename]} again (id {msg.id})")
                )
            first.setdefault(msg.filename, number)
    made = iter(new_messages(sender, [body for _, msg, body in kept if msg is None]))
    return [Line(n, msg if msg is not None else next(made)) for n, msg, _ in kept]
