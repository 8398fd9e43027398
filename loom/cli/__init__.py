"""The `loom` command. Each command group lives in its own module and only parses,
delegates to the library, and renders (STYLE 3)."""

from __future__ import annotations

import io
import sys

import typer

from loom.cli import agent, lifecycle, pipe, send, supervisor, test_cmd
from loom.cli import gc as gc_cmd
from loom.cli import route as route_cmd
from loom.cli import stats as stats_cmd
from loom.cli import tools as tools_cmd
from loom.cli import trace as trace_cmd
from loom.cli import weave as weave_cmd
from loom.errors import LoomError, describe_os_error

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
app.add_typer(supervisor.app, name="supervisor")
app.command("send")(send.send)
app.command("test")(test_cmd.test)
app.command("route")(route_cmd.route)
app.command("unroute")(route_cmd.unroute)
app.command("routes")(route_cmd.routes)
app.command("tools")(tools_cmd.tools)

app.command("pipes")(pipe.pipes)
app.command("up")(weave_cmd.up)
app.command("down")(weave_cmd.down)
app.command("validate")(weave_cmd.validate)
app.command("graph")(weave_cmd.graph)
app.command("trace")(trace_cmd.trace)
app.command("gc")(gc_cmd.gc)
app.command("stats")(stats_cmd.stats)
app.command("restart")(lifecycle.restart)
app.command("rm")(lifecycle.rm)
app.command("logs")(lifecycle.logs)


def main() -> None:
    """Console-script entry point: a failed file operation or a setting that was read
    outside a command's own handler is still one line on stderr, never a traceback."""
    # A reply may hold a lone surrogate (JSON can escape one); print it as that escape
    # rather than fail on it, as loom's files do (atomic.utf8).
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        app()
    except LoomError as exc:
        print(f"loom: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        print(f"loom: {describe_os_error(exc)}", file=sys.stderr, flush=True)
        sys.exit(1)
