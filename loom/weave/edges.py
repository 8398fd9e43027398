"""Turning a weave into routing-table edges (SPEC 7, 9)."""

from __future__ import annotations

from loom.routing.edge import Edge
from loom.weave.model import Weave


def weave_edges(weave: Weave) -> list[Edge]:
    """Every edge the weave declares, in file order.

    An agent's `from: {agent: a, pipe: p, when: w}` is the edge a → (p) → agent; a
    node-form pipe's `from:` feeds its own instance (a routing node), and its `to:`
    sends that instance's output on.
    """
    edges: list[Edge] = []
    for agent in weave.agents.values():
        for entry in agent.inbound:
            edges.append(
                Edge(
                    source=entry.source,
                    dest=agent.name,
                    pipe=entry.pipe,
                    when=entry.when,
                    limit=entry.limit,
                )
            )
    for name, pipe in weave.node_pipes.items():
        for source in pipe.inputs:
            edges.append(Edge(source=source, pipe=name))
        for dest in pipe.to:
            edges.append(Edge(source=name, dest=dest))
    return edges
