"""`$LOOM_HOME/routes.json`: reading, validating and changing the routing table (SPEC 7).

Every change happens under an flock on `routes.lock` (read, modify, write atomically),
so concurrent `loom route` calls never lose an edge, and a table is validated, cycles
included, before anything is written.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from loom.errors import ConfigError, InvalidName, NotFound, UsageError
from loom.names import validate_name
from loom.routing.condition import Condition
from loom.routing.edge import Edge, edge_from_json, table_legs
from loom.routing.endpoints import check_endpoints
from loom.routing.graph import check_acyclic
from loom.routing.ledger import reconcile_since
from loom.store import atomic, files
from loom.store.files import load_json


def routes_path(home: Path) -> Path:
    return home / "routes.json"


@contextmanager
def routes_lock(home: Path) -> Iterator[None]:
    """Hold the exclusive lock that serialises every change to routes.json."""
    with atomic.open_append(home / "routes.lock") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def validate_edge(edge: Edge) -> Edge:
    """Check names, the `when` expression and the limit of one edge; raise ConfigError."""
    try:
        validate_name(edge.source, "route source")
        if edge.dest is not None:
            validate_name(edge.dest, "route destination")
        if edge.pipe is not None:
            validate_name(edge.pipe, "pipe name")
    except InvalidName as exc:
        raise ConfigError(str(exc)) from None
    if edge.dest is None and edge.pipe is None:
        raise ConfigError(f"route from '{edge.source}' needs a destination ('to') or a pipe")
    if edge.when is not None:
        Condition(edge.when)
    if edge.limit < 1:
        raise ConfigError(f"'limit' must be at least 1, got {edge.limit}")
    return edge


def validate_table(edges: Sequence[Edge]) -> None:
    """Check every edge, then the table as a whole: no duplicates, no shared legs, no cycles."""
    for edge in edges:
        validate_edge(edge)
    _check_table(edges)


def _check_table(edges: Sequence[Edge]) -> None:
    seen: dict[tuple[str, str | None, str | None], Edge] = {}
    for edge in edges:
        if edge.identity in seen:
            raise ConfigError(f"route {edge.describe()} appears twice; keep one")
        seen[edge.identity] = edge
    table_legs(edges)
    check_acyclic(edge.hop() for edge in edges)


def load_routes(home: Path) -> list[Edge]:
    """The routing table; empty when routes.json is absent, ConfigError when it is unusable."""
    path = routes_path(home)
    try:
        text = files.read_bounded(path, files.CONFIG_LIMIT, "routes file").decode("utf-8")
    except FileNotFoundError:
        return []
    except (files.NotARegularFile, files.FileTooLarge) as exc:
        raise ConfigError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not text.strip():
        raise ConfigError(f"{path} is empty (half-written?); write [] for no routes")
    try:
        raw = load_json(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix it, or remove it and add the routes again with 'loom route'"
        ) from None
    except ValueError as exc:  # nested too deeply to decode
        raise ConfigError(
            f"{path} is not valid JSON ({exc}); "
            "fix it, or remove it and add the routes again with 'loom route'"
        ) from None
    if not isinstance(raw, list):
        raise ConfigError(f'{path} must be a JSON list of routes, like [{{"from": ..}}]')
    edges = []
    for number, entry in enumerate(raw, start=1):
        try:
            edges.append(validate_edge(edge_from_json(entry)))
        except ConfigError as exc:
            raise ConfigError(f"{path}: route {number}: {exc}") from None
    try:
        _check_table(edges)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return edges


def _render(edges: Sequence[Edge]) -> str:
    # One edge per line, as SPEC 7 shows the file: easy to read, diff and grep.
    if not edges:
        return "[]\n"
    lines = [json.dumps(edge.to_json(), ensure_ascii=False) for edge in edges]
    return "[\n  " + ",\n  ".join(lines) + "\n]\n"


def _write_locked(home: Path, edges: Sequence[Edge]) -> None:
    # Callers have validated each edge; the table-wide checks (cycles) run here, on the
    # table as it stands under the lock, before anything is written.
    _check_table(edges)
    atomic.write_text(routes_path(home), _render(edges))
    # Legs that are new from now on start from now (see ledger.reconcile_since).
    reconcile_since(home, (leg.key for leg in table_legs(edges)))


def save_routes(home: Path, edges: Sequence[Edge]) -> None:
    """Validate `edges` (cycles included) and replace routes.json atomically, under the lock."""
    validate_table(edges)
    with routes_lock(home):
        _write_locked(home, edges)


def replace_routes(home: Path, remove: Sequence[Edge], add: Sequence[Edge]) -> list[Edge]:
    """Drop the routes `remove` names and put `add` in their place, in one locked change.

    What a weave does on `loom up`: routes added meanwhile by `loom route` are kept.
    """
    for edge in add:
        validate_edge(edge)
    gone = {e.identity for e in remove} | {e.identity for e in add}
    with routes_lock(home):
        edges = [e for e in load_routes(home) if e.identity not in gone] + list(add)
        _write_locked(home, edges)
    return edges


def add_route(home: Path, edge: Edge) -> list[Edge]:
    """Add `edge`, or update the `when`/`limit` of the same route; return the new table.

    Refuses unknown agents and pipes, and a table with a cycle, before writing anything.
    """
    validate_edge(edge)
    check_endpoints(home, edge)
    with routes_lock(home):
        edges = load_routes(home)
        for i, existing in enumerate(edges):
            if existing.identity == edge.identity:
                edges[i] = edge
                break
        else:
            edges.append(edge)
        _write_locked(home, edges)
    return edges


def find_route(edges: Sequence[Edge], source: str, dest: str | None, pipe: str | None) -> Edge:
    """The edge `source` → `dest` (through `pipe` when given); NotFound or UsageError if not one.

    Without `pipe`, the one edge from `source` to `dest` is meant, direct or piped.
    """
    if dest is None and pipe is None:
        raise UsageError("say which route: give --to DEST, --pipe PIPE, or both")
    if pipe is not None:
        matches = [e for e in edges if e.identity == (source, pipe, dest)]
    else:
        matches = [e for e in edges if e.source == source and e.dest == dest]
    if len(matches) > 1:
        pipes = ", ".join(str(e.pipe) for e in matches if e.pipe)
        raise UsageError(
            f"there are {len(matches)} routes from {source} to {dest} (pipes: {pipes}); "
            "name one with --pipe"
        )
    if not matches:
        wanted = Edge(source, dest, pipe).describe()
        raise NotFound(f"no route {wanted}; see 'loom routes'")
    return matches[0]


def remove_route(home: Path, source: str, dest: str | None, pipe: str | None = None) -> Edge:
    """Remove the route `source` → `dest` (see find_route); return the removed edge."""
    with routes_lock(home):
        edges = load_routes(home)
        edge = find_route(edges, source, dest, pipe)
        edges.remove(edge)
        _write_locked(home, edges)
    return edge
