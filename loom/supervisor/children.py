"""Spawning, watching and burying the processes the supervisor manages.

Agents and pipe instances go through the same code: only the command line differs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from loom import atomic
from loom.errors import UnreadableMessage
from loom.home import ProcessDir, now_iso, pid_is_loom
from loom.ids import new_id
from loom.queue import Queue, list_messages

STDERR_LOG = "stderr.log"
# How much of stderr.log's tail goes into a crash record as `last_error`.
TAIL_BYTES = 4096


def command(proc: ProcessDir) -> list[str]:
    """The command line that runs `proc` detached (`loom agent serve` / `loom pipe serve`
    without the CLI layer, and from the stored definition, not the working folder's)."""
    return [sys.executable, "-m", "loom.supervisor.child_main", proc.kind, proc.name]


def child_env(proc: ProcessDir, home: Path) -> dict[str, str]:
    """The supervisor's environment, the process's `env` file on top, and LOOM_HOME."""
    env = dict(os.environ)
    for line in (proc.read("env") or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            env[key.strip()] = value
    env["LOOM_HOME"] = str(home)
    return env


@dataclass
class Child:
    """A process the supervisor started (with a Popen) or adopted (pid only)."""

    proc: ProcessDir
    pid: int
    popen: subprocess.Popen[bytes] | None
    started: float

    def exit_status(self) -> tuple[int | None, int | None] | None:
        """(exit code, signal) once the process has ended, else None."""
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                return None
            return (code, None) if code >= 0 else (None, -code)
        if pid_is_loom(self.pid):
            return None
        return (None, None)  # adopted: its exit status went to whoever reaped it


def spawn(proc: ProcessDir, home: Path) -> Child:
    """Start `proc` in its own session, stderr appended to its `stderr.log`."""
    with atomic.open_append(proc.path / STDERR_LOG) as err:
        popen = subprocess.Popen(
            command(proc),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            env=child_env(proc, home),
        )
    proc.write("pid", str(popen.pid))
    return Child(proc, popen.pid, popen, time.monotonic())


def adopt(proc: ProcessDir, pid: int) -> Child:
    return Child(proc, pid, None, time.monotonic())


def terminate(child: Child) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGTERM)


def last_error(proc: ProcessDir) -> str | None:
    """The last non-empty line the process wrote to stderr, if any."""
    try:
        with open(proc.path / STDERR_LOG, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-1] if lines else None


def record_crash(
    proc: ProcessDir,
    *,
    exit_code: int | None,
    signum: int | None,
    restart_count: int,
    next_restart_at: float | None,
) -> Path:
    """Write `crashes/<ts>-<id>.json` (SPEC 8) and return its path."""
    ts, cid = new_id()
    record: dict[str, object] = {
        "ts": now_iso(),
        "exitCode": exit_code,
        "signal": signal.Signals(signum).name if signum else None,
        "restartCount": restart_count,
        "nextRestartAt": (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(next_restart_at))
            if next_restart_at
            else None
        ),
    }
    error = last_error(proc)
    if error:
        record["last_error"] = error
    atomic.make_private_dir(proc.crashes)
    path = proc.crashes / f"{ts}-{cid}.json"
    atomic.write_text(path, json.dumps(record, ensure_ascii=False))
    return path


def fail_orphans(proc: ProcessDir, reason: str) -> list[str]:
    """Answer every message a dead process left in `.in-progress/` with a failure reply.

    Fan-in consumers waiting for an answer then get one (SPEC 8).
    """
    queue = Queue(proc.inbox, proc.outbox).ensure()
    failed = []
    for name in list_messages(queue.in_progress):
        try:
            msg = queue.read_claimed(name)
        except (UnreadableMessage, UnicodeDecodeError) as exc:
            queue.quarantine(name, str(exc))
            continue
        text = f"{proc.name} is dead: {reason}"
        reply = msg.reply(proc.name, text, parent_filename=name, error=True)
        queue.fail(name, reply, error_type="dead", last_error=reason, attempts=1)
        failed.append(name)
    return failed
