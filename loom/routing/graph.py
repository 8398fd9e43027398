"""Cycle detection over the routing graph (SPEC 7: cycles are rejected before writing)."""

from __future__ import annotations

from collections.abc import Iterable

from loom.errors import ConfigError


def find_cycle(hops: Iterable[tuple[str, str]]) -> list[str] | None:
    """A cycle in the directed graph `hops` as a path that ends where it starts, or None.

    Nodes are visited in the order they first appear, so the same table always names
    the same cycle.
    """
    graph: dict[str, list[str]] = {}
    for a, b in hops:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        # Iterative depth-first search: `path` is the current chain, `on_path` its set.
        path = [start]
        on_path = {start}
        cursors = [iter(graph[start])]
        while cursors:
            nxt = next(cursors[-1], None)
            if nxt is None:
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                cursors.pop()
                continue
            if nxt in on_path:
                return path[path.index(nxt) :] + [nxt]
            if nxt in done:
                continue
            path.append(nxt)
            on_path.add(nxt)
            cursors.append(iter(graph[nxt]))
    return None


def check_acyclic(hops: Iterable[tuple[str, str]]) -> None:
    """Raise ConfigError naming the cycle hop by hop, e.g. `circular route detected: a → b → a`."""
    cycle = find_cycle(hops)
    if cycle is not None:
        raise ConfigError("circular route detected: " + " → ".join(cycle))
