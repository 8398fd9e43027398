"""The `loom` command. Each command group lives in its own module and only parses,
delegates to the library, and renders (STYLE 3)."""

from __future__ import annotations

import typer

from loom.cli import agent, pipe, send

app = typer.Typer(
    name="loom",
    help="A transparent agent runtime and pipe-and-operator stream engine.\n\n"
    "Example: echo 'hello' | loom agent start a --model echo --stdin",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(agent.app, name="agent")
app.add_typer(pipe.app, name="pipe")
app.command("send")(send.send)


def main() -> None:
    """Console-script entry point."""
    app()
