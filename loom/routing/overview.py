"""What `loom routes` shows: the table from routes.json, with delivery counters.

`forwarded` and `last_activity` come straight from the delivery logs, so they are
current even between two stats writes; `held`, `pending` and `errors` only the running
router knows, and come from its last `router/stats.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loom.errors import LoomError
from loom.routing.edge import legs_of
from loom.routing.ledger import delivery_counters, delivery_log, stats_path
from loom.routing.table import load_routes
from loom.store.files import STATE_LIMIT, load_json, read_bounded

_LIVE: dict[str, Any] = {"held": False, "pending": 0, "errors": 0, "last_error": None}


def _last_stats(home: Path) -> dict[tuple[Any, Any, Any], dict[str, Any]]:
    try:
        raw = read_bounded(stats_path(home), STATE_LIMIT, "router stats", follow=False)
        document = load_json(raw)
        rows = document["routes"]
        return {(r["from"], r.get("pipe"), r.get("to")): r for r in rows if isinstance(r, dict)}
    except (OSError, LoomError, ValueError, KeyError, TypeError):
        # No router has run yet (or the file is damaged): show nothing held, not an error.
        return {}


def overview(home: Path) -> list[dict[str, Any]]:
    """One row per route: from, pipe, to, when, limit, forwarded, last_activity, held,
    pending, errors, last_error."""
    stats = _last_stats(home)
    rows = []
    for edge in load_routes(home):
        row: dict[str, Any] = {"from": edge.source, "pipe": edge.pipe, "to": edge.dest}
        row.update({"when": edge.when, "limit": edge.limit})
        logs = [delivery_log(home, leg.source, leg.dest) for leg in legs_of(edge) if leg.dest]
        row["forwarded"], row["last_activity"] = delivery_counters(logs)
        seen = stats.get(edge.identity, {})
        row.update({key: seen.get(key, default) for key, default in _LIVE.items()})
        rows.append(row)
    return rows
