"""The processes at the ends of an edge: agents, pipes and the pipe instances edges need.

Agents and pipes share one namespace (SPEC 3): a name is `agents/<name>/` when that
folder exists, else `pipes/<name>/`. A pipe definition is stored as
`pipes/<pipe>/config.json`; the instance carrying a piped edge is `pipes/<p>~<a>→<b>/`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from loom.errors import NotFound
from loom.pipeline import load_definition, save_definition
from loom.routing.edge import Edge
from loom.store import atomic
from loom.store.home import ProcessDir


def locate(home: Path, name: str) -> ProcessDir:
    """The folder of process `name`; an agent unless only a pipe of that name exists."""
    if "~" in name:
        return ProcessDir(home, "pipes", name)
    if not (home / "agents" / name).is_dir() and (home / "pipes" / name).is_dir():
        return ProcessDir(home, "pipes", name)
    return ProcessDir(home, "agents", name)


def is_known(home: Path, name: str) -> bool:
    """Whether `name` is an existing agent or pipe (a folder under agents/ or pipes/)."""
    return (home / "agents" / name).is_dir() or (home / "pipes" / name).is_dir()


def store_definition(home: Path, pipe: str) -> Path:
    """Make sure pipe `pipe` is stored as `pipes/<pipe>/config.json`; raise NotFound if undefined.

    A definition the pipe engine finds elsewhere (./pipes/, loom.yml, the catalog) is
    copied in, so the supervisor finds it whatever its working directory.
    """
    path = home / "pipes" / pipe / "config.json"
    if path.is_file():
        return path
    try:
        definition = load_definition(pipe, home)
    except NotFound:
        raise NotFound(
            f"unknown pipe '{pipe}'; define it first (loom pipe create) or check the name"
        ) from None
    return save_definition(definition, home, name=pipe)


def check_endpoints(home: Path, edge: Edge) -> None:
    """Refuse an edge whose agents or pipe do not exist, with what to do about it."""
    for name in (edge.source, edge.dest):
        if name is not None and not is_known(home, name):
            raise NotFound(f"unknown agent '{name}'; start it first or check the name")
    if edge.pipe is not None:
        store_definition(home, edge.pipe)


def instances(edges: Iterable[Edge]) -> list[tuple[str, str]]:
    """The pipe instances the table needs, as (instance name, pipe name), each once."""
    found: dict[str, str] = {}
    for edge in edges:
        instance = edge.instance
        if instance is not None and edge.pipe is not None:
            found.setdefault(instance, edge.pipe)
    return list(found.items())


def ensure_instance(home: Path, instance: str, pipe: str) -> ProcessDir:
    """Create the folder of pipe instance `instance` for the supervisor to spawn (idempotent).

    Copies the definition into its `config.json` when missing and, only where absent,
    writes `restart` = always, `mode` = detached and `status` = pending.
    """
    proc = ProcessDir(home, "pipes", instance).create()
    config = proc.path / "config.json"
    if not config.is_file():
        source = store_definition(home, pipe)
        atomic.write_bytes(config, source.read_bytes())
    if proc.read("restart") is None:
        proc.write("restart", "always")
    if proc.read("mode") is None:
        proc.write("mode", "detached")
    if proc.status is None:
        proc.set_status("pending")
    return proc
