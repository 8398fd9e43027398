"""Looking at and stopping agents and pipe instances: `ps`, `stop`, `logs` (SPEC 10)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from loom.elapsed import format_elapsed
from loom.errors import LoomError
from loom.store import atomic
from loom.store import home as homes
from loom.store import usage as usages
from loom.store.files import FIELD_LIMIT, FileTooLarge, NotARegularFile, open_regular, read_bounded
from loom.store.home import ProcessDir
from loom.store.logs import parse_line, read_lines, severity
from loom.store.queue import IN_PROGRESS, count_messages

ACTIVE = ("pending", "running", "idle", "restarting")


class ProcessRow:
    """One line of `loom agent ps`."""

    # Plain classes, not dataclasses: `loom agent ps` does not import dataclasses
    # (tests/test_architecture.py).
    __slots__ = (
        "name",
        "kind",
        "status",
        "model",
        "restarts",
        "uptime_s",
        "pid",
        "in_flight",
        "concurrency",
        "throttled_until",
        "project",
        "input_tokens",
        "output_tokens",
        "tokens_by_model",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        status: str,
        model: str,
        restarts: int,
        uptime_s: float | None,
        pid: int | None,
        in_flight: int = 0,
        concurrency: int = 1,
        throttled_until: str | None = None,
        project: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        tokens_by_model: dict[str, dict[str, int]] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind  # "agent" or "pipe"
        self.status = status
        self.model = model
        self.restarts = restarts
        self.uptime_s = uptime_s
        self.pid = pid
        # Claims being answered now, out of how many at once.
        self.in_flight = in_flight
        self.concurrency = concurrency
        # When a back-off after a 429 ends (ISO 8601), while it lasts; None otherwise.
        self.throttled_until = throttled_until
        # The project (loom.yml) that started it; None when started by hand.
        self.project = project
        # Tokens the agent's model calls reported (usage.json), over all its models, and
        # per model: {"openai/gpt-4o-mini": {"input": 120, "output": 30}}.
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.tokens_by_model = {} if tokens_by_model is None else tokens_by_model

    def to_json(self) -> dict[str, object]:
        """The row's fields in order, as `loom agent ps --json` prints them."""
        row: dict[str, object] = {name: getattr(self, name) for name in self.__slots__}
        row["tokens_by_model"] = {m: dict(c) for m, c in self.tokens_by_model.items()}
        return row


def effective_status(proc: ProcessDir) -> tuple[str, int | None]:
    """The status file, corrected by whether a process serves the queue now, and its pid.

    A process that died without writing its last status (SIGKILL) says running or
    idle; with nobody serving its queue that is an `error`, not a running agent.
    """
    status = proc.status or "pending"
    pid = proc.served_by()
    if status in ("running", "idle") and pid is None:
        return "error", None
    return status, pid


def _uptime(proc: ProcessDir, pid: int | None) -> float | None:
    if pid is None:
        return None
    started = proc.read("started_at")
    if not started:
        return None
    try:
        began = datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, time.time() - began.timestamp())


def rows(include_all: bool = False, project: str | None = None) -> list[ProcessRow]:
    """Agents and pipe instances; without `include_all`, only the active ones; with
    `project`, only those that project started."""
    out = []
    for proc in homes.all_processes():
        if project is not None and proc.project != project:
            continue
        status, pid = effective_status(proc)
        if not include_all and status not in ACTIVE:
            continue
        model = proc.read("model") or ("-" if proc.kind == "agents" else "pipe")
        restarts = proc.restarts
        spent = usages.read(proc) if proc.kind == "agents" else usages.Usage()
        out.append(
            ProcessRow(
                name=proc.name,
                kind="agent" if proc.kind == "agents" else "pipe",
                status=status,
                model=model,
                restarts=restarts,
                uptime_s=_uptime(proc, pid),
                pid=pid,
                in_flight=count_messages(proc.inbox / IN_PROGRESS) if pid is not None else 0,
                concurrency=proc.concurrency or 1,
                throttled_until=_throttled_until(proc) if pid is not None else None,
                project=proc.project,
                input_tokens=spent.input_tokens,
                output_tokens=spent.output_tokens,
                tokens_by_model=spent.models,
            )
        )
    return out


def _throttled_until(proc: ProcessDir) -> str | None:
    """The end of the agent's back-off after a 429, if it is still to come."""
    until = proc.read("throttled_until")
    if not until:
        return None
    try:
        end = datetime.fromisoformat(until.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return until if end > time.time() else None


def format_uptime(seconds: float | None) -> str:
    """`42s`, `5m10s`, `2h05m`, `3d04h`; `-` when the process is not running."""
    return format_elapsed(seconds)


class StopResult:
    """What a stop did: `kind` is `agent` or `pipe`, `pid` the process signalled."""

    __slots__ = ("name", "was_running", "exited", "kind", "pid")

    def __init__(
        self,
        name: str,
        was_running: bool,
        exited: bool,
        kind: str = "agent",
        pid: int | None = None,
    ) -> None:
        self.name = name
        self.was_running = was_running
        self.exited = exited
        self.kind = kind
        self.pid = pid


def stop(name: str, timeout: float = 10.0) -> StopResult:
    """Mark `name` stopped and ask its process to finish (SIGTERM); wait for it to exit.

    The process finishes or puts back its current message; nothing restarts it.
    """
    proc = homes.find(name)
    pid = proc.served_by()
    if not pid or pid == _supervisor_pid(proc):
        # Unknown, or the supervisor holding a dead process's queue for a moment while
        # it answers that process's claims (SPEC 8): nothing of this process to signal.
        pid = None
    if pid is not None:
        proc.request_stop(pid)  # first: the supervisor may reap it before we return
    proc.set_status("stopped")
    kind = "pipe" if proc.kind == "pipes" else "agent"
    if pid is None:
        return StopResult(name, was_running=False, exited=True, kind=kind)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return StopResult(name, was_running=False, exited=True, kind=kind)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not homes.pid_alive(pid):  # also for a runner of the original, not named loom
            return StopResult(name, was_running=True, exited=True, kind=kind, pid=pid)
        time.sleep(0.02)
    return StopResult(name, was_running=True, exited=False, kind=kind, pid=pid)


def pending(proc: ProcessDir) -> int:
    """Messages waiting in `proc`'s inbox or being answered: what `rm` would lose."""
    return count_messages(proc.inbox) + count_messages(proc.inbox / IN_PROGRESS)


def remove(name: str, timeout: float = 10.0) -> Path:
    """Stop `name`, then delete its folder (queue, logs, state) for good; its path.

    The folder is first renamed to a hidden name, which no listing takes for a process,
    so nobody sees it half deleted. LoomError when the process does not exit in time.
    """
    proc = homes.find(name)
    if proc.path.is_symlink():
        # Its files live elsewhere: nothing is stopped or written through the link.
        raise LoomError(
            f"{proc.path} is a symbolic link to {os.readlink(proc.path)}, not a folder loom "
            "made; nothing was removed; remove the link by hand if it is not needed"
        )
    result = stop(name, timeout)
    if result.was_running and not result.exited:
        raise LoomError(
            f"{name} did not exit within {timeout:.0f} s of SIGTERM; nothing was removed; "
            f"try again when it has finished its current message"
        )
    atomic.remove_tree(proc.path)
    return proc.path


def _supervisor_pid(proc: ProcessDir) -> int | None:
    try:
        data = read_bounded(proc.path.parent.parent / "supervisor.pid", FIELD_LIMIT, "pid file")
    except (OSError, NotARegularFile, FileTooLarge):
        return None
    raw = data.decode("ascii", errors="replace").strip()
    return int(raw) if raw.isdigit() else None


def log_files(proc: ProcessDir) -> list[Path]:
    try:
        return sorted(p for p in proc.logs.iterdir() if p.name.endswith(".ndjson"))
    except FileNotFoundError:
        return []


def at_least(line: str, level: str | None) -> bool:
    """Whether a log line's level is `level` or more severe (always true without one)."""
    if level is None:
        return True
    rec = parse_line(line)
    if rec is None:
        return True  # not a record: show it rather than hide it
    rank = severity(rec.get("level"))
    if rank is None:
        return True
    return rank >= (severity(level) or 0)


Position = tuple[Path | None, int]


def tail(name: str, count: int, level: str | None = None) -> tuple[list[str], Position]:
    """The last `count` log lines of `name` (of `level` or above), across day files,
    oldest first, and the position right after what was read, to `follow` from there
    so that no line written in between is lost or shown twice."""
    proc = homes.find(name)
    files = log_files(proc)
    chunks: list[list[str]] = []
    have = 0
    position: Position = (None, 0)
    for path in reversed(files):
        try:
            if path == files[-1]:
                data, end = read_lines(path)  # a line being written is followed later
                position = (path, end)
            else:
                with open_regular(path, "log file") as f:
                    data = f.read()
        except (FileNotFoundError, NotARegularFile):
            continue  # removed by gc meanwhile, or a FIFO that is no log of ours
        if have >= count:
            break
        lines = data.decode("utf-8", errors="replace").splitlines()
        lines = [line for line in lines if at_least(line, level)]
        chunks.insert(0, lines)
        have += len(lines)
    every = [line for chunk in chunks for line in chunk]
    return (every[-count:] if count > 0 else []), position


def follow(name: str, poll: float = 0.2, since: Position | None = None) -> Iterator[str]:
    """Yield log lines as they are appended, also across the midnight file switch.

    Starts at `since` (from `tail`), or at the end of the newest file.
    """
    follower = LogFollower(homes.find(name), since)
    while True:
        yield from follower.new_lines()
        time.sleep(poll)


class LogFollower:
    """Reads on in one process's log: the lines appended since the last look, also
    across the switch to the next day's file."""

    def __init__(self, proc: ProcessDir, since: Position | None = None) -> None:
        self.proc = proc
        if since is None:
            files = log_files(proc)
            current = files[-1] if files else None
            since = (current, current.stat().st_size if current else 0)
        self.current, self.offset = since

    def new_lines(self) -> list[str]:
        """Every whole line written since the last call, oldest first."""
        out: list[str] = []
        while True:
            files = log_files(self.proc)
            newest = files[-1] if files else None
            if self.current is not None:
                try:
                    complete, self.offset = read_lines(self.current, self.offset)
                except (FileNotFoundError, NotARegularFile):
                    complete = b""  # gone, or not a log: wait for the next day's file
                out.extend(complete.decode("utf-8", errors="replace").splitlines())
            if newest is not None and newest != self.current:
                self.current, self.offset = newest, 0
                continue
            return out


def tail_many(
    procs: list[ProcessDir], count: int, level: str | None = None
) -> tuple[list[tuple[str, str]], dict[str, Position]]:
    """The last `count` lines of each of `procs` as (name, line), merged in time order
    (a line that is no record keeps its place after the one before it), and where each
    log was read up to, for `follow_many`."""
    merged: list[tuple[str, int, str, str]] = []  # (ts, process index, name, line)
    positions: dict[str, Position] = {}
    for index, proc in enumerate(procs):
        lines, positions[proc.name] = tail(proc.name, count, level)
        ts = ""
        for line in lines:
            rec = parse_line(line)
            if rec is not None and isinstance(rec.get("ts"), str):
                ts = rec["ts"]
            merged.append((ts, index, proc.name, line))
    merged.sort(key=lambda row: (row[0], row[1]))  # stable: each log keeps its order
    return [(name, line) for _, _, name, line in merged], positions


# How often `follow_many` looks for processes that started after it began.
DISCOVER_S = 1.0


def follow_many(
    procs: list[ProcessDir],
    since: dict[str, Position],
    poll: float = 0.2,
    discover: Callable[[], list[ProcessDir]] | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield (name, line) as lines are appended to any of the logs of `procs`.

    With `discover`, the processes it returns that were not followed yet (started since)
    are followed too, from the first line of their log.
    """
    followers = {p.name: LogFollower(p, since.get(p.name)) for p in procs}
    looked = time.monotonic()
    while True:
        for follower in list(followers.values()):
            for line in follower.new_lines():
                yield follower.proc.name, line
        if discover is not None and time.monotonic() - looked >= DISCOVER_S:
            looked = time.monotonic()
            for proc in discover():
                if proc.name not in followers:
                    followers[proc.name] = LogFollower(proc, (None, 0))
            continue  # a new one's lines now, not a poll later
        time.sleep(poll)


def render_log_line(line: str) -> str:
    """A log record as `ts level event key=value ...` for people."""
    rec = parse_line(line)
    if rec is None:
        return line
    head = f"{rec.pop('ts', '')} {rec.pop('level', ''):<7} {rec.pop('event', '')}"
    rec.pop("process", None)
    rest = " ".join(
        f"{k}={json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}"
        for k, v in rec.items()
    )
    return f"{head} {rest}".rstrip()
