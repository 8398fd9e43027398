"""The foreground filter behind `loom pipe run` (SPEC 6, "Foreground").

stdin is framed into messages (one body per line, or all of stdin with `whole`; a line
that is a message envelope is taken as that message), each message runs through the
pipe's chain in memory, and results go to stdout as bodies or as NDJSON envelopes.

Output is buffered and flushed whenever the program would wait: after each read of
stdin, before sleeping until a timed operator's deadline, and at the end. A fast
producer therefore costs one write per read (tens of kilobytes), while `tail -f | loom
pipe run` still shows every result as soon as its line was processed.
"""

from __future__ import annotations

import io
import os
import select
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from loom.errors import NotFound, UnreadableMessage, UsageError
from loom.pipeline import OperatorError, Pipeline, load_definition
from loom.pipeline.body_chain import BodyChain
from loom.store.atomic import utf8
from loom.store.files import MESSAGE_BODY_LIMIT, size_text, too_large
from loom.store.ids import new_ids
from loom.store.message import (
    Message,
    child_origin,
    decode_envelope,
    from_dict,
    new_message,
    new_messages,
)

STDIN_SENDER = "stdin"
# Reads of a pipe return at most what is buffered (64 KiB on Linux); reads of a
# regular file return the whole chunk, which keeps flushes rare on big inputs.
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FilterOptions:
    """How `loom pipe run` frames input and renders output.

    `flush_each` writes every result at once instead of when the filter would wait;
    it exists to measure that policy (bench/pipe_foreground.py), not for users.
    """

    whole: bool = False
    envelope: bool = False
    flush_each: bool = False


class Framer:
    """Turns stdin bytes into messages: one per non-empty line, or one for all input.

    Bytes are decoded as UTF-8 with replacement, so binary input never fails. A line
    ending in CR LF loses the CR. Empty lines are skipped, as jq and most NDJSON tools
    do. `bad_envelopes` collects `(line number, reason)` for lines shaped like an
    envelope that fail validation, `too_long` the numbers of lines longer than `limit`
    bytes; neither is processed (SPEC 2, unreadable). With `whole`, input past `limit`
    raises FileTooLarge.
    """

    def __init__(self, whole: bool = False, limit: int = MESSAGE_BODY_LIMIT) -> None:
        self.whole = whole
        self.limit = limit
        self.lines_read = 0
        self.bad_envelopes: list[tuple[int, str]] = []
        self.too_long: list[int] = []
        self._pending: list[bytes] = []
        self._held = 0  # bytes in _pending
        self._skipping = False  # inside a line already reported as too long

    def feed(self, chunk: bytes) -> list[Message]:
        """Messages completed by `chunk`; an unfinished last line waits for more."""
        return _as_messages(self.feed_items(chunk))

    def feed_items(self, chunk: bytes) -> list[str | Message]:
        """What `feed` gives, with the bodies of lines that are no envelope as text."""
        if self.whole:
            self._hold(chunk)
            if self._held > self.limit:
                raise too_large(None, self.limit, "stdin (--whole)")
            return []
        if self._skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                return []
            self._skipping = False
            chunk = chunk[cut + 1 :]
        end = chunk.rfind(b"\n")
        if end < 0:
            self._hold(chunk)
            if self._held > self.limit:
                self._skip_long_line()
            return []
        complete: bytes | None = chunk[:end]
        if self._pending:
            # Only the held line can pass the limit: a line inside one chunk is shorter
            # than a read (1 MiB), far below any limit a message has.
            first = chunk.find(b"\n")
            if self._held + first > self.limit:
                self._skip_long_line()
                self._skipping = False
                complete = chunk[first + 1 : end] if first < end else None
            else:
                self._pending.append(chunk[:end])
                complete = b"".join(self._pending)
                self._pending, self._held = [], 0
        if end + 1 < len(chunk):
            self._hold(chunk[end + 1 :])
        if complete is None:
            return []
        return self._split(complete.decode("utf-8", "replace"))

    def _hold(self, data: bytes) -> None:
        self._pending.append(data)
        self._held += len(data)

    def _skip_long_line(self) -> None:
        """Drop the line being held: memory stays bounded and the rest of stdin goes on."""
        self._pending, self._held = [], 0
        self._skipping = True
        self.lines_read += 1
        self.too_long.append(self.lines_read)

    def end(self) -> list[Message]:
        """The messages still held at end of input (a last line without newline)."""
        return _as_messages(self.end_items())

    def end_items(self) -> list[str | Message]:
        """What `end` gives, with the bodies of lines that are no envelope as text."""
        data = b"".join(self._pending)
        self._pending, self._held = [], 0
        if not data:
            return []
        text = data.decode("utf-8", "replace")
        if not self.whole:
            return self._split(text)
        self.lines_read += text.count("\n") + 1
        return list(self._frame(text.strip() if _maybe_envelope(text) else "", text, 1))

    def _split(self, text: str) -> list[str | Message]:
        """The non-empty lines of `text`, envelopes as their messages, others as text."""
        lines = text.split("\n")
        crlf = "\r" in text
        first = self.lines_read + 1
        self.lines_read += len(lines)
        if '"body"' not in text:
            # No line can be an envelope: frame them all at once (the usual case).
            if crlf:
                lines = [line[:-1] if line.endswith("\r") else line for line in lines]
            return [line for line in lines if line]
        items: list[str | Message] = []
        for number, line in enumerate(lines, first):
            if crlf and line.endswith("\r"):
                line = line[:-1]
            if not line:
                continue
            if '"body"' in line and _maybe_envelope(line):
                items.extend(self._frame(line, line, number))
            else:
                items.append(line)
        return items

    def _frame(self, candidate: str, body: str, number: int) -> list[Message]:
        """The envelope in `candidate` if it is one, else a new message with `body`."""
        try:
            message = parse_envelope(candidate)
        except UnreadableMessage as exc:
            self.bad_envelopes.append((number, str(exc)))
            return []
        return [message if message is not None else _stdin_message(body)]


def _as_messages(items: list[str | Message]) -> list[Message]:
    """Framed items as messages: a new one from stdin for each text."""
    texts = [item for item in items if type(item) is str]
    if len(texts) == len(items):
        return new_messages(STDIN_SENDER, texts)
    return [_stdin_message(item) if isinstance(item, str) else item for item in items]


def parse_envelope(text: str) -> Message | None:
    """The message `text` encodes, None when it is not an envelope at all.

    Raise UnreadableMessage for a JSON object with every required key whose values are
    wrong, and UnsupportedVersion for one from a newer loom (SPEC 2).
    """
    if not text:
        return None
    decoded = decode_envelope(text)
    return from_dict(decoded) if decoded is not None else None


def _maybe_envelope(text: str) -> bool:
    # Cheap pre-check so ordinary JSON lines are not parsed twice (here and by the
    # operators): an envelope is an object with at least these keys.
    return text.lstrip()[:1] == "{" and '"v"' in text and '"from"' in text


def _stdin_message(body: str) -> Message:
    return new_message(STDIN_SENDER, body)


class Output:
    """Renders results (bodies or envelopes) into a buffer written on `flush()`.

    A body is written as is, followed by a newline unless it already ends with one;
    a body that contains newlines therefore spans several output lines (use envelope
    output when exact framing matters: an envelope is always one line).
    """

    def __init__(self, sink: BinaryIO, envelope: bool = False) -> None:
        self.envelope = envelope
        self.count = 0
        self._sink = sink
        self._parts: list[str] = []
        try:
            self._fd: int | None = sink.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None

    def add(self, messages: Iterable[Message]) -> None:
        """Render `messages` into the buffer; nothing is written until `flush()`."""
        parts = self._parts
        if self.envelope:
            for message in messages:
                parts.append(message.to_json())
                parts.append("\n")
                self.count += 1
            return
        for message in messages:
            body = message.body
            parts.append(body)
            if not body.endswith("\n"):
                parts.append("\n")
            self.count += 1

    def add_bodies(self, bodies: list[str]) -> None:
        """Render result bodies, as `add` renders messages with these bodies."""
        parts = self._parts
        for body in bodies:
            parts.append(body)
            if not body.endswith("\n"):
                parts.append("\n")
        self.count += len(bodies)

    def flush(self) -> None:
        """Write everything buffered; BrokenPipeError reaches the caller."""
        if not self._parts:
            return
        data = utf8("".join(self._parts))
        self._parts = []
        if self._fd is None:
            self._sink.write(data)
            self._sink.flush()
            return
        # Write to the descriptor directly: nothing stays in Python's stdout buffer, so
        # a reader that went away (`| head`) cannot fail the interpreter's exit flush.
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]


class Filter:
    """One foreground run: stdin through `pipeline` to stdout, errors to stderr."""

    def __init__(
        self,
        pipeline: Pipeline,
        name: str,
        output: Output,
        errors: TextIO,
        options: FilterOptions,
    ) -> None:
        self.pipeline = pipeline
        self.name = name
        self.output = output
        self.errors = errors
        self.options = options
        self.failures = 0
        # Plain map/filter chains run on body values alone (loom.pipeline.body_chain).
        self.chain = BodyChain.of(pipeline)

    def run(self, source: BinaryIO) -> None:
        """Process `source` to its end, then flush windows and wait out held messages."""
        framer = Framer(self.options.whole)
        try:
            fd: int | None = source.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        try:
            while True:
                deadline = self.pipeline.next_deadline()
                if fd is not None and deadline is not None:
                    # A timed operator is waiting: read only when input is there, so a
                    # window can time out while stdin is idle.
                    wait = max(0.0, deadline - time.monotonic())
                    if not select.select([fd], [], [], wait)[0]:
                        self._release_due()
                        continue
                chunk = os.read(fd, _CHUNK) if fd is not None else source.read(_CHUNK)
                if not chunk:
                    break
                self._push_all(framer.feed_items(chunk))
                self._report_bad(framer)
                if deadline is not None:
                    self._release_due()
                self.output.flush()
            self._push_all(framer.end_items())
            self._report_bad(framer)
            self.output.add(self.pipeline.flush())
            self._drain()
        finally:
            self.output.flush()

    def _push_all(self, items: list[str | Message]) -> None:
        chain = self.chain
        if chain is None:
            self._push_messages(_as_messages(items))
            return
        run = chain.run
        each = self.options.flush_each
        bodies: list[str] = []  # results of lines the body chain ran, in order
        for item in items:
            if isinstance(item, str):
                try:
                    body = run(item)
                except Exception:
                    # The engine runs it again and reports the operator's error.
                    self._add_bodies(bodies)
                    self._push_messages([_stdin_message(item)])
                    continue
                if body is not None:
                    bodies.append(body)
                    if each:
                        self._add_bodies(bodies)
            else:
                self._add_bodies(bodies)
                self._push_messages([item])
        self._add_bodies(bodies)
        chain.count_drops()

    def _add_bodies(self, bodies: list[str]) -> None:
        """Output the results of the body chain, then forget them."""
        if not bodies:
            return
        if self.output.envelope:
            # What the engine makes (Pipeline.finish): an id for each input line, as the
            # framer gives, then the pipe's message, whose origin is the input's file name
            # (a stdin line has no origin of its own).
            origins = [child_origin(None, f"{ts}-{mid}.msg") for ts, mid in new_ids(len(bodies))]
            self.output.add(new_messages(self.pipeline.instance, bodies, origins))
        else:
            self.output.add_bodies(bodies)
        bodies.clear()
        if self.options.flush_each:
            self.output.flush()

    def _push_messages(self, messages: list[Message]) -> None:
        # Body output needs no new envelopes for the results (ids, origins): skip making them.
        pipeline = self.pipeline
        push = pipeline.push if self.output.envelope else pipeline.push_unfinished
        add = self.output.add
        each = self.options.flush_each
        for message in messages:
            try:
                results = push(message)
            except OperatorError as exc:
                # One message failed an operator (a JMESPath runtime error, say):
                # report it and go on with the next, as the spec asks of a filter.
                self.failures += 1
                self.errors.write(f"loom: pipe {self.name}: {exc}\n")
                self.errors.flush()
                continue
            if results:
                add(results)
                if each:
                    self.output.flush()

    def _release_due(self) -> None:
        deadline = self.pipeline.next_deadline()
        if deadline is not None and time.monotonic() >= deadline:
            self.output.add(self.pipeline.poll())
            self.output.flush()

    def _drain(self) -> None:
        """After end of input, let held messages (throttle) come out on schedule."""
        while (deadline := self.pipeline.next_deadline()) is not None:
            self.output.flush()
            wait = deadline - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.output.add(self.pipeline.poll())

    def _report_bad(self, framer: Framer) -> None:
        for number, reason in framer.bad_envelopes:
            self.failures += 1
            self.errors.write(
                f"loom: pipe {self.name}: line {number} is an unreadable message "
                f"envelope ({reason}); skipped\n"
            )
        for number in framer.too_long:
            self.failures += 1
            self.errors.write(
                f"loom: pipe {self.name}: line {number} is longer than "
                f"{size_text(framer.limit)}, the limit for a message; skipped\n"
            )
        if framer.too_long:
            framer.too_long.clear()
            self.errors.flush()
        if framer.bad_envelopes:
            framer.bad_envelopes.clear()
            self.errors.flush()


def run(
    ref: str,
    options: FilterOptions,
    *,
    source: BinaryIO | None,
    sink: BinaryIO,
    errors: TextIO,
    home: Path | None = None,
) -> Filter:
    """Run pipe `ref` (a name or a file) over `source` until it ends; see the module doc.

    `source` None (the shell closed stdin) is empty input.
    """
    try:
        definition = load_definition(ref, home)
    except NotFound as exc:
        # Naming a pipe that does not exist is a usage error (SPEC 10: exit 2).
        raise UsageError(str(exc)) from None
    pipeline = Pipeline(definition, instance=definition.name, stderr=errors)
    try:
        runner = Filter(pipeline, definition.name, Output(sink, options.envelope), errors, options)
        runner.run(source if source is not None else io.BytesIO())
    finally:
        pipeline.close()
    return runner
