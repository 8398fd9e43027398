"""`loom up`, `loom down`, `loom validate`, `loom graph`: weaves from loom.yml (SPEC 9)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loom.cli._common import die, handle_errors
from loom.wording import count

if TYPE_CHECKING:
    from loom.weave.model import Weave
    from loom.weave.parse import WeaveInvalid


def _load(config: Path | None, *, home: bool = False) -> Weave:
    """Load the weave; on problems print each as FILE:LINE:COL: message and exit 1.

    With `home`, names that another project under $LOOM_HOME holds are problems too.
    """
    from loom.weave import apply
    from loom.weave import config as weave_config
    from loom.weave.parse import WeaveInvalid

    try:
        weave = weave_config.load(config)
        if home:
            apply.check_home(weave)
        return weave
    except WeaveInvalid as exc:
        raise _invalid(exc) from None


def _invalid(exc: WeaveInvalid) -> typer.Exit:
    for problem in exc.problems:
        print(problem.render(exc.source), file=sys.stderr)
    problems = count(len(exc.problems), "problem")
    return die(f"{problems} in {exc.source}; nothing started", 1)


ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="The weave file (default: ./loom.yml).")
]


@handle_errors
def validate(config: ConfigOption = None) -> None:
    """Check loom.yml and print every problem as FILE:LINE:COL: message.

    Nothing is started. Exit 1 when there is any problem, including a name that another
    project under $LOOM_HOME (another loom.yml) or a running hand-started process holds.

    Example: loom validate --config examples/triage/loom.yml
    """
    weave = _load(config, home=True)
    agents, pipes = count(len(weave.agents), "agent"), count(len(weave.pipes), "pipe")
    print(f"{weave.path}: ok ({agents}, {pipes})")


@handle_errors
def up(
    config: ConfigOption = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Start and return; do not show the live view.")
    ] = False,
) -> None:
    """Start the weave: unchanged agents and pipes are left running, changed ones restarted,
    removed ones stopped, new ones started.

    The weave is a project (`name:` in loom.yml, default: its folder's name) and touches
    only its own processes: a name another project holds is refused, naming both files.

    Without --detach a live view shows each process's status and queue until Ctrl-C,
    which stops the weave (state stays on disk).

    Example: loom up -d --config examples/triage/loom.yml
    """
    from loom.store import home as homes
    from loom.weave import apply
    from loom.weave.parse import WeaveInvalid

    weave = _load(config)
    home = homes.home()
    try:
        plan = apply.up(weave, home)
    except WeaveInvalid as exc:
        raise _invalid(exc) from None
    for label, names in (
        ("started", plan.started),
        ("restarted", plan.restarted),
        ("unchanged", plan.unchanged),
        ("stopped", plan.stopped),
    ):
        for name in names:
            print(f"{label:<9} {name}", file=sys.stderr if not detach else sys.stdout)
    if detach:
        return
    try:
        _live_view(weave, home)
    except KeyboardInterrupt:
        pass
    stopped = apply.down(weave, home)
    print(
        f"stopped {count(len(stopped), 'process', 'processes')}; state kept in {home}",
        file=sys.stderr,
    )


def _live_view(weave: Weave, home: Path) -> None:
    from loom.weave import apply

    tty = sys.stdout.isatty()
    last = ""
    while True:
        rows = apply.snapshot(weave, home)
        text = _live_table(
            [(r.name, r.status, str(r.waiting), str(r.processed), str(r.failed)) for r in rows]
        )
        if text != last:
            if tty:
                sys.stdout.write("\x1b[H\x1b[J" + text + "\n\n(Ctrl-C stops the weave)\n")
            else:
                sys.stdout.write(text + "\n\n")
            sys.stdout.flush()
            last = text
        time.sleep(0.5)


def _live_table(rows: list[tuple[str, ...]]) -> str:
    """The live view's table: each column as wide as its widest cell (so a long name
    never pushes its row's counts out of line), names left and counts right aligned."""
    table = [("NAME", "STATUS", "WAITING", "DONE", "FAILED"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    )


@handle_errors
def down(config: ConfigOption = None) -> None:
    """Stop every agent and pipe this project started; all state stays on disk.

    Processes of other projects, and those started by hand, are left running.

    Example: loom down --config examples/triage/loom.yml
    """
    from loom.store import home as homes
    from loom.weave import apply

    weave = _load(config)
    for name in apply.down(weave, homes.home()):
        print(f"stopped {name}")


@handle_errors
def graph(
    config: ConfigOption = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text, dot or mermaid.")] = "text",
    live: Annotated[
        bool, typer.Option("--live", help="Add queue counts of the running weave.")
    ] = False,
) -> None:
    """Draw the weave: agents, pipes, and edges labelled with pipes and conditions.

    Example: loom graph --format dot | dot -Tpng > weave.png
    """
    from loom.weave import graph as weave_graph

    if fmt not in weave_graph.FORMATS:
        raise die(f"unknown format '{fmt}'; use text, dot or mermaid", 2)
    weave = _load(config)
    counts: dict[str, str] = {}
    if live:
        from loom.store import home as homes
        from loom.weave import apply

        for row in apply.snapshot(weave, homes.home()):
            counts[row.name] = f"{row.status}, {row.waiting} waiting, {row.processed} done"
    print(weave_graph.render(weave, fmt, counts))
