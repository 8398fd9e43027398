"""`loom pipe ...`: run and manage pipes."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from loom.cli._common import handle_errors

app = typer.Typer(help="Run and manage pipes.", no_args_is_help=True)


@app.command("run")
@handle_errors
def run(
    pipe: Annotated[
        str, typer.Argument(metavar="NAME|FILE", help="A pipe name, or a YAML/JSON file.")
    ],
    whole: Annotated[
        bool, typer.Option("--whole", help="All of stdin is one message, not one per line.")
    ] = False,
    envelope: Annotated[
        bool, typer.Option("--envelope", help="Print results as JSON message envelopes.")
    ] = False,
) -> None:
    """Run a pipe as a Unix filter: messages from stdin, results to stdout.

    Each stdin line is one message body (--whole: all of stdin is one); a line that
    is a loom message envelope is taken as that message, keeping its id and origin.
    Results print as bodies, one per line, or as NDJSON envelopes with --envelope.
    At end of input, windows and buffers flush. An operator error on one message is
    reported on stderr and that message skipped. NAME is looked up in ./pipes/,
    ./loom.yml, $LOOM_HOME/pipes/ and the catalog shipped with loom.

    Example: printf '{"id":1}\\n{"id":1}\\n' | loom pipe run dedupe-by-id
    """
    from loom.pipeline import pipe_run

    options = pipe_run.FilterOptions(whole=whole, envelope=envelope)
    source = sys.stdin.buffer if sys.stdin is not None else None
    pipe_run.run(pipe, options, source=source, sink=sys.stdout.buffer, errors=sys.stderr)
