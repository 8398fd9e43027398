"""Following a message's lineage: back along its `origin`, forward to its descendants.

Backwards is cheap: the origin names every ancestor. Forwards uses two facts instead of
an index. A child is written into the outbox of the process that consumed its parent,
and never before the parent existed, so only that outbox's files stamped from the
parent's time on are read. And an agent writes its reply before it acknowledges
(SPEC 4), so for an agent the search also stops at the moment the parent reached
`.processed/` or `.failed/`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loom.cluster import share as shares
from loom.errors import ConfigError, LoomError, UsageError
from loom.ops.trace.copies import Copy, Process, ts_of
from loom.ops.trace.places import Places
from loom.ops.trace.status import Outcome, outcome
from loom.routing.ledger import delivery_log
from loom.routing.table import load_routes
from loom.store.files import load_json
from loom.store.message import FILENAME_RE, Message, from_dict

# Clocks may step back a little; a child is looked for from this long before its parent.
CLOCK_SLACK_MS = 1000
# How late after the parent's acknowledgement an agent's reply may be stamped.
ACK_SLACK_MS = 2000
# Operators that release messages later, on a timer: no upper bound for their pipes.
_TIMED = ("window", "buffer", "throttle")


@dataclass
class Node:
    """One message of the lineage (a filename), wherever its copies are."""

    file: str
    depth: int
    parent: str | None
    message: dict[str, Any] | None = None
    copies: list[Copy] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    note: str | None = None  # missing, unreadable, cycle, not a filename
    target: bool = False
    children: list[str] = field(default_factory=list)

    @property
    def ts(self) -> int | None:
        value = self.message.get("ts") if self.message else None
        return value if isinstance(value, int) else ts_of(self.file)

    @property
    def sender(self) -> str | None:
        value = self.message.get("from") if self.message else None
        if isinstance(value, str):
            return value
        producers = [c.process.name for c in self.copies if c.folder == "outbox" and c.process]
        return producers[0] if producers else None


@dataclass
class Lineage:
    """The nodes in tree order (depth first), the target's filename, and what was skipped."""

    target: str
    nodes: list[Node]
    unreadable: list[str] = field(default_factory=list)
    damaged_archives: list[str] = field(default_factory=list)


class Tracer:
    """Builds the Lineage of one message over a Places view of the home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.places = Places(home)
        self.unreadable: set[str] = set()
        self.remote = _remote_legs(home)

    # -- finding the target --------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """The filename `ref` (a filename, a path, or a bare id) stands for."""
        name = ref.rsplit("/", 1)[-1]
        if FILENAME_RE.fullmatch(name):
            if self.places.live_copies(name) or self.places.archived_copies(name):
                return name
        elif "/" not in ref and name.isalnum() and name.isascii():
            found = self.places.with_id(name)
            if found:
                return found[0]
        else:
            raise _usage(ref)
        looked = f"every inbox and outbox and {self.places.archive_files} archive file(s)"
        raise LoomError(f"no message '{ref}' under {self.home} (looked in {looked})")

    # -- building ------------------------------------------------------------------
    def lineage(self, filename: str) -> Lineage:
        target = self._node(filename, 0, None)
        target.target = True
        chain = self._ancestors(target)
        for depth, node in enumerate(chain):
            node.depth = depth
        target.depth = len(chain)
        target.parent = chain[-1].file if chain else None
        if chain:
            for parent, child in zip(chain, [*chain[1:], target], strict=True):
                parent.children = [child.file]
        seen = {n.file for n in chain} | {target.file}
        below = self._descendants(target, seen)
        ordered = chain + _depth_first(target, below)
        return Lineage(filename, ordered, sorted(self.unreadable), self.places.archive.damaged)

    def _node(self, filename: str, depth: int, parent: str | None) -> Node:
        node = Node(filename, depth, parent)
        node.copies = self.places.live_copies(filename) + self.places.archived_copies(filename)
        if not node.copies:
            node.note = (
                "missing: not found anywhere (garbage-collected without an archive, or deleted)"
            )
            return node
        msg, data, problem = self._read(node.copies)
        node.message = data
        if msg is None:
            node.note = f"unreadable: {problem}"
        node.outcomes = [outcome(self.home, c, node.file) for c in node.copies]
        node.outcomes += self._published(node)
        return node

    def _published(self, node: Node) -> list[Outcome]:
        """In a cluster: the hops this host's router sent through NATS (`nats → h2`)."""
        found = []
        for sent in node.outcomes:
            source = sent.process
            if sent.state != "sent" or source is None:
                continue
            for dest, hosts in self.remote.get(source, []):
                if node.file in delivery_log(self.home, source, dest):
                    found.append(Outcome(dest, None, f"nats → {hosts}", sent.path))
        return found

    def _read(self, copies: list[Copy]) -> tuple[Message | None, dict[str, Any] | None, str]:
        """The first readable copy's message; its raw fields and the problem otherwise."""
        problem = "no readable copy"
        fallback: dict[str, Any] | None = None
        for copy in sorted(copies, key=lambda c: c.folder == "unreadable"):
            if copy.record is not None:
                data = copy.record.get("message")
            else:
                try:
                    data = load_json((self.home / copy.path).read_bytes())
                except (OSError, ValueError) as exc:
                    problem = f"{copy.path}: {exc}"
                    self.unreadable.add(copy.path)
                    continue
            if not isinstance(data, dict):
                problem = f"{copy.path}: not a JSON object"
                continue
            fallback = fallback or data
            try:
                return from_dict(data), data, ""
            except LoomError as exc:
                problem = f"{copy.path}: {exc}"
        return None, fallback, problem

    def _ancestors(self, target: Node) -> list[Node]:
        origin = target.message.get("origin") if target.message else None
        if not isinstance(origin, str) or not origin:
            return []
        chain: list[Node] = []
        seen: set[str] = {target.file}
        parent: str | None = None
        for segment in origin.split("/"):
            if segment in seen:
                # A cycle in the origin: the lineage cannot pass a message twice.
                marker = chain[-1] if chain else target
                marker.note = (marker.note + "; " if marker.note else "") + (
                    f"cycle: origin names {segment} again"
                )
                continue
            seen.add(segment)
            if FILENAME_RE.fullmatch(segment):
                node = self._node(segment, 0, parent)
            else:
                node = Node(segment, 0, parent, note="not a message filename")
            chain.append(node)
            parent = segment
        return chain

    def _descendants(self, target: Node, seen: set[str]) -> dict[str, list[Node]]:
        """Children per parent filename, breadth first from `target`."""
        below: dict[str, list[Node]] = {}
        queue = deque([target])
        while queue:
            parent = queue.popleft()
            for name in self._children_of(parent):
                if name in seen:
                    parent.note = (parent.note + "; " if parent.note else "") + (
                        f"cycle: its child {name} appears earlier in this lineage"
                    )
                    continue
                seen.add(name)
                child = self._node(name, parent.depth + 1, parent.file)
                below.setdefault(parent.file, []).append(child)
                parent.children.append(name)
                queue.append(child)
        return below

    def _children_of(self, parent: Node) -> list[str]:
        """Filenames whose origin ends with `parent`, in the outboxes of its consumers."""
        low = (parent.ts or 0) - CLOCK_SLACK_MS
        found: dict[str, None] = {}
        consumers = self._consumers(parent)
        if not consumers:
            return []  # nobody took it from an inbox: nothing can descend from it
        needle = parent.file.encode()
        for consumer, high in consumers:
            for name in self.places.outbox_between(consumer, low, high):
                if self._is_child(f"{consumer.kind}s/{consumer.name}/outbox/{name}", needle):
                    found[name] = None
        highs = [high for _, high in consumers]
        latest = None if None in highs else max(h for h in highs if h is not None)
        found.update(dict.fromkeys(self.places.archive.children(parent.file, low, latest)))
        return sorted(found)

    def _consumers(self, parent: Node) -> list[tuple[Process, int | None]]:
        """Each process that took `parent` from its inbox, with the latest time a child
        of it can be stamped (None: no bound)."""
        bounds: dict[str, tuple[Process, int | None]] = {}
        for copy in parent.copies:
            if copy.process is None or copy.folder in ("outbox", "unreadable"):
                continue
            high: int | None = None
            if copy.folder in ("processed", "failed") and copy.arrived_ms is not None:
                if not self._timed(copy.process):
                    high = copy.arrived_ms + ACK_SLACK_MS
            known = bounds.get(copy.process.name)
            if known is not None and (known[1] is None or high is None):
                high = None
            elif known is not None and known[1] is not None and high is not None:
                high = max(known[1], high)
            bounds[copy.process.name] = (copy.process, high)
        return list(bounds.values())

    def _timed(self, proc: Process) -> bool:
        if proc.kind != "pipe":
            return False
        try:
            config = (proc.path / "config.json").read_text("utf-8")
        except OSError:
            return True
        return any(f'"{kind}"' in config for kind in _TIMED)

    def _is_child(self, rel: str, parent: bytes) -> bool:
        """Whether the message file `rel` has `parent` as the last segment of its origin."""
        try:
            with open(f"{self.home}/{rel}", "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return False  # moved on meanwhile; its new place is found by name
        except OSError:
            self.unreadable.add(rel)
            return False
        if parent not in raw:
            return False  # the cheap test that spares parsing almost every file
        try:
            msg = from_dict(load_json(raw))
        except (ValueError, LoomError):
            self.unreadable.add(rel)
            return False
        return _parent_of(msg) == parent.decode()


def _remote_legs(home: Path) -> dict[str, list[tuple[str, str]]]:
    """Source -> (destination, its hosts) for each edge this host publishes to NATS."""
    share = shares.read(home)
    if share is None:
        return {}
    try:
        edges = load_routes(home)
    except (ConfigError, OSError):
        return {}
    legs: dict[str, list[tuple[str, str]]] = {}
    for edge in edges:
        if edge.dest in share.remote:
            hosts = ", ".join(share.remote[edge.dest])
            legs.setdefault(edge.instance or edge.source, []).append((edge.dest, hosts))
    return legs


def _parent_of(msg: Message) -> str | None:
    return msg.origin.rsplit("/", 1)[-1] if msg.origin else None


def _depth_first(root: Node, below: dict[str, list[Node]]) -> list[Node]:
    ordered: list[Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        ordered.append(node)
        stack.extend(reversed(below.get(node.file, [])))
    return ordered


def _usage(ref: str) -> LoomError:
    return UsageError(
        f"'{ref}' is neither a message filename ({{ts}}-{{id}}.msg) nor an id (letters and digits)"
    )
