"""`loom route`, `loom unroute`, `loom routes`: change and show the routing table (SPEC 7)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from loom.cli._common import handle_errors
from loom.cli._text import columns


def _nudge() -> None:
    # The supervisor rereads routes.json on SIGHUP; without one, the next start reads it.
    from loom.store import home as homes
    from loom.supervisor import lock

    lock.nudge(homes.home())


@handle_errors
def route(
    source: Annotated[str, typer.Argument(metavar="SRC", help="The agent or pipe to route from.")],
    to: Annotated[str | None, typer.Option("--to", help="The agent or pipe to deliver to.")] = None,
    pipe: Annotated[
        str | None, typer.Option("--pipe", help="Run the messages through this pipe on the way.")
    ] = None,
    when: Annotated[
        str | None, typer.Option("--when", help="Route only messages where this JMESPath is true.")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", help="Pause while the next inbox holds this many messages."),
    ] = None,
) -> None:
    """Route the messages SRC writes to its outbox into another inbox.

    With --pipe and no --to, the pipe is a routing node: its route and fanout operators
    choose each message's destinations. Routing the same SRC, --pipe and --to again
    updates --when and --limit. A new route carries only messages written from now on.

    Example: loom route researcher --to editor --when "severity >= `3`"
    """
    from loom import routing
    from loom.store import home as homes

    edge = routing.Edge(
        source, to, pipe, when, limit if limit is not None else routing.DEFAULT_LIMIT
    )
    routing.add_route(homes.home(), edge)
    _nudge()
    print(f"routed {edge.describe()}")


@handle_errors
def unroute(
    source: Annotated[str, typer.Argument(metavar="SRC", help="The agent or pipe routed from.")],
    to: Annotated[str | None, typer.Option("--to", help="The destination of the route.")] = None,
    pipe: Annotated[
        str | None, typer.Option("--pipe", help="The pipe of the route, when it has one.")
    ] = None,
) -> None:
    """Remove a route; messages already delivered stay where they are.

    Without --pipe, the one route from SRC to --to is removed, direct or piped.

    Example: loom unroute researcher --to editor
    """
    from loom import routing
    from loom.store import home as homes

    edge = routing.remove_route(homes.home(), source, to, pipe)
    _nudge()
    print(f"unrouted {edge.describe()}")


@handle_errors
def routes(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array for scripts.")] = False,
) -> None:
    """List routes: FROM PIPE TO WHEN FORWARDED LAST HELD.

    FORWARDED counts messages that reached the destination (for a routing node: the
    node); LAST is the time of the last delivery; HELD says the destination inbox is
    full (back-pressure). Counters come from the supervisor, updated every few seconds.

    Example: loom routes --json | jq '.[] | select(.held)'
    """
    from loom import routing
    from loom.store import home as homes

    rows = routing.overview(homes.home())
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    table = [("FROM", "PIPE", "TO", "WHEN", "FORWARDED", "LAST", "HELD")]
    for r in rows:
        table.append(
            (
                r["from"],
                r["pipe"] or "-",
                r["to"] or "(to)",
                r["when"] or "-",
                str(r["forwarded"]),
                r["last_activity"] or "-",
                f"held ({r['pending']} waiting)" if r["held"] else "no",
            )
        )
    print(columns(table))
