"""`loom gc`: archive, compress and delete what is old, safely while everything runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loom.cli._common import handle_errors

if TYPE_CHECKING:
    from loom.ops.gc.report import Action


@handle_errors
def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="List what would be done; change nothing.")
    ] = False,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only this agent or pipe instance.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="The loom.yml whose gc.retention applies."),
    ] = None,
) -> None:
    """Archive old processed and delivered messages, compress and delete old logs.

    Defaults: .processed/ and delivered outbox files older than 7 days go to
    $LOOM_HOME/archive/<day>.ndjson.gz; crash records go after 90 days; logs are gzipped
    after 1 day and deleted after 30; pipe steps go after 7 days; dedupe state keeps its
    last 10,000 keys; .tmp-* files a killed writer left go after an hour.
    `gc.retention` in loom.yml changes them. Prints one line per
    action and a summary, nothing when there is nothing to do (with --dry-run:
    `nothing to do`); exits 1 if a file could not be handled (the rest is done).

    Example: loom gc --dry-run
    """
    from loom.ops.gc import sweep
    from loom.store import home as homes
    from loom.weave import config as weave_config

    report = sweep.run(
        homes.home(),
        weave_config.retention(config),
        only=agent,
        dry_run=dry_run,
        on_action=_show,
    )
    summary = report.summary()
    if summary:
        print(summary, flush=True)
    elif dry_run:
        print("nothing to do", flush=True)
    if report.errors:
        raise typer.Exit(1)


def _show(action: Action) -> None:
    if action.is_error:
        print(f"loom: gc: cannot handle {action.path}: {action.detail}", file=sys.stderr)
    else:
        print(action.line(), flush=True)
