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


def _load(config: Path | None, *, home: bool = False, after: str = "") -> Weave:
    """Load the weave; on problems print each as FILE:LINE:COL: message and exit 1.

    With `home`, names that another project under $LOOM_HOME holds are problems too.
    `after` ends the summary line, e.g. "; nothing started".
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
        raise _invalid(exc, after) from None


def _invalid(exc: WeaveInvalid, after: str = "") -> typer.Exit:
    for problem in exc.problems:
        print(problem.render(exc.source), file=sys.stderr)
    problems = count(len(exc.problems), "problem")
    return die(f"{problems} in {exc.source}{after}", 1)


ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="The weave file (default: ./loom.yml).")
]
HostOption = Annotated[
    str | None,
    typer.Option(
        "--host",
        help="With `cluster:`: which host this machine is (default: $LOOM_HOST).",
        show_default=False,
    ),
]


def _host(host: str | None) -> str | None:
    from loom import settings

    return host or settings.CLUSTER_HOST.get() or None


@handle_errors
def validate(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="[FILE]...",
            help="Weave files (loom.yml) or pipe files (pipes/x.yml); default: ./loom.yml.",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check weave files and standalone pipe files, like a linter: print every problem
    as FILE:LINE:COL: message, and `FILE: ok (...)` for each file without one.

    A pipe file is a list of operators or a mapping with `operators` (the catalog
    format); it is checked on its own, so agents it names are not looked up. A mapping
    with `tests` is a `loom test` file. A weave's names that another project under
    $LOOM_HOME (another loom.yml) or a running hand-started process holds are problems
    too. Exit 1 when any file has a problem, 2 when one cannot be read at all (missing,
    a device, too big).

    Example: loom validate loom.yml pipes/triage.yml
    """
    from loom.weave import config as weave_config
    from loom.weave import lint

    paths = [*(files or []), *([config] if config is not None else [])]
    if not paths:
        paths = [weave_config.find_config(None)]
    problems = bad = status = 0
    for path in paths:
        checked = lint.check(path)
        if checked.exit_code == 2:  # unusable (missing, a device): one `loom:` line
            print(f"loom: {checked.problems[0]}", file=sys.stderr)
            status = 2
            continue
        for line in checked.problems:
            print(line, file=sys.stderr)
        if checked.problems:
            problems += len(checked.problems)
            bad += 1
            status = max(status, 1)
        else:
            print(f"{path}: ok ({checked.summary})")
    if problems:
        where = str(paths[0]) if len(paths) == 1 else count(bad, "file")
        raise die(f"{count(problems, 'problem')} in {where}", status)
    if status:
        raise typer.Exit(status)


@handle_errors
def up(
    config: ConfigOption = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Start and return; do not show the live view.")
    ] = False,
    host: HostOption = None,
) -> None:
    """Start the weave: unchanged agents and pipes are left running, changed ones restarted,
    removed ones stopped, new ones started.

    The weave is a project (`name:` in loom.yml, default: its folder's name) and touches
    only its own processes: a name another project holds is refused, naming both files.

    Without --detach a live view shows each process's status and queue until Ctrl-C,
    which stops the weave (state stays on disk).

    With `cluster:` in loom.yml, each machine starts its own share: `--host NAME` (or
    LOOM_HOST) says which host it is (docs/cluster.md).

    Example: loom up -d --config examples/triage/loom.yml
    """
    from loom.store import home as homes
    from loom.weave import apply
    from loom.weave.parse import WeaveInvalid

    weave = _load(config, after="; nothing started")
    home = homes.home()
    try:
        plan = apply.up(weave, home, _host(host))
    except WeaveInvalid as exc:
        raise _invalid(exc, "; nothing started") from None
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
    stopped = apply.down(weave, home, _host(host))
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
def down(config: ConfigOption = None, host: HostOption = None) -> None:
    """Stop every agent and pipe this project started; all state stays on disk.

    Processes of other projects, and those started by hand, are left running. With
    `cluster:`, this stops the share of the host given by --host (or LOOM_HOST).

    Example: loom down --config examples/triage/loom.yml
    """
    from loom.store import home as homes
    from loom.weave import apply

    weave = _load(config, after="; nothing stopped")
    for name in apply.down(weave, homes.home(), _host(host)):
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
