"""`loom supervisor run`: the supervisor in the foreground (for systemd)."""

from __future__ import annotations

from typing import Annotated

import typer

from loom.cli._common import die, handle_errors

app = typer.Typer(help="Run the supervisor.", no_args_is_help=True)


@app.command()
@handle_errors
def run(
    on_demand: Annotated[
        bool,
        typer.Option("--on-demand", hidden=True, help="Exit when nothing is left to supervise."),
    ] = False,
) -> None:
    """Run the supervisor in the foreground until SIGTERM (for systemd and containers).

    It restarts crashed agents and pipe instances and routes messages between them.
    Only one runs per LOOM_HOME.

    Example: LOOM_HOME=/srv/loom loom supervisor run
    """
    from loom.store import home as homes
    from loom.supervisor import core, lock

    root = homes.home()
    code = core.run(root, service=not on_demand, foreground_log=not on_demand)
    if code != 0:
        if on_demand:
            raise typer.Exit(0)  # another one won the race: that is fine
        pid = lock.running_pid(root)
        raise die(f"a supervisor already runs for {root} (pid {pid})", 1)
