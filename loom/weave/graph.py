"""`loom graph`: a weave as text, Graphviz DOT or Mermaid (SPEC 9)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from loom.pipeline import PipeDef
from loom.routing.edge import Edge
from loom.weave.edges import weave_edges
from loom.weave.model import Weave
from loom.weave.validate import destinations
from loom.wording import count

FORMATS = ("text", "dot", "mermaid")


def _arrows(weave: Weave) -> list[tuple[str, str, str]]:
    """(from, to, label) for every hop, route destinations of node pipes included."""
    found: list[tuple[str, str, str]] = []
    for edge in weave_edges(weave):
        if edge.dest is None:
            continue
        found.append((edge.source, edge.dest, _label(edge)))
    for name, pipe in weave.node_pipes.items():
        for source in pipe.inputs:
            found.append((source, name, ""))
        conditions = _route_conditions(pipe)
        for dest in dict.fromkeys(destinations(pipe)):
            if dest not in pipe.to:
                found.append((name, dest, conditions.get(dest, "route")))
    return found


def _route_conditions(pipe: PipeDef) -> dict[str, str]:
    """For each destination of a pipe's `route` and `fanout` operators, the conditions
    that send a message there: `when priority == 'urgent' | otherwise`."""
    found: dict[str, list[str]] = {}
    for spec in pipe.operators:
        if spec.kind == "fanout":
            for dest in _names(spec.args.get("to")):
                found.setdefault(dest, []).append("fanout")
        elif spec.kind == "route":
            for case in spec.args.get("cases") or []:
                if not isinstance(case, dict):
                    continue
                when = case.get("when")
                label = f"when {when}" if isinstance(when, str) else "otherwise"
                for dest in _names(case.get("to")):
                    found.setdefault(dest, []).append(label)
    return {dest: " | ".join(dict.fromkeys(labels)) for dest, labels in found.items()}


def _names(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _label(edge: Edge) -> str:
    parts = []
    if edge.pipe:
        parts.append(edge.pipe)
    if edge.when:
        parts.append(f"when {edge.when}")
    return ", ".join(parts)


def render(weave: Weave, fmt: str, counts: Mapping[str, str] | None = None) -> str:
    """The weave in `fmt` (text, dot or mermaid); `counts` adds live figures per node."""
    counts = counts or {}
    nodes = [*weave.agents, *weave.node_pipes]
    arrows = _arrows(weave)
    if fmt == "dot":
        return _dot(weave, nodes, arrows, counts)
    if fmt == "mermaid":
        return _mermaid(weave, nodes, arrows, counts)
    return _text(weave, nodes, arrows, counts)


def _text(
    weave: Weave, nodes: list[str], arrows: list[tuple[str, str, str]], counts: Mapping[str, str]
) -> str:
    agents, pipes = count(len(weave.agents), "agent"), count(len(weave.pipes), "pipe")
    lines = [f"weave {weave.path}: {agents}, {pipes}"]
    outgoing: dict[str, list[tuple[str, str]]] = {}
    for a, b, label in arrows:
        outgoing.setdefault(a, []).append((b, label))
    for node in nodes:
        kind = "pipe" if node in weave.pipes else weave.agents[node].model
        extra = f"  [{counts[node]}]" if node in counts else ""
        lines.append(f"{node} ({kind}){extra}")
        targets = outgoing.get(node, [])
        for i, (dest, label) in enumerate(targets):
            branch = "└─" if i == len(targets) - 1 else "├─"
            via = f"─[{label}]─" if label else "─"
            lines.append(f"  {branch}{via}▶ {dest}")
    return "\n".join(lines)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _dot(
    weave: Weave, nodes: list[str], arrows: list[tuple[str, str, str]], counts: Mapping[str, str]
) -> str:
    out = [
        "digraph weave {",
        "  rankdir=LR;",
        f"  label={_quote(str(weave.path))};",
        '  graph [fontname="sans-serif"];',
        '  node [fontname="sans-serif"];',
        '  edge [fontname="sans-serif"];',
    ]
    for node in nodes:
        shape = "box" if node in weave.pipes else "ellipse"
        label = node + (f"\\n{counts[node]}" if node in counts else "")
        out.append(f"  {_quote(node)} [shape={shape}, label={_quote(label)}];")
    for a, b, label in arrows:
        attrs = f" [label={_quote(label)}]" if label else ""
        out.append(f"  {_quote(a)} -> {_quote(b)}{attrs};")
    out.append("}")
    return "\n".join(out)


def _mermaid_id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in name)


def _mermaid(
    weave: Weave, nodes: list[str], arrows: list[tuple[str, str, str]], counts: Mapping[str, str]
) -> str:
    out = ["flowchart LR", f"  %% weave {weave.path}"]
    for node in nodes:
        text = node + (f"<br/>{counts[node]}" if node in counts else "")
        shape = f'[["{text}"]]' if node in weave.pipes else f'("{text}")'
        out.append(f"  {_mermaid_id(node)}{shape}")
    for a, b, label in arrows:
        safe = label.replace('"', "'").replace("|", "/")
        link = f' -->|"{safe}"| ' if label else " --> "
        out.append(f"  {_mermaid_id(a)}{link}{_mermaid_id(b)}")
    return "\n".join(out)
