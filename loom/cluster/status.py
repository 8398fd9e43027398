"""`loom cluster status`: the hosts' heartbeats, each destination's consumer lag, and
what each host runs, read from NATS by the host this home is."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NoKeysError, NotFoundError

from loom.cluster import share as shares
from loom.cluster.link import CONSUMER, HEARTBEAT_TTL_S, Link, ensure_bucket
from loom.errors import UsageError


async def _gather(js: JetStreamContext, share: shares.Share) -> dict[str, Any]:
    kv = await ensure_bucket(js, share.hosts_bucket, HEARTBEAT_TTL_S)
    hosts = []
    try:
        names = await kv.keys()
    except NoKeysError:
        names = []
    for name in sorted(names):
        try:
            beat = json.loads((await kv.get(name)).value or b"{}")
        except (NotFoundError, ValueError):
            continue
        hosts.append(
            {
                "host": name,
                "last_beat": beat.get("ts"),
                "age_s": _age(beat.get("ts")),
                "runs": beat.get("runs", []),
            }
        )
    prefix = f"LOOM-{share.project}-"
    destinations = []
    for info in await js.streams_info():
        stream = info.config.name or ""
        if not stream.startswith(prefix):
            continue
        try:
            consumer = await js.consumer_info(stream, CONSUMER)
        except NotFoundError:
            continue
        destinations.append(
            {
                "destination": stream[len(prefix) :],
                "stored": info.state.messages,
                "pending": consumer.num_pending or 0,
                "unacked": consumer.num_ack_pending or 0,
                "redelivered": consumer.num_redelivered or 0,
                "bridges_waiting": consumer.num_waiting or 0,
            }
        )
    return {
        "host": share.host,
        "project": share.project,
        "hosts": hosts,
        "destinations": sorted(destinations, key=lambda d: str(d["destination"])),
    }


def _age(ts: object) -> float | None:
    if not isinstance(ts, str):
        return None
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return round(max(0.0, time.time() - when), 1)


def status(home: Path) -> dict[str, Any]:
    """The cluster as this home's host sees it; UsageError when the home is in none."""
    share = shares.read(home)
    if share is None:
        raise UsageError(
            f"{home} is not in a cluster: start a weave with `cluster:` (loom up --host)"
        )
    link = Link(share, f"loom {share.host} status")
    try:
        js = link.jetstream()
        return link.run(_gather(js, share), 10.0)
    finally:
        link.close()


def tables(report: dict[str, Any]) -> list[list[list[str]]]:
    """The report as two tables (a header row first): hosts, then destinations."""
    hosts = [["HOST", "LAST BEAT", "RUNS"]]
    for h in report["hosts"]:
        age = "?" if h["age_s"] is None else f"{h['age_s']:g} s ago"
        hosts.append([h["host"], age, ", ".join(h["runs"])])
    dests = [["DESTINATION", "PENDING", "UNACKED", "REDELIVERED", "STORED"]]
    for d in report["destinations"]:
        dests.append(
            [
                d["destination"],
                str(d["pending"]),
                str(d["unacked"]),
                str(d["redelivered"]),
                str(d["stored"]),
            ]
        )
    return [hosts, dests]
