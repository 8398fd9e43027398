"""`loom pipe ...` and `loom pipes`: run, serve, define and list pipes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
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


@app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Argument(help="The new pipe's name.")],
    file: Annotated[
        Path | None, typer.Argument(help="A YAML or JSON definition; '-' or none reads stdin.")
    ] = None,
) -> None:
    """Define a pipe at run time: validate it and store it in LOOM_HOME.

    Routes can then use it (`loom route a --pipe NAME --to b`).

    Example: printf -- '- filter: "level == `error`"\\n' | loom pipe create errors-only
    """
    from loom.pipeline import pipe_admin
    from loom.store import home as homes
    from loom.store.files import CONFIG_LIMIT, read_input

    path = None if file is None or str(file) == "-" else file
    text = read_input(path, sys.stdin.buffer, CONFIG_LIMIT, "pipe definition")
    source = "<stdin>" if path is None else str(path)
    print(pipe_admin.create(name, text, source, homes.home()))


@app.command("start")
@handle_errors
def start(
    name: Annotated[str, typer.Argument(help="Pipe name, definition file, or instance name.")],
    instance: Annotated[
        str | None,
        typer.Option("--instance", help="Instance to serve (default: NAME)."),
    ] = None,
) -> None:
    """Serve a pipe instance's inbox in the foreground until Ctrl-C or SIGTERM.

    The definition is resolved like `loom pipe run` does and stored as the instance's
    config.json when it has none. Results go to $LOOM_HOME/pipes/INSTANCE/outbox/;
    with `concurrency: N` in the definition, N messages at a time, in the order they
    finish. A stop lets the messages in flight finish.

    Example: loom pipe start dedupe-by-id --instance dedupe-by-id
    """
    # Imported here so `loom --help` does not load the pipe engine (and jmespath).
    from loom.pipeline.process import start as start_instance

    start_instance(name, instance=instance)


@app.command("serve", hidden=True)
@handle_errors
def serve(instance: Annotated[str, typer.Argument(help="Pipe instance name.")]) -> None:
    """Serve a detached pipe instance from its stored config.json (what the supervisor runs).

    Example: loom pipe serve triage
    """
    from loom.pipeline.process import serve as serve_instance

    serve_instance(instance)


@handle_errors
def pipes(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object for scripts.")] = False,
) -> None:
    """List pipe definitions (stored and catalog) and running pipe instances.

    Example: loom pipes
    """
    from loom.pipeline import pipe_admin
    from loom.store import home as homes

    home = homes.home()
    defs, insts = pipe_admin.definitions(home), pipe_admin.instances(home)
    if as_json:
        data = {"definitions": pipe_admin.as_json(defs), "instances": pipe_admin.as_json(insts)}
        print(json.dumps(data, ensure_ascii=False))
        return
    print("DEFINITIONS")
    width = max([len(d.name) for d in defs] + [4])
    for d in defs:
        print(f"  {d.name:<{width}}  {d.where:<7}  {d.steps}")
    print("INSTANCES")
    if not insts:
        print("  (none)")
    width = max([len(i.name) for i in insts] + [4])
    for i in insts:
        print(f"  {i.name:<{width}}  {i.status:<10}  {i.waiting} waiting")
