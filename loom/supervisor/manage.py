"""`loom supervisor status|stop|restart`, and the warning that the running supervisor
has other settings than the shell asking it to start something."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from loom.errors import LoomError
from loom.store import home as homes
from loom.store.home import ProcessDir, pid_alive
from loom.supervisor import lock, record

# Longer than the supervisor's own wait for its children (core.STOP_CHILDREN_S).
STOP_TIMEOUT_S = 30.0
START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Status:
    """The running supervisor as `loom supervisor status` shows it."""

    pid: int
    mode: str | None  # record.ON_DEMAND | record.SERVICE; None when it wrote no record
    started_at: str | None
    children: int | None
    differs: list[str]  # relevant variables whose value is not the caller's

    def to_json(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "mode": self.mode,
            "started_at": self.started_at,
            "children": self.children,
            "settings_differ": self.differs,
        }


def status(home: Path, env: Mapping[str, str] | None = None) -> Status | None:
    """The running supervisor, or None when none runs."""
    pid = lock.running_pid(home)
    if pid is None:
        return None
    found = record.read(home)
    if found is None or found.pid != pid:
        return Status(pid, None, None, None, [])
    differs = found.differs(os.environ if env is None else env)
    return Status(pid, found.mode, found.started_at, found.children, differs)


def settings_warning(home: Path, env: Mapping[str, str] | None = None) -> str | None:
    """One line when the running supervisor's settings differ from `env`'s; names only."""
    now = status(home, env)
    if now is None or not now.differs:
        return None
    names = ", ".join(now.differs)
    if now.mode == record.SERVICE:
        fix = "restart its service (e.g. `systemctl --user restart loom`) to change them"
    else:
        fix = "run `loom supervisor restart` to use this shell's"
    return (
        f"warning: the supervisor (pid {now.pid}) runs with other settings than this "
        f"shell ({names}); what it starts gets its settings: {fix}"
    )


def warn_if_settings_differ(home: Path) -> None:
    """Print `settings_warning` on stderr, if there is one."""
    text = settings_warning(home)
    if text is not None:
        print(f"loom: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Stopped:
    pid: int | None  # None: no supervisor ran
    children: int  # processes it stopped, to start again with the next supervisor


def stop(home: Path, timeout: float = STOP_TIMEOUT_S) -> Stopped:
    """Stop the running supervisor and, gracefully, every process it supervises.

    Those processes are left `pending`: the next supervisor starts them again. Raises
    LoomError when it has not exited within `timeout`.
    """
    pid = lock.running_pid(home)
    if pid is None:
        return Stopped(None, 0)
    before = {p.path for p in _detached(home) if p.status != "pending"}
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return Stopped(None, 0)
    deadline = time.monotonic() + timeout
    while lock.is_running(home) or pid_alive(pid):
        if time.monotonic() > deadline:
            raise LoomError(
                f"the supervisor (pid {pid}) did not stop within {timeout:.0f} s; "
                f"see {home / 'supervisor' / 'logs'}"
            )
        time.sleep(0.02)
    pending = [p for p in _detached(home) if p.path in before and p.status == "pending"]
    return Stopped(pid, len(pending))


def _detached(home: Path) -> list[ProcessDir]:
    """The processes a supervisor runs (a foreground one belongs to its shell)."""
    return [p for p in homes.all_processes(home) if p.read("mode") == "detached"]


@dataclass(frozen=True)
class Restarted:
    stopped: Stopped
    pid: int  # the new supervisor's
    started: list[str]  # `agent NAME` / `pipe NAME` it started


def restart(home: Path, timeout: float = START_TIMEOUT_S) -> Restarted:
    """Stop the supervisor and its processes, then start an on-demand supervisor with the
    caller's environment, which starts every `pending` process (those it stopped too).

    A supervisor that runs as a service (`loom supervisor run`) is refused: its
    environment is its service manager's, not this shell's.
    """
    now = status(home)
    if now is not None and now.mode == record.SERVICE:
        raise LoomError(
            f"the supervisor (pid {now.pid}) runs as a service (`loom supervisor run`) with "
            "its service manager's environment; restart it there (e.g. `systemctl --user "
            "restart loom`)"
        )
    stopped = stop(home)
    waiting = [p for p in _detached(home) if p.status == "pending"]
    started = lock.start_on_demand(home)
    deadline = time.monotonic() + timeout
    pid = None
    while time.monotonic() < deadline:
        pid = lock.running_pid(home)
        if pid is not None and all(p.status != "pending" for p in waiting):
            break
        if started.poll() not in (None, 0):
            raise LoomError(f"the supervisor failed to start; see {home / 'supervisor.log'}")
        if pid is None and started.poll() == 0:
            break  # it started nothing and left: nothing was to run
        time.sleep(0.02)
    else:
        raise LoomError(
            f"the new supervisor did not start everything within {timeout:.0f} s; "
            "see `loom agent ps --all`"
        )
    names = [f"{'agent' if p.kind == 'agents' else 'pipe'} {p.name}" for p in waiting]
    return Restarted(stopped, pid or started.pid, names)
