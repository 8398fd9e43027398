"""What the CLI asks of the supervisor: start detached agents, make sure one supervisor runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from loom import agents
from loom import home as homes
from loom.errors import LoomError, UsageError
from loom.home import AlreadyServed, ProcessDir
from loom.supervisor import lock

START_TIMEOUT_S = 15.0


def ensure_supervisor(home: Path) -> None:
    """Nudge the running supervisor, or start one on demand."""
    if not lock.nudge(home):
        lock.start_on_demand(home)


def wait_started(proc: ProcessDir, home: Path, timeout: float = START_TIMEOUT_S) -> str:
    """Wait until the supervisor has picked `proc` up; return its status then.

    If the supervisor went away meanwhile (an on-demand one that was about to exit),
    start another one.
    """
    deadline = time.monotonic() + timeout
    restarted_supervisor = False
    while time.monotonic() < deadline:
        status = proc.status or "pending"
        if status != "pending":
            return status
        if not lock.is_running(home) and not restarted_supervisor:
            lock.start_on_demand(home)
            restarted_supervisor = True
        time.sleep(0.02)
    raise LoomError(
        f"the supervisor did not start {proc.name} within {timeout:.0f} s; "
        f"see {home / 'supervisor.log'}"
    )


def start_detached(spec: agents.AgentSpec) -> tuple[str, int | None]:
    """Write the agent's files, mark it pending and hand it to the supervisor (SPEC 5).

    The provider's settings are checked here first, so a missing key is reported to
    the user at once rather than in a crash record.
    """
    secrets = sorted(k for k in spec.env if agents.SECRET_NAME.search(k))
    if secrets:
        raise UsageError(
            f"--env {secrets[0]}=... is a credential and is never written to disk, so a "
            f"detached agent cannot get it that way; export {secrets[0]} in the environment "
            "that starts the supervisor instead"
        )
    served_by = homes.agent(spec.name).owner_pid()
    if served_by is not None:
        # Its files belong to the process that serves it (SPEC 4: one owner per queue).
        raise AlreadyServed(homes.agent(spec.name), served_by)
    env = dict(os.environ)
    env.update(spec.env)
    agents.provider_for(spec.model, env)
    proc = agents.prepare(spec, mode="detached")
    proc.set_status("pending")
    home = homes.home()
    ensure_supervisor(home)
    status = wait_started(proc, home)
    return status, proc.pid
