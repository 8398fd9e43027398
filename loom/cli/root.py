"""The `loom` command's root: its options, and its commands from the table of
loom.cli.commands. A command's module is imported, and typer turns it into a click
command, only when that command is run (or its help shown), so one call pays for one
command, not for all of them."""

from __future__ import annotations

from typing import Annotated

import typer

from loom.cli._group import LazyGroup
from loom.cli.commands import COMMANDS, ROOT_HELP


class RootGroup(LazyGroup):
    """`loom` itself: the commands of COMMANDS, each built when first asked for."""

    table = COMMANDS


app = typer.Typer(
    name="loom",
    cls=RootGroup,
    help=ROOT_HELP,
    no_args_is_help=True,
    # --install-completion SHELL and --show-completion SHELL (bash, zsh, fish, ...).
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"loom {version('loom-runtime')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print loom's version and exit.",
        ),
    ] = False,
) -> None:
    pass
