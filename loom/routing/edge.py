"""One edge of the routing table, and the delivery legs it stands for (SPEC 7)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from loom.errors import ConfigError
from loom.names import instance_name

DEFAULT_LIMIT = 10_000
KEYS = ("from", "pipe", "to", "when", "limit")


@dataclass(frozen=True)
class Edge:
    """`source` → `dest`, optionally through `pipe`; no `dest` makes the pipe a routing node.

    `when` is a JMESPath condition on the source's messages; `limit` is the number of
    pending messages in the next inbox at which delivery pauses (back-pressure).
    """

    source: str
    dest: str | None = None
    pipe: str | None = None
    when: str | None = None
    limit: int = DEFAULT_LIMIT

    @property
    def identity(self) -> tuple[str, str | None, str | None]:
        """What makes two edges the same route: `when` and `limit` are settings of it."""
        return (self.source, self.pipe, self.dest)

    @property
    def instance(self) -> str | None:
        """The pipe instance this edge runs through: `<pipe>~<from>→<to>`, or the node's name."""
        if self.pipe is None:
            return None
        if self.dest is None:
            return self.pipe
        return instance_name(self.pipe, self.source, self.dest)

    def hop(self) -> tuple[str, str]:
        """The edge as one graph hop for cycle detection; a piped a→(p)→b counts as a → b."""
        target = self.dest if self.dest is not None else self.pipe
        assert target is not None  # validate_edge guarantees a destination or a pipe
        return (self.source, target)

    def describe(self) -> str:
        """`a → b`, `a → (p) → b` or `a → (p)`, as shown in messages and logs."""
        parts = [self.source]
        if self.pipe is not None:
            parts.append(f"({self.pipe})")
        if self.dest is not None:
            parts.append(self.dest)
        return " → ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The routes.json entry, with the keys in the order SPEC 7 shows them."""
        data: dict[str, Any] = {"from": self.source}
        if self.pipe is not None:
            data["pipe"] = self.pipe
        if self.dest is not None:
            data["to"] = self.dest
        if self.when is not None:
            data["when"] = self.when
        if self.limit != DEFAULT_LIMIT:
            data["limit"] = self.limit
        return data


@dataclass(frozen=True)
class Leg:
    """One copy step of the router: from `source`'s outbox into `dest`'s inbox.

    A leg with no `dest` is a routing node's output: each message goes to the names in
    its own `to`. Legs, not edges, are what the router tracks and logs durably.
    """

    source: str
    dest: str | None
    when: str | None = None
    limit: int = DEFAULT_LIMIT

    @property
    def key(self) -> str:
        """A stable name for the leg, safe as a file name: `a→b`, `p~a→b→b`, `p→*`."""
        return f"{self.source}→{self.dest if self.dest is not None else '*'}"


def legs_of(edge: Edge) -> tuple[Leg, ...]:
    """The legs that carry `edge`: one for a direct edge, two through a pipe."""
    if edge.pipe is None:
        assert edge.dest is not None
        return (Leg(edge.source, edge.dest, edge.when, edge.limit),)
    instance = edge.instance
    assert instance is not None
    into = Leg(edge.source, instance, edge.when, edge.limit)
    return (into, Leg(instance, edge.dest, None, edge.limit))


def table_legs(edges: Iterable[Edge]) -> list[Leg]:
    """Every leg of the table once; raise ConfigError when two edges claim the same leg.

    Several routing-node edges into one pipe share its output leg, which then takes
    the smallest of their limits.
    """
    legs: dict[str, Leg] = {}
    owner: dict[str, Edge] = {}
    for edge in edges:
        for leg in legs_of(edge):
            seen = legs.get(leg.key)
            if seen is None:
                legs[leg.key] = leg
                owner[leg.key] = edge
            elif leg.dest is None:
                legs[leg.key] = Leg(leg.source, None, None, min(seen.limit, leg.limit))
            else:
                raise ConfigError(
                    f"routes {owner[leg.key].describe()} and {edge.describe()} both deliver "
                    f"{leg.source}'s messages into {leg.dest}; keep one of them"
                )
    return list(legs.values())


def edge_from_json(raw: Any) -> Edge:
    """Build an Edge from one decoded routes.json entry; raise ConfigError on a bad shape."""
    if not isinstance(raw, dict):
        raise ConfigError(f'expected an object like {{"from": ..., "to": ...}}, got {raw!r}')
    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (expected {', '.join(KEYS)})")
    for key in ("from", "pipe", "to", "when"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{key!r} must be a string, got {raw[key]!r}")
    if "from" not in raw:
        raise ConfigError("missing 'from'")
    limit = raw.get("limit", DEFAULT_LIMIT)
    if type(limit) is not int:
        raise ConfigError(f"'limit' must be a whole number, got {limit!r}")
    return Edge(raw["from"], raw.get("to"), raw.get("pipe"), raw.get("when"), limit)
