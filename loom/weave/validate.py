"""Cross-checks of a parsed weave: references, expressions, cycles (SPEC 9)."""

from __future__ import annotations

from collections.abc import Iterator

from loom.pipeline import PipeDef
from loom.pipeline.errors import ArgError
from loom.pipeline.expressions import compile_expression
from loom.routing.graph import find_cycle
from loom.weave import placement
from loom.weave.model import Problem, Weave


def destinations(pipe: PipeDef) -> Iterator[str]:
    """Every agent a pipe's `route`/`fanout` operators or its `to:` may send to."""
    yield from pipe.to
    for spec in pipe.operators:
        if spec.kind == "fanout":
            yield from _names(spec.args.get("to"))
        elif spec.kind == "route":
            for case in spec.args.get("cases") or []:
                if isinstance(case, dict):
                    yield from _names(case.get("to"))


def placed_destinations(
    pipe: PipeDef, fallback: tuple[int, int]
) -> Iterator[tuple[str, tuple[int, int]]]:
    """`destinations`, each with the place in the file that names it (or `fallback`)."""
    to_at = pipe.marks.get("to", fallback)
    for name in pipe.to:
        yield name, to_at
    for spec in pipe.operators:
        if spec.kind == "fanout":
            mark = spec.marks.get("to")
            at = mark.value if mark is not None else (spec.line or fallback[0], spec.column or 1)
            for name in _names(spec.args.get("to")):
                yield name, at
        elif spec.kind == "route":
            for case in spec.args.get("cases") or []:
                if isinstance(case, dict):
                    line, column = getattr(case, "line", None), getattr(case, "column", None)
                    case_at = (line, column or 1) if line else fallback
                    at = getattr(case, "value_marks", {}).get("to") or case_at
                    for name in _names(case.get("to")):
                        yield name, at


def _names(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def hops(weave: Weave) -> list[tuple[str, str, tuple[int, int]]]:
    """The graph of the weave as (from, to, where) hops; a piped edge a→(p)→b is a → b."""
    found: list[tuple[str, str, tuple[int, int]]] = []
    for agent in weave.agents.values():
        for entry in agent.inbound:
            found.append((entry.source, agent.name, (entry.line, entry.column)))
    for name, pipe in weave.node_pipes.items():
        where = (weave.lines.get(name, 1), 1)
        for source in pipe.inputs:
            found.append((source, name, pipe.marks.get("from", where)))
        for dest, at in placed_destinations(pipe, where):
            found.append((name, dest, at))
    return found


def validate(weave: Weave) -> list[Problem]:
    """Every reference, expression and route problem of a weave that parsed."""
    problems: list[Problem] = []
    agents, pipes = weave.agents, weave.pipes
    nodes = weave.node_pipes
    broken = weave.broken
    for agent in agents.values():
        for entry in agent.inbound:
            where = (entry.line, entry.column)
            if entry.source == agent.name and entry.pipe is None:
                problems.append(Problem(*where, f"'{agent.name}' cannot take messages from itself"))
            elif entry.source not in agents and entry.source not in nodes.keys() | broken:
                hint = " (it is a pipe: use `pipe:`)" if entry.source in pipes else ""
                problems.append(Problem(*where, f"unknown agent '{entry.source}' in from{hint}"))
            if entry.pipe is not None:
                if entry.pipe in broken:
                    pass
                elif entry.pipe not in pipes:
                    problems.append(Problem(*where, f"unknown pipe '{entry.pipe}' in from"))
                elif entry.pipe in nodes:
                    problems.append(
                        Problem(
                            *where,
                            f"pipe '{entry.pipe}' has its own `from:`; take its output with "
                            f"`agent: {entry.pipe}` instead",
                        )
                    )
            if entry.when is not None:
                try:
                    compile_expression(entry.when, key="when")
                except ArgError as exc:
                    at = entry.when_at or where
                    if exc.offset is not None and entry.when_text is not None:
                        at = (entry.when_text[0], entry.when_text[1] + exc.offset)
                    problems.append(Problem(*at, f"bad `when`: {exc}"))
    for name, pipe in nodes.items():
        line = weave.lines.get(name, 0)
        for source in pipe.inputs:
            if source not in agents and source not in nodes.keys() | broken:
                at = pipe.marks.get("from", (line, 1))
                problems.append(Problem(*at, f"pipe '{name}': unknown agent '{source}' in from"))
        for dest, at in placed_destinations(pipe, (line, 1)):
            if dest not in agents and dest not in nodes.keys() | broken:
                problems.append(Problem(*at, f"pipe '{name}' sends to unknown agent '{dest}'"))
    edges = hops(weave)
    cycle = find_cycle((a, b) for a, b, _ in edges)
    if cycle is not None:
        at = next((w for a, b, w in edges if (a, b) == (cycle[-2], cycle[-1])), (1, 1))
        problems.append(Problem(*at, "circular route detected: " + " → ".join(cycle)))
    problems.extend(placement.check(weave))
    return problems
