"""`loom stats`: the numbers of `metrics.prom`, computed from the files on demand.

It reads what the supervisor's metrics left in `metrics.state.json` (if anything) and
the log lines written since, without saving anything, so it works with or without a
supervisor and shows the same totals. Route counters come from the delivery logs, as
in `loom routes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom.elapsed import format_elapsed
from loom.errors import ConfigError
from loom.routing import overview
from loom.supervisor import metrics


@dataclass(frozen=True)
class Stats:
    """Every process's metrics, the routes' counters, and a problem with routes.json if any."""

    processes: list[metrics.ProcessMetrics]
    routes: list[dict[str, Any]]
    routes_problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "processes": [p.to_json() for p in self.processes],
            "routes": [
                {k: r.get(k) for k in ("from", "pipe", "to", "forwarded", "held", "pending")}
                for r in self.routes
            ],
        }


def collect(home: Path) -> Stats:
    """Compute the current numbers from `home`'s files."""
    processes = metrics.Collector.load(home).collect(
        budget=None
    )  # a one-off command reads to the end
    try:
        routes = overview(home)
        problem = None
    except ConfigError as exc:
        routes, problem = [], str(exc)
    return Stats(processes, routes, problem)


def format_seconds(seconds: float | None) -> str:
    """`420ms` or `3.2s` (never minutes: an average processing time); `-` for none."""
    return format_elapsed(seconds, fraction=True, largest="s")


def tables(stats: Stats) -> list[list[tuple[str, ...]]]:
    """The rows of two tables for people (a header first): processes, then routes when
    there are any. Tokens per model are in --json (`tokens_by_model`)."""
    rows: list[tuple[str, ...]] = [
        (
            "NAME",
            "KIND",
            "STATUS",
            "RECEIVED",
            "PROCESSED",
            "FAILED",
            "DROPPED",
            "RESTARTS",
            "PENDING",
            "IN-PROGRESS",
            "AVG-TIME",
            "TOKENS-IN",
            "TOKENS-OUT",
        )
    ]
    for p in stats.processes:
        average = p.seconds_sum / p.seconds_count if p.seconds_count else None
        rows.append(
            (
                p.name,
                p.kind,
                p.status,
                str(p.counts["received"]),
                str(p.counts["processed"]),
                str(p.counts["failed"]),
                str(p.counts["dropped"]),
                str(p.restarts),
                str(p.queues["pending"]),
                str(p.queues["in_progress"]),
                format_seconds(average),
                str(p.token_total("input")) if p.kind == "agent" else "-",
                str(p.token_total("output")) if p.kind == "agent" else "-",
            )
        )
    found: list[list[tuple[str, ...]]] = [rows]
    if stats.routes:
        edges: list[tuple[str, ...]] = [("FROM", "PIPE", "TO", "FORWARDED", "HELD", "WAITING")]
        for r in stats.routes:
            edges.append(
                (
                    str(r["from"]),
                    str(r.get("pipe") or "-"),
                    str(r.get("to") or "(to)"),
                    str(r.get("forwarded", 0)),
                    "yes" if r.get("held") else "no",
                    str(r.get("pending", 0)),
                )
            )
        found.append(edges)
    return found
