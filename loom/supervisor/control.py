"""What the CLI asks of the supervisor: start detached agents, make sure one supervisor runs."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from loom import settings
from loom.agent import agents
from loom.errors import LoomError, UsageError
from loom.pipeline.definition import instance_definition_path
from loom.store import home as homes
from loom.store import processes
from loom.store.files import open_regular
from loom.store.home import AlreadyServed, ProcessDir
from loom.supervisor import lock, manage

START_TIMEOUT_S = 15.0


def ensure_supervisor(home: Path) -> subprocess.Popen[bytes] | None:
    """Nudge the running supervisor, or start one on demand (returned, to watch its exit).

    A running one whose settings differ from this shell's is named on stderr in one line
    (manage.settings_warning): what it starts runs with its settings, not these.
    """
    if not lock.nudge(home):
        return lock.start_on_demand(home)
    manage.warn_if_settings_differ(home)
    return None


def wait_started(
    proc: ProcessDir,
    home: Path,
    timeout: float = START_TIMEOUT_S,
    started: subprocess.Popen[bytes] | None = None,
) -> str:
    """Wait until the supervisor has picked `proc` up; return its status then.

    If the supervisor went away meanwhile (an on-demand one that was about to exit),
    start another one. If the one this command `started` fails, its last line in
    `supervisor.log` is the error, at once rather than after the timeout.
    """
    deadline = time.monotonic() + timeout
    restarted_supervisor = False
    while time.monotonic() < deadline:
        status = proc.status or "pending"
        if status != "pending":
            return status
        if started is not None and started.poll() not in (None, 0):
            raise LoomError(_last_line(home / "supervisor.log") or "the supervisor failed to start")
        if not lock.is_running(home) and not restarted_supervisor:
            started = lock.start_on_demand(home)
            restarted_supervisor = True
        time.sleep(0.02)
    raise LoomError(
        f"the supervisor did not start {proc.name} within {timeout:.0f} s; "
        f"see {home / 'supervisor.log'}"
    )


@dataclass(frozen=True)
class Started:
    """What `start_detached` did: `status` is the agent's status once the supervisor
    runs it; `already` when it ran with these very settings and was left alone;
    `changed` names the settings a restart applied."""

    status: str
    pid: int | None
    already: bool = False
    changed: tuple[str, ...] = ()


def start_detached(spec: agents.AgentSpec) -> Started:
    """Write the agent's files, mark it pending and hand it to the supervisor (SPEC 5).

    The provider's settings are checked here first, so a missing key is reported to
    the user at once rather than in a crash record. An agent the supervisor already
    runs with the same settings is left alone; with other settings it is stopped and
    started again with them (as compose recreates a changed service). One served in
    the foreground belongs to its shell and is refused (AlreadyServed).
    """
    secrets = sorted(k for k in spec.env if agents.SECRET_NAME.search(k))
    if secrets:
        raise UsageError(
            f"--env {secrets[0]}=... is a credential and is never written to disk, so a "
            f"detached agent cannot get it that way; export {secrets[0]} in the environment "
            "that starts the supervisor instead"
        )
    proc = homes.agent(spec.name)
    served_by = proc.served_by()
    if served_by is not None and proc.read("mode") != "detached":
        # Its files belong to the process that serves it (SPEC 4: one owner per queue).
        raise AlreadyServed(proc, served_by)
    env = dict(os.environ)
    env.update(spec.env)
    settings.check_all(env)  # the runner reads them from its env file, long after we return
    agents.provider_for(spec.model, env)
    changed: tuple[str, ...] = ()
    if served_by is not None:
        changed = tuple(agents.changed_settings(spec, proc))
        if not changed:
            return Started(proc.status or "running", served_by, already=True)
        stop_for_restart(proc)
    proc = agents.prepare(spec, mode="detached")
    proc.set_status("pending")
    home = homes.home()
    status = wait_started(proc, home, started=ensure_supervisor(home))
    return Started(status, proc.pid, changed=changed)


def stop_for_restart(proc: ProcessDir) -> None:
    """Stop `proc`'s process and wait for its exit, so that the next one is the only one
    serving its queue; LoomError when it does not exit in time (it is left stopping)."""
    result = processes.stop(proc.name)
    if result.was_running and not result.exited:
        raise LoomError(
            f"{proc.name} did not exit within 10 s of SIGTERM; it is still finishing its "
            f"current message; try again when 'loom agent ps' no longer lists it"
        )


def restart(name: str) -> Started:
    """`loom restart NAME`: stop the agent or pipe instance, then have the supervisor
    start it again from the settings stored in its folder (SPEC 5, 8).

    One served in the foreground belongs to its shell and is refused; one not running
    is started. The provider's settings are checked before anything is stopped.
    """
    proc = homes.find(name)
    served_by = proc.served_by()
    if served_by is not None and proc.read("mode") != "detached":
        raise LoomError(
            f"{name} runs in the foreground (pid {served_by}); stop it in its terminal "
            f"(Ctrl-C) and start it again there, or start it with -d to restart it here"
        )
    if proc.kind == "agents":
        model = proc.read("model")
        if not model:
            raise UsageError(f"agent '{name}' has no model file; start it with 'loom agent start'")
        env = dict(os.environ)
        env.update(agents.read_env_file(proc))
        agents.provider_for(model, env)
    elif not (config := instance_definition_path(proc.name, proc.path.parent.parent)).is_file():
        raise UsageError(
            f"pipe instance '{name}' has no definition ({config}); start it with "
            "'loom pipe start', 'loom up' or a route"
        )
    if served_by is not None:
        stop_for_restart(proc)
    proc.write("mode", "detached")
    proc.set_status("pending")
    home = homes.home()
    status = wait_started(proc, home, started=ensure_supervisor(home))
    return Started(status, proc.pid)


def _last_line(path: Path) -> str | None:
    """The last non-empty line of a log, without the `loom: ` every error starts with."""
    try:
        with open_regular(path, "log", follow=False) as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode("utf-8", errors="replace").strip().splitlines()
    except (OSError, LoomError):
        return None
    return lines[-1].removeprefix("loom: ") if lines else None
