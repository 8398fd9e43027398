"""Metrics without a server: counters and gauges of every agent and pipe instance.

The counters come from the processes' own logs, read incrementally by byte offset;
the offsets and totals are kept in `$LOOM_HOME/metrics.state.json`, so neither a
supervisor restart nor `loom gc` compressing old logs resets them. Queue depths are
counted in the queue folders. The supervisor writes `$LOOM_HOME/metrics.prom` in the
Prometheus text format (node_exporter's textfile-collector convention: atomically);
`loom stats` computes the same numbers on demand.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loom.errors import LoomError
from loom.store import atomic
from loom.store import home as homes
from loom.store import usage as usages
from loom.store.files import STATE_LIMIT, NotARegularFile, load_json, read_bounded
from loom.store.home import ProcessDir
from loom.store.logs import parse_line, read_lines
from loom.store.processes import effective_status
from loom.store.queue import FAILED, IN_PROGRESS, UNREADABLE, count_messages

STATE_FILE = "metrics.state.json"
SUPERVISOR = "supervisor"  # the key of the supervisor's log in the state
PROM_FILE = "metrics.prom"
STATE_VERSION = 1
# Read at most this much of one log per update, so catching up on a large backlog of
# logs (the first run) is spread over several updates instead of stalling the caller.
BUDGET_BYTES = 1 << 20
COUNTERS = ("received", "processed", "failed", "dropped", "unreadable")
# Only lines that can count are parsed; the rest are skipped by this cheap test. The
# original TypeScript loom writes compact JSON (`"event":"claimed"`), ours has a space.
_EVENT_RE = re.compile(
    rb'"event":\s*"(claimed|replied|processed|failed|dropped|unreadable|recovered)"'
)
_DAY_RE = re.compile(r"(\d{4}-\d{2}-\d{2})\.ndjson(\.gz)?")
_QUEUES = (
    ("pending", ""),
    ("in_progress", IN_PROGRESS),
    ("failed", FAILED),
    ("unreadable", UNREADABLE),
)


@dataclass
class Tally:
    """What one process's logs said so far, and how far they were read."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    seconds_sum: float = 0.0
    seconds_count: int = 0
    # day -> bytes of logs/<day>.ndjson already read; DONE once the day was compressed.
    days: dict[str, int] = field(default_factory=dict)
    # The supervisor's log: failure replies it wrote for a dead process, per process.
    by_child: dict[str, int] = field(default_factory=dict)

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one log record (SPEC 3 log format) by its event."""
        event = record.get("event")
        if event == "claimed":
            self.counts["received"] += 1
        elif event == "unreadable":
            self.counts["received"] += 1
            self.counts["unreadable"] += 1
        elif event in ("replied", "processed"):
            self.counts["processed"] += 1
            duration = record.get("duration_ms")
            if isinstance(duration, int | float) and not isinstance(duration, bool):
                self.seconds_sum += duration / 1000
                self.seconds_count += 1
        elif event == "failed" and isinstance(record.get("child"), str):
            child = record["child"]
            self.by_child[child] = self.by_child.get(child, 0) + 1
        elif event == "failed":
            self.counts["failed"] += 1
        elif event == "dropped":
            count = record.get("count", 1)
            self.counts["dropped"] += count if isinstance(count, int) else 1
        elif event == "recovered":
            action = record.get("action")
            if action == "acknowledged":
                self.counts["processed"] += 1
            elif action == "failed":
                self.counts["failed"] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "seconds_sum": round(self.seconds_sum, 6),
            "seconds_count": self.seconds_count,
            "days": self.days,
            "by_child": self.by_child,
        }

    @classmethod
    def from_json(cls, data: Any) -> Tally:
        tally = cls()
        if not isinstance(data, dict):
            return tally
        counts = data.get("counts")
        if isinstance(counts, dict):
            for key in COUNTERS:
                value = counts.get(key)
                tally.counts[key] = value if isinstance(value, int) else 0
        tally.seconds_sum = float(data.get("seconds_sum") or 0.0)
        tally.seconds_count = int(data.get("seconds_count") or 0)
        days = data.get("days")
        if isinstance(days, dict):
            tally.days = {str(k): v for k, v in days.items() if isinstance(v, int)}
        by_child = data.get("by_child")
        if isinstance(by_child, dict):
            tally.by_child = {str(k): v for k, v in by_child.items() if isinstance(v, int)}
        return tally


DONE = -1


def read_logs(logs_dir: Path, tally: Tally, budget: int | None = BUDGET_BYTES) -> bool:
    """Count what was appended to the day logs since the last call; True if anything was read.

    A day's `.ndjson.gz` (gzipped by `loom gc`) is read only when that day was never
    read before; once its plain file is gone the day is marked done.
    """
    try:
        names = os.listdir(logs_dir)
    except FileNotFoundError:
        return False
    plain: set[str] = set()
    packed: set[str] = set()
    for name in names:
        m = _DAY_RE.fullmatch(name)
        if m:
            (packed if m.group(2) else plain).add(m.group(1))
    changed = False
    for day in sorted(plain | packed):
        seen = tally.days.get(day)
        if day in plain and seen != DONE:
            changed |= _read_plain(logs_dir / f"{day}.ndjson", day, tally, budget)
        elif day in packed and seen is None:
            with contextlib.suppress(OSError, EOFError, gzip.BadGzipFile, LoomError):
                packed_log = read_bounded(
                    logs_dir / f"{day}.ndjson.gz", STATE_LIMIT, "log", follow=False
                )
                _count(gzip.decompress(packed_log), tally)
            tally.days[day] = DONE
            changed = True
        elif day not in plain and seen is not None and seen != DONE:
            tally.days[day] = DONE  # compressed since we read it: nothing more will come
            changed = True
    for day in [d for d in tally.days if d not in plain and d not in packed]:
        del tally.days[day]  # deleted by gc; its counts stay
    return changed


def _read_plain(path: Path, day: str, tally: Tally, budget: int | None) -> bool:
    offset = tally.days.get(day, 0)
    try:
        complete, end = read_lines(path, offset, budget)
    except (FileNotFoundError, NotARegularFile):
        return False  # a FIFO in place of a log is no log: counting it would hang us
    _count(complete, tally)
    tally.days[day] = end
    # Read from the start when the file was replaced (it ends before the old offset).
    advance = end - offset if end >= offset else end
    return advance > 0


def _count(data: bytes, tally: Tally) -> None:
    for line in data.splitlines():
        if not _EVENT_RE.search(line):
            continue
        record = parse_line(line)
        if record is not None:
            tally.add(record)


@dataclass(frozen=True)
class ProcessMetrics:
    """The numbers of one agent or pipe instance."""

    name: str
    kind: str  # agent | pipe
    status: str
    up: bool
    restarts: int
    counts: dict[str, int]
    queues: dict[str, int]
    seconds_sum: float
    seconds_count: int
    # Tokens per model and kind (input, output), from the agent's usage.json.
    tokens: dict[str, dict[str, int]] = field(default_factory=dict)

    def token_total(self, kind: str) -> int:
        return sum(counts.get(kind, 0) for counts in self.tokens.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "up": self.up,
            "restarts": self.restarts,
            **self.counts,
            "queue": self.queues,
            "processing_seconds_sum": round(self.seconds_sum, 6),
            "processing_seconds_count": self.seconds_count,
            "input_tokens": self.token_total("input"),
            "output_tokens": self.token_total("output"),
            "tokens_by_model": self.tokens,
        }


def queue_depths(proc: ProcessDir) -> dict[str, int]:
    """Messages pending, in progress, failed and unreadable in `proc`'s inbox."""
    return {label: count_messages(proc.inbox / folder) for label, folder in _QUEUES}


class Collector:
    """Keeps the log tallies of every process between calls; `collect` brings them up to date."""

    def __init__(self, home: Path, state: Mapping[str, Any] | None = None) -> None:
        self.home = home
        self.tallies: dict[str, Tally] = {}
        processes = (state or {}).get("processes")
        if isinstance(processes, dict):
            self.tallies = {k: Tally.from_json(v) for k, v in processes.items()}
        self.changed = False

    @classmethod
    def load(cls, home: Path) -> Collector:
        """A collector that starts from `metrics.state.json` (or from nothing)."""
        try:
            raw = read_bounded(home / STATE_FILE, STATE_LIMIT, STATE_FILE, follow=False)
            state = load_json(raw)
        except (OSError, ValueError, LoomError):
            state = None
        if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
            state = None
        return cls(home, state)

    def collect(self, budget: int | None = BUDGET_BYTES) -> list[ProcessMetrics]:
        """Every agent and pipe instance, its counters caught up with its logs (reading at
        most `budget` bytes of each log per call; None: all)."""
        found = []
        alive = {SUPERVISOR}
        supervisor = self.tallies.setdefault(SUPERVISOR, Tally())
        self.changed |= read_logs(self.home / "supervisor" / "logs", supervisor, budget)
        for proc in homes.all_processes(self.home, unstarted=True):
            key = f"{proc.kind}/{proc.name}"
            alive.add(key)
            tally = self.tallies.setdefault(key, Tally())
            self.changed |= read_logs(proc.logs, tally, budget)
            status, pid = effective_status(proc)
            orphans = supervisor.by_child.get(key, 0)
            found.append(
                ProcessMetrics(
                    name=proc.name,
                    kind="agent" if proc.kind == "agents" else "pipe",
                    status=status,
                    up=pid is not None,
                    restarts=proc.restarts,
                    counts={**tally.counts, "failed": tally.counts["failed"] + orphans},
                    queues=queue_depths(proc),
                    seconds_sum=tally.seconds_sum,
                    seconds_count=tally.seconds_count,
                    # usage.json, not the logs: totals that gc cannot shrink (store.usage).
                    tokens=usages.read(proc).models if proc.kind == "agents" else {},
                )
            )
        for key in [k for k in self.tallies if k not in alive]:
            del self.tallies[key]
            self.changed = True
        return found

    def save(self) -> None:
        """Write the tallies to `metrics.state.json` (atomically) if they changed."""
        if not self.changed:
            return
        doc = {"v": STATE_VERSION, "processes": {k: t.to_json() for k, t in self.tallies.items()}}
        atomic.write_text(self.home / STATE_FILE, json.dumps(doc, separators=(",", ":")) + "\n")
        self.changed = False


# -- the Prometheus text format ---------------------------------------------------
_HELP = {
    "received": "Messages taken from the inbox.",
    "processed": "Messages answered (agents) or run through the pipe (pipes).",
    "failed": "Messages that failed (moved to .failed/ with a failure reply).",
    "dropped": "Messages a pipe operator dropped on purpose (filter, dedupe, route, ...).",
    "unreadable": "Files moved to .unreadable/.",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(round(value, 6))


def render(
    processes: Iterable[ProcessMetrics],
    routes: Iterable[Mapping[str, Any]],
    now: float,
    supervisor_up: bool = True,
) -> str:
    """The Prometheus text exposition of `processes` and `routes` (rows of Router.stats())."""
    procs = list(processes)
    edges = list(routes)
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{metric} {_number(value)}" for metric, value in samples)

    def who(p: ProcessMetrics) -> str:
        return _labels(process=p.name, kind=p.kind)

    for counter in COUNTERS:
        name = f"loom_messages_{counter}_total"
        family(name, "counter", _HELP[counter], [(name + who(p), p.counts[counter]) for p in procs])
    family(
        "loom_restarts_total",
        "counter",
        "Restarts by the supervisor after a crash.",
        [("loom_restarts_total" + who(p), p.restarts) for p in procs],
    )
    family(
        "loom_process_up",
        "gauge",
        "1 when the process runs (its pid is alive).",
        [("loom_process_up" + who(p), int(p.up)) for p in procs],
    )
    family(
        "loom_queue_messages",
        "gauge",
        "Messages in the inbox's queue folders.",
        [
            ("loom_queue_messages" + _labels(process=p.name, kind=p.kind, queue=q), depth)
            for p in procs
            for q, depth in p.queues.items()
        ],
    )
    summary: list[tuple[str, float]] = []
    for p in procs:
        summary.append(("loom_processing_seconds_sum" + who(p), p.seconds_sum))
        summary.append(("loom_processing_seconds_count" + who(p), p.seconds_count))
    family("loom_processing_seconds", "summary", "Time to process one message.", summary)
    family(
        "loom_tokens_total",
        "counter",
        "Tokens an agent's model calls reported, per model and type (input, output).",
        [
            (
                "loom_tokens_total"
                + _labels(process=p.name, kind=p.kind, model=model, type=token_type),
                count,
            )
            for p in procs
            for model, counts in sorted(p.tokens.items())
            for token_type, count in counts.items()
        ],
    )

    def edge(row: Mapping[str, Any]) -> str:
        return _labels(
            **{
                "from": str(row.get("from")),
                "pipe": str(row.get("pipe") or ""),
                "to": str(row.get("to") or ""),
            }
        )

    family(
        "loom_route_forwarded_total",
        "counter",
        "Messages a route delivered into its destination's inbox.",
        [("loom_route_forwarded_total" + edge(r), int(r.get("forwarded") or 0)) for r in edges],
    )
    family(
        "loom_route_held",
        "gauge",
        "1 while a route waits for room in a full inbox (back-pressure).",
        [("loom_route_held" + edge(r), int(bool(r.get("held")))) for r in edges],
    )
    family(
        "loom_route_waiting",
        "gauge",
        "Messages waiting in the source outbox to be routed.",
        [("loom_route_waiting" + edge(r), int(r.get("pending") or 0)) for r in edges],
    )
    family(
        "loom_supervisor_up",
        "gauge",
        "1 while the supervisor that writes this file runs; 0 in the last file it wrote.",
        [("loom_supervisor_up", int(supervisor_up))],
    )
    family(
        "loom_metrics_timestamp_seconds",
        "gauge",
        "When this file was written (Unix seconds): alert when it grows old.",
        [("loom_metrics_timestamp_seconds", round(now, 3))],
    )
    family(
        "loom_metrics_updated_timestamp_seconds",
        "gauge",
        "When this file was written (the earlier name of loom_metrics_timestamp_seconds).",
        [("loom_metrics_updated_timestamp_seconds", round(now, 3))],
    )
    return "\n".join(out) + "\n"


class Exporter:
    """What the supervisor holds: `update` rewrites `metrics.prom` and saves the tallies."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._collector: Collector | None = None
        # False for the last update, written on the supervisor's way out.
        self.supervisor_up = True

    def update(self, routes: Iterable[Mapping[str, Any]]) -> None:
        """Bring the counters up to date and write `metrics.prom` atomically."""
        if self._collector is None:
            self._collector = Collector.load(self.home)
        processes = self._collector.collect()
        atomic.write_text(
            self.home / PROM_FILE, render(processes, routes, time.time(), self.supervisor_up)
        )
        self._collector.save()
