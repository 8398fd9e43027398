"""The parsed, validated form of a `loom.yml`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loom.pipeline import PipeDef
from loom.routing.edge import DEFAULT_LIMIT


@dataclass(frozen=True)
class Problem:
    """One validation error, printed as `FILE:LINE:COL: message`."""

    line: int
    column: int
    message: str

    def render(self, source: str) -> str:
        return f"{source}:{self.line}:{self.column}: {self.message}"


@dataclass(frozen=True)
class Inbound:
    """One `from:` entry of an agent: messages of `source`, optionally through `pipe`, if `when`."""

    source: str
    pipe: str | None = None
    when: str | None = None
    line: int = 0
    column: int = 0
    # Where the `when` value is, and where its text starts when an offset into the
    # expression is also a column of the file (no `${VAR}` in it, no escapes).
    when_at: tuple[int, int] | None = None
    when_text: tuple[int, int] | None = None
    # Back-pressure: the edge holds while the next inbox (or JetStream lag) is this long.
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class AgentDef:
    """One agent of the weave, with its settings after `${VAR}` expansion."""

    name: str
    model: str
    system: str | None = None
    restart: str = "always"
    env: dict[str, str] = field(default_factory=dict)
    inbound: tuple[Inbound, ...] = ()
    memory: dict[str, str] = field(default_factory=dict)
    tools: tuple[str, ...] | None = None
    concurrency: int = 1
    rate: str | None = None
    # The JSON Schema replies must be valid against (checked when read); None: free text.
    schema: dict[str, Any] | None = None
    # Model options (`options:`), checked against the provider when read.
    options: dict[str, Any] = field(default_factory=dict)
    # What the model reads of a batch: `bodies` (labelled) or `envelopes`.
    input: str = "bodies"
    hosts: tuple[str, ...] = ()  # cluster mode: the hosts it runs on (docs/cluster.md)
    line: int = 0

    def config_hash(self) -> str:
        """Hash of the agent's settings after expansion (SPEC 9 `config.hash`).

        Where the agent's inputs come from is the router's business, so `from:` changes
        re-route without restarting the agent.
        """
        settings: dict[str, object] = {
            "model": self.model,
            "system": self.system,
            "restart": self.restart,
            "env": self.env,
            "memory": self.memory,
            "tools": self.tools,
        }
        # Only when set, so that agents without them keep the hash they had before.
        if self.concurrency != 1:
            settings["concurrency"] = self.concurrency
        if self.rate is not None:
            settings["rate"] = self.rate
        if self.schema is not None:
            settings["schema"] = self.schema
        if self.options:
            settings["options"] = self.options
        if self.input != "bodies":
            settings["input"] = self.input
        canonical = json.dumps(settings, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Cluster:
    """`cluster:`: the NATS servers joining the hosts, and how to authenticate to them."""

    servers: tuple[str, ...]
    creds: str | None = None  # a NATS credentials file (user JWT and seed)
    ca: str | None = None  # a CA file for tls:// servers signed by a private CA
    replicas: int = 1  # JetStream replicas of loom's streams and buckets
    line: int = 0


@dataclass(frozen=True)
class Weave:
    """A whole `loom.yml`: its pipes (list and node form), agents and settings."""

    path: Path
    pipes: dict[str, PipeDef]
    agents: dict[str, AgentDef]
    home: str | None = None
    # The project (SPEC 9): `name:`, or the folder's name; it owns the processes `up` starts.
    project: str = ""
    retention: dict[str, str] = field(default_factory=dict)
    cluster: Cluster | None = None
    lines: dict[str, int] = field(default_factory=dict)  # name -> line of its definition
    # Names whose definition had problems: references to them are not reported again.
    broken: frozenset[str] = frozenset()

    @property
    def node_pipes(self) -> dict[str, PipeDef]:
        """Pipes with their own inputs (`from:`): one instance each, a routing node."""
        return {n: p for n, p in self.pipes.items() if p.inputs}

    @property
    def source(self) -> str:
        return self.path.name
