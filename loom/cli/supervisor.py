"""`loom supervisor run|status|stop|restart`: the one supervisor of a LOOM_HOME."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from loom.cli._common import die, handle_errors

app = typer.Typer(help="Run, inspect, stop or restart the supervisor.", no_args_is_help=True)

# `loom supervisor status` when none runs: LSB's "program is not running", as systemctl.
NOT_RUNNING = 3


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
    Only one runs per LOOM_HOME; one started on demand (by `loom agent start -d` or
    `loom up -d`) hands over to it, its processes running on. SIGHUP rereads
    routes.json and rescans the processes; SIGTERM stops them with it (they start
    again with the next supervisor).

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


@app.command()
@handle_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Show the running supervisor: pid, since when, how many processes, how it was started.

    `on-demand` was started by a command and exits when nothing is left; `run` is
    `loom supervisor run` (a service). Exit 3 when none runs.

    Example: loom supervisor status
    """
    from loom.store import home as homes
    from loom.supervisor import manage

    root = homes.home()
    now = manage.status(root)
    if as_json:
        print(json.dumps(now.to_json() if now is not None else None))
    elif now is None:
        print(f"no supervisor runs for {root}")
    else:
        print(f"pid        {now.pid}")
        print(f"mode       {now.mode or 'unknown'}")
        print(f"since      {now.started_at or 'unknown'}")
        print(f"processes  {now.children if now.children is not None else 'unknown'}")
        differ = ", ".join(now.differs) if now.differs else "none"
        print(f"settings   differ from this shell's: {differ}")
    if now is None:
        raise typer.Exit(NOT_RUNNING)


@app.command()
@handle_errors
def stop() -> None:
    """Stop the supervisor and, gracefully, the processes it supervises.

    Each finishes or puts back its current message. They are left `pending`, so the
    next supervisor starts them again (`loom supervisor restart`, `loom supervisor
    run`, or any `start -d`/`up -d`); `loom down` or `loom agent stop` stops for good.

    Example: loom supervisor stop
    """
    from loom.store import home as homes
    from loom.supervisor import manage

    done = manage.stop(homes.home())
    if done.pid is None:
        print("no supervisor was running")
        return
    print(f"stopped the supervisor (pid {done.pid}) and {_plural(done.children)}")


@app.command()
@handle_errors
def restart() -> None:
    """Stop the supervisor and its processes, then start them again with this shell's
    environment (after changing OPENAI_BASE_URL or a key, say).

    The new supervisor runs on demand: it starts every `pending` process (those just
    stopped, and any waiting for a supervisor) and exits when nothing is left. A
    supervisor run as a service is refused: restart the service instead.

    Example: OPENAI_BASE_URL=http://gpu2:8080/v1 loom supervisor restart
    """
    from loom.store import home as homes
    from loom.supervisor import manage

    done = manage.restart(homes.home())
    before = f"stopped pid {done.stopped.pid}, " if done.stopped.pid else ""
    started = ", ".join(done.started) if done.started else "nothing to start"
    print(f"restarted the supervisor ({before}now pid {done.pid}): {started}")


def _plural(count: int) -> str:
    return f"{count} process" if count == 1 else f"{count} processes"
