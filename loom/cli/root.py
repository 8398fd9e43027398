"""The `loom` command's root: its options and the table of its commands. A command's
module is imported, and typer turns it into a click command, only when that command is
run (or its help shown), so one call pays for one command, not for all of them."""

from __future__ import annotations

from typing import Annotated

import typer

from loom.cli._group import Entry, LazyGroup

# name → (module, attribute, the line `loom --help` shows for it, short help or None).
# A group's attribute is its typer app; a command's is its function. The listed line is
# the command's short help or the first sentence of its docstring; a test keeps this
# table and the commands it names in step (tests/test_cli_help.py).
ASK_HELP = "Ask a model one question and stream its answer to stdout."
MODELS_HELP = "List the models each configured provider offers, one `provider/model` a line."
DEMO_HELP = "Run the triage weave shipped with loom on the echo model: no network, no key."
COMMANDS: dict[str, Entry] = {
    "agent": Entry("agent", "app", "Start, list, stop and inspect agents."),
    "ask": Entry("ask", "ask", ASK_HELP, paired=True),
    "cluster": Entry("cluster", "app", "Inspect the hosts of a weave with `cluster:`."),
    "demo": Entry("demo", "demo", DEMO_HELP),
    "down": Entry(
        "weave", "down", "Stop every agent and pipe this project started; all state stays on disk."
    ),
    "gc": Entry(
        "gc", "gc", "Archive old processed and delivered messages, compress and delete old logs."
    ),
    "graph": Entry(
        "weave",
        "graph",
        "Draw the weave: agents, pipes, and edges labelled with pipes and conditions.",
    ),
    "logs": Entry(
        "lifecycle",
        "logs",
        "Print the logs of every process of the weave at once, each line after its name.",
    ),
    "models": Entry("models", "models", MODELS_HELP),
    "pipe": Entry("pipe", "app", "Run and manage pipes."),
    "pipes": Entry(
        "pipe", "pipes", "List pipe definitions (stored and catalog) and running pipe instances."
    ),
    "restart": Entry(
        "lifecycle",
        "restart",
        "Stop an agent or pipe instance, then start it again with its stored settings.",
    ),
    "rm": Entry(
        "lifecycle",
        "rm",
        "Stop an agent or pipe instance and delete its folder: queue, replies, logs, state.",
    ),
    "route": Entry(
        "route", "route", "Route the messages SRC writes to its outbox into another inbox."
    ),
    "routes": Entry("route", "routes", "List routes: FROM PIPE TO WHEN FORWARDED LAST HELD."),
    "send": Entry(
        "send",
        "send",
        "Send a message to an agent or pipe; prints the path of the new message file.",
    ),
    "stats": Entry(
        "stats",
        "stats",
        "Show message counts, restarts, queue depths and timings per process and route.",
        short=True,
    ),
    "supervisor": Entry("supervisor", "app", "Run, inspect, stop or restart the supervisor."),
    "test": Entry(
        "test_cmd",
        "test",
        "Run pipe tests: every *.test.yml under PATH, one line per test, then a summary.",
    ),
    "tools": Entry("tools", "tools", "List the tools agents can use: NAME ORIGIN DESCRIPTION."),
    "trace": Entry(
        "trace",
        "trace",
        "Show the lineage of a message as a tree: its ancestors and descendants.",
        short=True,
    ),
    "unroute": Entry(
        "route", "unroute", "Remove a route; messages already delivered stay where they are."
    ),
    "up": Entry("weave", "up", "Start the weave, restarting only what changed.", short=True),
    "validate": Entry(
        "weave",
        "validate",
        "Check weave files and standalone pipe files, like a linter: print every problem as "
        "FILE:LINE:COL: message, and `FILE: ok (...)` for each file without one.",
    ),
}


class RootGroup(LazyGroup):
    """`loom` itself: the commands of COMMANDS, each built when first asked for."""

    table = COMMANDS


app = typer.Typer(
    name="loom",
    cls=RootGroup,
    help="A transparent agent runtime and pipe-and-operator stream engine.\n\n"
    "Example: echo 'hello' | loom agent start a --model echo --stdin",
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
