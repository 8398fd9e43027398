"""`loom test`: run the YAML unit tests of pipes (`pipes/<name>.test.yml`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loom.cli._common import handle_errors


@handle_errors
def test(
    path: Annotated[
        Path | None,
        typer.Argument(help="A .test.yml file or a folder of them (default: ./pipes)."),
    ] = None,
) -> None:
    """Run pipe tests: every *.test.yml under PATH, one line per test, then a summary.

    A failing test shows a diff of expected and actual outputs. Exit 0 when all pass,
    1 when a test fails, 2 when a test file is malformed (its file and line are named).
    The format is described in docs/pipes.md.

    Example: loom test pipes/
    """
    from loom.pipeline import pipetest

    outcomes = []
    for outcome in pipetest.run(path):
        typer.echo(pipetest.format_outcome(outcome))
        outcomes.append(outcome)
    line, code = pipetest.summary(outcomes)
    typer.echo(line)
    raise typer.Exit(code)
