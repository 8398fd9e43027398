"""`loom pipes` and `loom pipe create`: the pipe definitions and instances a home knows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from loom.errors import ConfigError, UsageError
from loom.names import validate_name
from loom.pipeline import PipeDef, catalog_dir, load_file, parse_definition, save_definition
from loom.pipeline.yaml_lines import read_yaml
from loom.store import home as homes
from loom.store.files import load_json
from loom.store.processes import effective_status
from loom.store.queue import count_messages


@dataclass(frozen=True)
class DefinitionRow:
    name: str
    where: str  # "home" or "catalog"
    steps: str  # e.g. "filter → dedupe → window"
    description: str


@dataclass(frozen=True)
class InstanceRow:
    name: str
    pipe: str
    status: str
    waiting: int


def _steps(defn: PipeDef) -> str:
    return " → ".join(spec.kind for spec in defn.operators)


def definitions(home: Path) -> list[DefinitionRow]:
    """Definitions stored in the home, then catalog ones not shadowed by them."""
    rows: dict[str, DefinitionRow] = {}
    for config in sorted((home / "pipes").glob("*/config.json")):
        name = config.parent.name
        if "~" in name:
            continue
        try:
            defn = load_file(config, name)
        except ConfigError as exc:
            rows[name] = DefinitionRow(name, "home", "(invalid)", str(exc).splitlines()[0])
            continue
        rows[name] = DefinitionRow(name, "home", _steps(defn), defn.description or "")
    for path in sorted(catalog_dir().glob("*.yml")):
        if path.stem in rows or path.name.endswith(".test.yml"):
            continue
        try:
            defn = load_file(path, path.stem)
        except ConfigError:
            continue
        rows[path.stem] = DefinitionRow(path.stem, "catalog", _steps(defn), defn.description or "")
    return list(rows.values())


def instances(home: Path) -> list[InstanceRow]:
    """Pipe processes (instances) with their status and waiting messages."""
    rows = []
    for proc in homes.all_processes(home):
        if proc.kind != "pipes":
            continue
        status, _ = effective_status(proc)
        waiting = count_messages(proc.inbox)
        rows.append(InstanceRow(proc.name, proc.name.split("~", 1)[0], status, waiting))
    return rows


def create(name: str, text: str, source: str, home: Path) -> Path:
    """Validate a YAML or JSON definition and store it as `$LOOM_HOME/pipes/<name>/config.json`."""
    validate_name(name, "pipe name")
    if not text.strip():
        raise UsageError("the definition is empty")
    if text.lstrip().startswith(("[", "{")):
        try:
            data = load_json(text)
        except ValueError:
            data = read_yaml(text, source)
    else:
        data = read_yaml(text, source)
    defn = parse_definition(data, name=name, source=source)
    return save_definition(defn, home)


def as_json(rows: list[DefinitionRow] | list[InstanceRow]) -> list[dict[str, object]]:
    return [asdict(r) for r in rows]
