"""Which project owns each process of a home (SPEC 9): `up` and `down` touch only their own.

Every process `loom up` starts records its project and its loom.yml (`project` and
`weave` in its folder). A name another project owns is refused before anything starts,
naming both files; so is a name a hand-started process (`loom agent start`) is running
under, until it is stopped.
"""

from __future__ import annotations

from pathlib import Path

from loom.errors import LoomError
from loom.store import home as homes
from loom.store.home import KINDS, PROJECT_FILE, WEAVE_FILE, ProcessDir
from loom.store.processes import ACTIVE, effective_status
from loom.weave.model import Problem, Weave


def config_path(weave: Weave) -> str:
    """The loom.yml as recorded in each process folder: its absolute path."""
    return str(weave.path.resolve())


def is_mine(proc: ProcessDir, weave: Weave) -> bool:
    """Started from this loom.yml, or by this project from a loom.yml that is gone (moved)."""
    recorded = proc.read(WEAVE_FILE)
    if not recorded:
        return False
    if recorded == config_path(weave):
        return True
    return proc.project == weave.project and not Path(recorded).is_file()


def claim(proc: ProcessDir, weave: Weave) -> None:
    """Record the weave's project and loom.yml in the process folder."""
    proc.write(PROJECT_FILE, weave.project)
    proc.write(WEAVE_FILE, config_path(weave))


def owned(weave: Weave, home: Path) -> list[ProcessDir]:
    """The processes of `home` this weave started."""
    return [p for p in homes.all_processes(home) if is_mine(p, weave)]


def release_definitions(weave: Weave, home: Path) -> None:
    """Forget the project of pipe definitions it no longer declares (`pipes/<pipe>/`)."""
    try:
        names = sorted(p.name for p in (home / "pipes").iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if name in weave.pipes or "~" in name:
            continue
        try:
            proc = ProcessDir(home, "pipes", name)
        except LoomError:
            continue
        if proc.status is None and is_mine(proc, weave):
            proc.disown()


def _foreign(proc: ProcessDir, weave: Weave) -> str | None:
    """Why another project holds `proc`, or None. A project whose loom.yml is gone holds nothing."""
    recorded = proc.read(WEAVE_FILE)
    if not recorded or is_mine(proc, weave) or not Path(recorded).is_file():
        return None
    what = "agent" if proc.kind == "agents" else "pipe"
    project = proc.project or "-"
    return (
        f"{what} '{proc.name}' belongs to project '{project}' ({recorded}); names are shared "
        f"by every project under one LOOM_HOME: rename it in {config_path(weave)} or in "
        f"{recorded}, or run one of them with another LOOM_HOME"
    )


def _hand_started(proc: ProcessDir, weave: Weave) -> str | None:
    """Why a running process without a project cannot be taken over, or None."""
    recorded = proc.read(WEAVE_FILE)
    if proc.status is None or is_mine(proc, weave) or (recorded and Path(recorded).is_file()):
        return None
    status, pid = effective_status(proc)
    if status not in ACTIVE and pid is None:
        return None
    what = "agent" if proc.kind == "agents" else "pipe"
    return (
        f"{what} '{proc.name}' is running and was not started by a loom.yml (`loom agent "
        f"start`); stop it with `loom agent stop {proc.name}`, then `loom up` takes it over "
        "with its state"
    )


def conflicts(weave: Weave, home: Path, instances: list[str]) -> list[Problem]:
    """Every name of the weave that another project, or a hand-started process, holds."""
    problems: list[Problem] = []
    wanted: list[tuple[str, str, int]] = []  # (kind, name, line)
    for name in weave.agents:
        wanted.append(("agents", name, weave.lines.get(name, 1)))
    for name in weave.pipes:
        wanted.append(("pipes", name, weave.lines.get(name, 1)))
    for instance in instances:
        pipe = instance.split("~", 1)[0]
        wanted.append(("pipes", instance, weave.lines.get(pipe, 1)))
    seen: set[str] = set()
    for kind, name, line in wanted:
        if name in seen:  # a node-form pipe is its own instance
            continue
        seen.add(name)
        # Agents and pipes share one namespace: look in both folders for another owner.
        why = None
        for other in KINDS if "~" not in name else ("pipes",):
            why = why or _foreign(ProcessDir(home, other, name), weave)
        if why is None and (kind == "agents" or name in weave.node_pipes or "~" in name):
            why = _hand_started(ProcessDir(home, kind, name), weave)
        if why is not None:
            problems.append(Problem(line, 1, why))
    return problems
