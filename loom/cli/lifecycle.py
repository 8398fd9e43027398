"""`loom restart`, `loom rm`, `loom logs`: one process, or all of a weave, like compose."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loom.cli._common import FollowOption, JsonLogsOption, LevelOption, die, handle_errors

if TYPE_CHECKING:
    from loom.store.home import ProcessDir

NameArgument = Annotated[str, typer.Argument(help="Agent or pipe instance name.")]


@handle_errors
def restart(name: NameArgument) -> None:
    """Stop an agent or pipe instance, then start it again with its stored settings.

    It runs under the supervisor afterwards (started on demand), as after `-d`. One
    that was not running is started; one served in the foreground is refused. To change
    an agent's settings, start it again with `loom agent start NAME ... -d` instead.

    Example: loom restart summarizer
    """
    from loom.supervisor import control

    started = control.restart(name)
    pid = f" (pid {started.pid})" if started.pid else ""
    print(f"restarted {name}{pid}")


@handle_errors
def rm(
    name: NameArgument,
    force: Annotated[
        bool,
        typer.Option(
            "--force", "-f", help="No question, and remove even with messages still pending."
        ),
    ] = False,
) -> None:
    """Stop an agent or pipe instance and delete its folder: queue, replies, logs, state.

    On a terminal it asks first; elsewhere it needs --force. It refuses while messages
    wait in the inbox or are being answered, saying how many, unless --force.

    Example: loom rm old-summarizer --force
    """
    from loom.store import home as homes
    from loom.store import processes

    proc = homes.find(name)
    pending = processes.pending(proc)
    if pending and not force:
        raise die(
            f"{name} has {pending} pending message{'s' if pending != 1 else ''} in "
            f"{proc.inbox}; answer or move them first, or remove it anyway with "
            f"'loom rm {name} --force'",
            1,
        )
    if not force:
        if not sys.stdin.isatty():
            raise die(f"rm deletes {proc.path} for good; confirm with 'loom rm {name} --force'", 2)
        if not typer.confirm(f"Remove {proc.path} (its queue, replies, logs and state)?"):
            raise die("nothing removed", 1)
    path = processes.remove(name)
    print(f"removed {name} ({path})")


@handle_errors
def logs(
    names: Annotated[
        list[str] | None, typer.Argument(help="Only these agents or pipe instances.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="The weave file (default: ./loom.yml).")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Every process under LOOM_HOME, not one weave's.")
    ] = False,
    follow: FollowOption = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="How many recent lines of each process.")
    ] = 20,
    as_json: JsonLogsOption = False,
    level: LevelOption = None,
) -> None:
    """Print the logs of every process of the weave at once, each line after its name.

    The weave is ./loom.yml (or --config); with none there, or with --all, every agent
    and pipe instance under LOOM_HOME. The recent lines of each are merged in time
    order; --follow then prints new lines of any of them as they come (like compose's
    `logs -f`), also of those that start later. With --json each line is the raw
    record, which names its process.

    Example: loom logs -f --level warning
    """
    from loom.store import processes
    from loom.store.logs import LEVELS, severity

    if level is not None and severity(level) is None:
        raise die(f"unknown level '{level}'; use one of {', '.join(LEVELS)}", 2)
    procs = _selected(names or [], config, all_)
    if not procs:
        raise die("no agents or pipe instances to show the logs of; see 'loom agent ps --all'", 1)
    width = max(len(p.name) for p in procs)

    def render(name: str, line: str) -> str:
        if as_json:
            return line
        return f"{name:<{width}} | {processes.render_log_line(line)}"

    recent, positions = processes.tail_many(procs, lines, level)
    for name, line in recent:
        print(render(name, line))
    if follow:
        sys.stdout.flush()
        # Named processes are those; otherwise one started later joins in.
        discover = None if names else lambda: _selected([], config, all_)
        for name, line in processes.follow_many(procs, positions, discover=discover):
            if processes.at_least(line, level):
                print(render(name, line), flush=True)


def _selected(names: list[str], config: Path | None, all_: bool) -> list[ProcessDir]:
    """The processes `loom logs` shows: those named, the weave's, or all of them."""
    from loom.store import home as homes

    if names:
        return [homes.find(name) for name in names]
    if not all_ and (config is not None or any(Path(f).is_file() for f in WEAVE_FILES)):
        from loom.weave import apply
        from loom.weave import config as weave_config
        from loom.weave.parse import WeaveInvalid

        try:
            weave = weave_config.load(config)
        except WeaveInvalid as exc:
            raise die(f"{exc.source} has problems; see 'loom validate' (or use --all)", 1) from None
        return apply.processes(weave, homes.home())
    return homes.all_processes()


# The weave files `loom logs` looks for in the current folder (as `loom up` does first).
WEAVE_FILES = ("loom.yml", "loom.yaml")
