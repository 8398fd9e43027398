"""`loom pipe start NAME`: run one queued pipe instance in the foreground (for debugging)."""

from __future__ import annotations

from typing import Annotated

import typer

from loom.cli._common import handle_errors


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
    config.json when it has none. Results go to $LOOM_HOME/pipes/INSTANCE/outbox/.

    Example: loom pipe start dedupe-by-id --instance dedupe-by-id
    """
    # Imported here so `loom --help` does not load the pipe engine (and jmespath).
    from loom.pipeline.process import start as start_instance

    start_instance(name, instance=instance)


@handle_errors
def serve(instance: Annotated[str, typer.Argument(help="Pipe instance name.")]) -> None:
    """Serve a detached pipe instance from its stored config.json (what the supervisor runs).

    Example: loom pipe serve triage
    """
    from loom.pipeline.process import serve as serve_instance

    serve_instance(instance)
