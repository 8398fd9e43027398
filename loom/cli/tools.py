"""`loom tools`: the tools (plugins) agents can use, and what is wrong with the others."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from loom.cli._common import handle_errors
from loom.cli._text import columns

DESCRIPTION_WIDTH = 70


@handle_errors
def tools(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array for scripts.")] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Run every plugin's describe again.")
    ] = False,
) -> None:
    """List the tools agents can use: NAME ORIGIN DESCRIPTION.

    Tools are executables in ./.loom/plugins/ (the project's, which win) and in
    $LOOM_HOME/plugins/. A plugin that cannot be used is listed with its problem;
    one hidden by a project plugin of the same name, as shadowed.

    Example: loom tools --json | jq -r '.[] | select(.usable) | .name'
    """
    from loom.tools import discovery

    found = discovery.visible(refresh=refresh)
    if as_json:
        print(json.dumps([plugin.to_json() for plugin in found], ensure_ascii=False))
        return
    table = [("NAME", "ORIGIN", "DESCRIPTION")]
    for plugin in found:
        if plugin.problem:
            about = f"problem: {plugin.problem}"
        elif plugin.shadowed_by:
            about = f"shadowed by {plugin.shadowed_by}"
        else:
            lines = plugin.description.splitlines() or [""]
            about = lines[0]
            if len(about) > DESCRIPTION_WIDTH:
                about = about[: DESCRIPTION_WIDTH - 1] + "…"
        table.append((plugin.name, plugin.origin, about))
    print(columns(table))
