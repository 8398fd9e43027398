"""The `loom` command. Each command group lives in its own module and only parses,
delegates to the library, and renders (STYLE 3)."""

from __future__ import annotations

import io
import sys
from typing import Annotated

import typer

from loom.cli import agent, cluster, demo, lifecycle, pipe, send, supervisor, test_cmd
from loom.cli import gc as gc_cmd
from loom.cli import route as route_cmd
from loom.cli import stats as stats_cmd
from loom.cli import tools as tools_cmd
from loom.cli import trace as trace_cmd
from loom.cli import weave as weave_cmd
from loom.cli._group import LoomGroup
from loom.errors import LoomError, describe_os_error

app = typer.Typer(
    name="loom",
    cls=LoomGroup,
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


app.add_typer(agent.app, name="agent", cls=LoomGroup)
app.add_typer(pipe.app, name="pipe", cls=LoomGroup)
app.add_typer(supervisor.app, name="supervisor", cls=LoomGroup)
app.add_typer(cluster.app, name="cluster", cls=LoomGroup)
app.command("send")(send.send)
app.command("test")(test_cmd.test)
app.command("route")(route_cmd.route)
app.command("unroute")(route_cmd.unroute)
app.command("routes")(route_cmd.routes)
app.command("tools")(tools_cmd.tools)

app.command("pipes")(pipe.pipes)
app.command("up", short_help="Start the weave, restarting only what changed.")(weave_cmd.up)
app.command("down")(weave_cmd.down)
app.command("validate")(weave_cmd.validate)
app.command("graph")(weave_cmd.graph)
app.command(
    "trace", short_help="Show the lineage of a message as a tree: its ancestors and descendants."
)(trace_cmd.trace)
app.command("gc")(gc_cmd.gc)
app.command(
    "stats",
    short_help="Show message counts, restarts, queue depths and timings per process and route.",
)(stats_cmd.stats)
app.command("restart")(lifecycle.restart)
app.command("rm")(lifecycle.rm)
app.command("logs")(lifecycle.logs)
app.command("demo")(demo.demo)


def main() -> None:
    """Console-script entry point: a failed file operation or a setting that was read
    outside a command's own handler is still one line on stderr, never a traceback."""
    # A reply may hold a lone surrogate (JSON can escape one); print it as that escape
    # rather than fail on it, as loom's files do (atomic.utf8).
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        app(prog_name="loom")
    except LoomError as exc:
        print(f"loom: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        print(f"loom: {describe_os_error(exc)}", file=sys.stderr, flush=True)
        sys.exit(1)
