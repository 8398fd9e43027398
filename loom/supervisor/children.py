"""Spawning, watching and burying the processes the supervisor manages.

Agents and pipe instances go through the same code: only the command line differs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from loom.errors import LoomError, UnreadableMessage, UnsupportedVersion, is_disk_full
from loom.store import atomic
from loom.store.files import open_regular
from loom.store.home import AlreadyServed, ProcessDir, now_iso, pid_is_loom
from loom.store.ids import new_id
from loom.store.message import from_dict, read_file
from loom.store.queue import Queue, list_messages
from loom.supervisor.policy import HELD_ERRORS, last_crash

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
    proc.forget_stop()
    try:
        log = atomic.open_append(proc.path / STDERR_LOG)
    except OSError as exc:
        if is_disk_full(exc):
            raise
        # Something that is not a file stands at stderr.log (a FIFO, a link, a folder):
        # the child runs all the same, its stderr unrecorded.
        log = open(os.devnull, "ab")
    with log as err:
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


def last_error(proc: ProcessDir) -> str | None:
    """The last non-empty line the process wrote to stderr, if any."""
    try:
        with open_regular(proc.path / STDERR_LOG, STDERR_LOG, follow=False) as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except (OSError, LoomError):  # gone, or not a file loom could have written
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
    error_type: str | None = None,
    msg: str | None = None,
) -> Path:
    """Write `crashes/<ts>-<id>.json` (SPEC 8) and return its path.

    `error_type` says why, when the supervisor knows; `msg` names the message involved.
    """
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
    if error_type:
        record["error_type"] = error_type
    if msg:
        record["msg"] = msg
    error = last_error(proc)
    if error:
        record["last_error"] = error
    atomic.make_private_dir(proc.crashes)
    path = proc.crashes / f"{ts}-{cid}.json"
    atomic.write_text(path, json.dumps(record, ensure_ascii=False))
    return path


def newer_message(proc: ProcessDir) -> str | None:
    """The first pending message of `proc`'s inbox written by a newer loom, if any.

    Messages are taken oldest first, so it is the one that stopped the consumer.
    """
    for name in list_messages(proc.inbox):
        try:
            from_dict(json.loads(read_file(proc.inbox / name)))
        except UnsupportedVersion:
            return name
        except (OSError, ValueError, UnreadableMessage):
            continue  # gone, or the consumer's to quarantine
    return None


def upgrade_stop(proc: ProcessDir) -> dict[str, object] | None:
    """The last crash record of `proc` when it says it stopped for a newer message, or
    for a file of its own only the operator can fix (its `msg` is then unset)."""
    record = last_crash(proc.crashes)
    return record if record is not None and record.get("error_type") in HELD_ERRORS else None


def still_blocked(proc: ProcessDir, record: dict[str, object]) -> bool:
    """Whether the message named by an `upgrade_stop` record is still in the inbox.

    Until it is gone, or the operator starts the process again (`pending`), the
    process is left alone.
    """
    name = record.get("msg")
    if not isinstance(name, str) or not name:
        return True  # which message is unknown: only the operator can tell
    return (proc.inbox / name).is_file()


def fail_orphans(proc: ProcessDir, reason: str) -> list[str]:
    """Answer every message a dead process left in `.in-progress/` with a failure reply.

    Fan-in consumers waiting for an answer then get one (SPEC 8). Done as the queue's
    owner: when a live process owns it, its claims are its own and nothing is touched.
    """
    try:
        owner = proc.own()
    except AlreadyServed:
        return []
    try:
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
    finally:
        owner.release()
