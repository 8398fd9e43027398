"""`loom cluster status`: hosts, heartbeats and consumer lag of a weave with `cluster:`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from loom.cli._common import handle_errors
from loom.cli._text import columns

app = typer.Typer(help="Inspect the hosts of a weave with `cluster:`.", no_args_is_help=True)


@app.command()
@handle_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object for scripts.")] = False,
) -> None:
    """Show each host's last heartbeat and what it runs, and per destination the messages
    waiting in JetStream (pending), taken but not acked (unacked) and redelivered.

    Run it on any host of the cluster; it reads NATS, so it needs the server up.

    Example: loom cluster status --json | jq '.destinations[] | {destination, pending}'
    """
    from loom.cluster import status as cluster_status
    from loom.store import home as homes

    report = cluster_status.status(homes.home())
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    print(f"cluster of {report['project']}, seen from {report['host']}\n")
    host_rows, dest_rows = cluster_status.tables(report)
    print(columns(host_rows))
    if len(host_rows) == 1:
        print("(no heartbeat: no host's supervisor reaches NATS)")
    print()
    print(columns(dest_rows))
