"""`loom send`: drop a message into an inbox."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from loom.cli._common import die, handle_errors


@handle_errors
def send(
    name: Annotated[str, typer.Argument(help="Agent or pipe instance to send to.")],
    message: Annotated[str | None, typer.Argument(help="The message body.")] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the body from stdin.")] = False,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the body from a file.")
    ] = None,
    sender: Annotated[str, typer.Option("--from", help="The sender label.")] = "cli",
) -> None:
    """Send a message to an agent or pipe; prints the path of the new message file.

    Example: loom send summarizer "what changed today?"
    """
    given = sum(x for x in (message is not None, stdin, file is not None))
    if given != 1:
        raise die("give the message as an argument, or --stdin, or --file (exactly one)", 2)
    from loom.store.files import MESSAGE_BODY_LIMIT, read_input

    if stdin or file is not None:
        body = read_input(file, sys.stdin.buffer, MESSAGE_BODY_LIMIT, "--file")
    else:
        body = message or ""
    if not body.strip():
        raise die("the message is empty; nothing sent", 2)
    from loom import api

    print(api.send(name, body, sender=sender))
