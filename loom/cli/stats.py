"""`loom stats`: per agent and pipe counters, queue depths and route counters."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from loom.cli._common import handle_errors
from loom.cli._text import columns


@handle_errors
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object for scripts.")] = False,
) -> None:
    """Show received, processed, failed and dropped messages, restarts, queue depths,
    processing time and tokens per agent and pipe, and forwarded counts per route.

    The numbers are those the supervisor writes to $LOOM_HOME/metrics.prom, computed
    from the files, so this works with or without a supervisor.

    Tokens (input and output) are the totals the agent keeps in its usage.json; --json
    also has them per model in `tokens_by_model`.

    Example: loom stats --json | jq '.processes[] | {name, failed, input_tokens}'
    """
    from loom.ops import stats as numbers
    from loom.store import home as homes

    result = numbers.collect(homes.home())
    if result.routes_problem:
        print(f"loom: routes not shown: {result.routes_problem}", file=sys.stderr)
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        print("\n\n".join(columns(rows) for rows in numbers.tables(result)))
