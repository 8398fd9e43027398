"""`$LOOM_HOME/cluster.json`: what this host runs of a clustered weave, and where to.

`loom up --host H` writes it; the supervisor reads it to know which destinations its
router publishes to JetStream, and the bridges read it to know which streams to pull.
Without the file a home is not in a cluster and nothing of NATS is loaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loom.store import atomic
from loom.store.files import load_json

SHARE_FILE = "cluster.json"
# The bridge into destination D is the process folder pipes/bridge~nats→D, named like
# a pipe instance from "nats" to D: ps, stop, logs and the restart policy treat it
# like any other child.
BRIDGE_PREFIX = "bridge~nats→"


@dataclass(frozen=True)
class Share:
    """This host's part: its name, the servers, the remote destinations (name → hosts)
    its router publishes to, the local destinations its bridges fill, what it runs."""

    host: str
    project: str
    servers: list[str]
    creds: str | None = None
    ca: str | None = None
    replicas: int = 1
    remote: dict[str, list[str]] = field(default_factory=dict)
    bridges: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def stream(self, dest: str) -> str:
        """The JetStream stream that carries messages into `dest` (one per destination,
        so that Nats-Msg-Id = filename deduplicates per destination)."""
        return f"LOOM-{self.project}-{dest}"

    def subject(self, dest: str) -> str:
        return f"loom.{self.project}.{dest}"

    @property
    def claims_bucket(self) -> str:
        return f"loom-{self.project}-claims"

    @property
    def hosts_bucket(self) -> str:
        return f"loom-{self.project}-hosts"


def share_path(home: Path) -> Path:
    return home / SHARE_FILE


def write(home: Path, share: Share) -> None:
    atomic.write_text(share_path(home), json.dumps(asdict(share), indent=1) + "\n")


def remove(home: Path) -> None:
    share_path(home).unlink(missing_ok=True)


def read(home: Path) -> Share | None:
    """This home's share, or None when it is not in a cluster (or the file is unusable)."""
    try:
        data = load_json(share_path(home).read_bytes())
        return Share(**data) if isinstance(data, dict) else None
    except (FileNotFoundError, ValueError, TypeError):
        return None


def bridge_name(dest: str) -> str:
    return BRIDGE_PREFIX + dest


def bridged(name: str) -> str | None:
    """The destination a bridge process name serves, or None for any other process."""
    return name[len(BRIDGE_PREFIX) :] if name.startswith(BRIDGE_PREFIX) else None
