"""`loom pipes` and `loom pipe create`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from loom.cli._common import die, handle_errors


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
    from loom.store.files import CONFIG_LIMIT, read_bounded_text, read_stream_bounded

    if file is None or str(file) == "-":
        data = read_stream_bounded(sys.stdin.buffer, CONFIG_LIMIT, "stdin")
        text, source = data.decode("utf-8", errors="replace"), "<stdin>"
    else:
        try:
            text, source = read_bounded_text(file, CONFIG_LIMIT, "pipe definition"), str(file)
        except OSError as exc:
            raise die(f"cannot read {file}: {exc.strerror}", 2) from None
    print(pipe_admin.create(name, text, source, homes.home()))
