"""`loom send`: drop a message (or a message per input line) into an inbox, and wait for
the replies if asked."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from loom.cli._common import die, handle_errors

if TYPE_CHECKING:
    from loom.api.framing import Line
    from loom.errors import LoomError
    from loom.store.home import ProcessDir
    from loom.store.message import Message
    from loom.store.queue import Queue


@handle_errors
def send(
    name: Annotated[str, typer.Argument(help="Agent or pipe instance to send to.")],
    message: Annotated[str | None, typer.Argument(help="The message body.")] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the body from stdin.")] = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="Read the body (or, with --lines/--ndjson, the lines) from a file."
        ),
    ] = None,
    lines: Annotated[
        bool, typer.Option("--lines", help="One message per line of stdin (or --file).")
    ] = False,
    ndjson: Annotated[
        bool,
        typer.Option(
            "--ndjson",
            help="One message per JSON line: a loom envelope as itself, any other value "
            "as the body (compact JSON).",
        ),
    ] = False,
    print_ids: Annotated[
        bool, typer.Option("--print-ids", help="Print the id of each message sent, in input order.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for each reply and print it.")] = False,
    timeout: Annotated[
        str | None,
        typer.Option("--timeout", help="With --wait: give up after this long (30s, 5m, 1h)."),
    ] = None,
    envelope: Annotated[
        bool, typer.Option("--envelope", help="With --wait: print replies as JSON envelopes.")
    ] = False,
    ordered: Annotated[
        bool,
        typer.Option("--ordered", help="With --wait and --lines/--ndjson: replies in input order."),
    ] = False,
    sender: Annotated[str, typer.Option("--from", help="The sender label.")] = "cli",
    create: Annotated[
        bool,
        typer.Option("--create", help="Queue for a NAME that does not exist yet (started later)."),
    ] = False,
) -> None:
    """Send a message to an agent or pipe; prints the path of the new message file.

    With --lines (or --ndjson), every line of stdin is a message, all sent by this one
    process; every line is checked first, and if one is bad nothing is sent. With
    --wait, the command waits for the replies and prints them instead. NAME must be an
    agent or pipe that was started at least once; --create queues for one that is not.

    Example: loom send summarizer "what changed today?"

    Example: loom send nightly --create "run when you start"

    Example: cut -f2 questions.tsv | loom send summarizer --lines --print-ids

    Example: loom send summarizer "what changed today?" --wait --timeout 5m
    """
    bulk = lines or ndjson
    if lines and ndjson:
        raise die("give --lines or --ndjson, not both", 2)
    if bulk:
        if message is not None or stdin:
            flag = "--lines" if lines else "--ndjson"
            raise die(f"{flag} reads stdin (or --file); give no MESSAGE and no --stdin", 2)
    elif sum((message is not None, stdin, file is not None)) != 1:
        raise die("give the message as an argument, or --stdin, or --file (exactly one)", 2)
    for flag, on in (
        ("--timeout", timeout is not None),
        ("--envelope", envelope),
        ("--ordered", ordered),
    ):
        if on and not wait:
            raise die(f"{flag} goes with --wait", 2)
    if ordered and not bulk:
        raise die("--ordered goes with --lines or --ndjson", 2)
    if print_ids and wait:
        raise die(
            "--print-ids and --wait both write stdout; use --wait --envelope, whose "
            "replies carry the origin",
            2,
        )
    seconds = _duration(timeout)
    from loom import api
    from loom.cli import fast

    fast.check_target(name, create)  # before any input is read
    from loom.api import framing
    from loom.store.files import MESSAGE_BODY_LIMIT, read_input
    from loom.store.message import new_message

    if bulk:
        flag = "--lines" if lines else "--ndjson"
        data = framing.read_all(file, sys.stdin.buffer, flag)
        try:
            batch = framing.frame(
                data, ndjson=ndjson, sender=sender, where="stdin" if file is None else str(file)
            )
        except framing.BadLines as exc:
            for text in exc.lines()[:-1]:
                print(f"loom: {text}", file=sys.stderr)
            raise die(exc.lines()[-1], exc.exit_code) from None
        if not batch:
            print("loom: no message lines in the input; nothing sent", file=sys.stderr)
            return
    else:
        if stdin or file is not None:
            body = read_input(file, sys.stdin.buffer, MESSAGE_BODY_LIMIT, "--file")
        else:
            body = message or ""
        if not body.strip():
            raise die("the message is empty; nothing sent", 2)
        batch = [framing.Line(1, new_message(sender, body))]

    progress = _Progress(sys.stderr) if bulk else None
    fresh = batch
    if ndjson:
        fresh = _not_queued_yet(api.target(name, create=create), batch, name)
    messages = [line.message for line in fresh]
    try:
        queue = api.send_all(
            name,
            messages,
            create=create,
            progress=None
            if progress is None
            else lambda n: progress.show(f"sent {n}/{len(messages)}"),
        )
    except api.PartlySent as exc:
        if progress is not None:
            progress.clear()
        raise die(_partly_sent(exc, fresh), exc.exit_code) from None
    except BaseException:
        if progress is not None:
            progress.clear()
        raise
    if progress is not None:
        progress.clear()
    if not wait:
        if print_ids:
            sys.stdout.write("".join(f"{line.message.id}\n" for line in batch))
        elif not bulk:
            print(queue.inbox / messages[0].filename)
        return
    answered: set[int] = set()
    try:
        code = _print_replies(queue, batch, seconds, ordered, envelope, bulk, answered)
    except KeyboardInterrupt:
        # Between the send and the wait (the wait itself reports its own).
        missing = [i for i in range(len(batch)) if i not in answered]
        raise die(_still_queued(queue, batch, missing, bulk, "stopped waiting"), 130) from None
    if code:
        raise typer.Exit(code)


def _not_queued_yet(proc: ProcessDir, batch: list[Line], name: str) -> list[Line]:
    """The lines whose envelope is not in NAME's queue yet. An envelope sent before
    (waiting, being answered, answered or failed) is not sent again, so re-sending an
    input after a partial send or a crash delivers every message once; each skipped
    line is named on stderr (the first 20, then a count)."""
    from loom.store.queue import holds

    fresh: list[Line] = []
    skipped: list[Line] = []
    for line in batch:
        (skipped if holds(proc.inbox, line.message.filename) else fresh).append(line)
    for line in skipped[:20]:
        print(
            f"loom: stdin line {line.number}: {line.message.filename} is in {name}'s queue "
            "already; not sent again",
            file=sys.stderr,
        )
    if len(skipped) > 20:
        print(f"loom: and {len(skipped) - 20} more lines already queued", file=sys.stderr)
    return fresh


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    from loom.pipeline.durations import parse_duration
    from loom.pipeline.errors import ArgError

    try:
        return parse_duration(text, key="--timeout")
    except ArgError as exc:
        raise die(f"--timeout {exc.problem}", 2) from None


def _partly_sent(exc: LoomError, batch: list[Line]) -> str:
    from loom.cli import fast

    return fast.partly_sent(exc, [line.number for line in batch])


def _print_replies(
    queue: Queue,
    batch: list[Line],
    timeout: float | None,
    ordered: bool,
    envelope: bool,
    bulk: bool,
    answered: set[int],
) -> int:
    """Print each reply as it comes (bodies, or envelopes), adding its index to
    `answered`; 1 when one failed or did not come in time, 128+N on signal N."""
    from loom.api.replies import Interrupted, NoReply, wait_replies

    names = [line.message.filename for line in batch]
    progress = _Progress(sys.stderr) if bulk else None
    failed = False
    try:
        for i, reply in wait_replies(
            queue.inbox, queue.outbox, names, timeout=timeout, ordered=ordered
        ):
            answered.add(i)
            if progress is not None:
                progress.clear()
            failed = _print_reply(reply, batch[i].number if bulk else None, envelope) or failed
            if progress is not None:
                progress.show(f"replies {len(answered)}/{len(names)}")
    except NoReply as exc:
        if progress is not None:
            progress.clear()
        what = f"no reply within {exc.timeout:g}s"
        print(f"loom: {_still_queued(queue, batch, exc.missing, bulk, what)}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        if progress is not None:
            progress.clear()
        missing = [i for i in range(len(names)) if i not in answered]
        print(
            f"loom: {_still_queued(queue, batch, missing, bulk, 'stopped waiting')}",
            file=sys.stderr,
        )
        return exc.exit_code
    if progress is not None:
        progress.clear()
    return 1 if failed else 0


def _print_reply(reply: Message, line: int | None, envelope: bool) -> bool:
    """Print one reply; True when it is a failure reply (its body goes to stderr)."""
    out = sys.stdout
    if envelope:
        out.write(reply.to_json() + "\n")
    elif not reply.error:
        out.write(reply.body if reply.body.endswith("\n") else reply.body + "\n")
    out.flush()
    if reply.error:
        where = f"line {line}: " if line is not None else ""
        print(
            f"loom: {where}{reply.body}" if line is not None else reply.body,
            file=sys.stderr,
            flush=True,
        )
    return reply.error


def _still_queued(
    queue: Queue, batch: list[Line], missing: list[int], bulk: bool, what: str
) -> str:
    if not bulk:
        name = batch[0].message.filename
        return (
            f"{what}; the message is still queued ({queue.inbox / name}), "
            f"and its reply will land in {queue.outbox}"
        )
    numbers = [str(batch[i].number) for i in missing[:20]]
    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    return (
        f"{what} to {len(missing)} of {len(batch)} messages (input lines "
        f"{', '.join(numbers)}{more}); they are still queued, and their replies will "
        f"land in {queue.outbox}"
    )


class _Progress:
    """One line on stderr, redrawn at most ten times a second, and only on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.on = stream.isatty()
        self.shown = False
        self.last = 0.0

    def show(self, text: str) -> None:
        now = time.monotonic()
        if not self.on or now - self.last < 0.1:
            return
        self.last = now
        self.stream.write(f"\r\033[K{text}")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False
