"""Delivery along the routing table: outbox → inbox copies, once per inbox (SPEC 7).

The supervisor calls `reload` when it rescans and `pump` on every wake-up. A pump lists
each changed outbox once, works out which files are new for which leg, and copies
them (unchanged, same filename, temp file + rename) into the next inbox. Durable state
lives in `ledger`: a delivery log per (outbox, inbox) pair and each leg's start time;
everything else is a cache rebuilt from the folders after a restart.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loom.errors import ConfigError, InvalidName, LoomError, is_disk_full
from loom.names import validate_name
from loom.routing.condition import Condition, ExpressionError
from loom.routing.edge import Edge, Leg, legs_of, table_legs
from loom.routing.endpoints import is_known, locate
from loom.routing.ledger import (
    DeliveryLog,
    Start,
    delivery_counters,
    delivery_log,
    reconcile_since,
    router_dir,
    stats_path,
)
from loom.routing.remote import Remote
from loom.routing.table import load_routes, routes_lock
from loom.store import atomic
from loom.store.home import ProcessDir, now_iso
from loom.store.logs import Log
from loom.store.message import Message, parse, read_file
from loom.store.queue import (
    HALF_WRITTEN_GRACE_S,
    IN_PROGRESS,
    count_messages,
    deliver_copy,
    holds,
    is_message_name,
)

# An outbox whose mtime is unchanged is not listed again, but only once the listing was
# taken this long after that mtime: directory times come from a coarse clock, so a file
# renamed in during the same tick as an earlier listing leaves the mtime as it was.
SETTLE_NS = 1_000_000_000

_DONE, _RETRY, _HELD = "done", "retry", "held"


@dataclass
class _LegState:
    """What the router knows about one leg between pumps (rebuilt after a restart)."""

    leg: Leg
    start: Start
    condition: Condition | None
    edge: str  # the edge it carries, for logs
    waiting: set[str] = field(default_factory=set)
    initialized: bool = False
    blocked: Path | None = None  # the full inbox it waits on (back-pressure)
    lagging: bool = False  # held by the lag of a remote destination (back-pressure)
    errors: int = 0
    last_error: str | None = None
    reported: set[tuple[str, str]] = field(default_factory=set)


class _Outbox:
    """The last listing of one outbox; listed again only when the folder changed."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.names: set[str] = set()  # the .msg files
        self._entries: set[str] = set()  # everything listed, temp files included
        self._mtime_ns = -1
        self._settled = False

    def refresh(self, path: Path) -> tuple[set[str], set[str]] | None:
        """(new names, vanished names) since the last call, or None when nothing changed."""
        if path != self.path:
            self.path, self.names, self._entries = path, set(), set()
            self._mtime_ns, self._settled = -1, False
        try:
            mtime = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        if mtime == self._mtime_ns and self._settled:
            return None
        try:
            entries = set(os.listdir(path))
        except FileNotFoundError:
            entries = set()
        self._settled = time.time_ns() - mtime > SETTLE_NS
        # Set differences first: only the few changed names need a closer look.
        new = {n for n in entries - self._entries if is_message_name(n)}
        gone = self.names - entries
        self.names.difference_update(gone)
        self.names.update(new)
        self._entries, self._mtime_ns = entries, mtime
        return new, gone


class Router:
    """Copies every new outbox message along the routing table, exactly once per inbox.

    Problems go to `log` (the supervisor's) as well as to the router's own log,
    `$LOOM_HOME/router/logs/<date>.ndjson`, which also records every delivery.
    """

    def __init__(self, home: Path, log: Log | None = None, remote: Remote | None = None) -> None:
        self.home = home
        self.remote = remote  # cluster mode: destinations served on other hosts
        self.journal = Log(router_dir(home) / "logs", "router")
        self.log = log if log is not None else self.journal
        self.edges: list[Edge] = []
        self._legs: dict[str, _LegState] = {}
        self._by_source: dict[str, list[_LegState]] = {}
        self._outboxes: dict[str, _Outbox] = {}
        self._delivered: dict[tuple[str, str], DeliveryLog] = {}
        self._loaded = False
        self._rejected: str | None = None
        self._unreadable: dict[str, str] = {}  # source -> the problem last reported

    # -- the table -----------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read routes.json; True if the routes changed.

        An unusable file is logged (once per distinct problem) and the previous table
        stays in force, so a half-saved edit never stops the traffic.
        """
        try:
            with routes_lock(self.home):
                edges = load_routes(self.home)
                legs = table_legs(edges)
                starts = reconcile_since(self.home, (leg.key for leg in legs))
        except (ConfigError, OSError) as exc:
            problem = str(exc)
            if problem != self._rejected:
                self._report("routes rejected; keeping the previous routes", error=problem)
            self._rejected = problem
            return False
        self._rejected = None
        first = not self._loaded
        self._loaded = True
        unchanged = edges == self.edges and all(
            leg.key in self._legs and self._legs[leg.key].start == starts[leg.key] for leg in legs
        )
        if unchanged:
            return False
        self._apply(edges, legs, starts)
        if not first or edges:
            self.journal.info("routes loaded", routes=len(edges), legs=len(legs))
        return True

    def _apply(self, edges: list[Edge], legs: list[Leg], starts: dict[str, Start]) -> None:
        carried_by: dict[str, str] = {}
        for edge in edges:
            for leg in legs_of(edge):
                carried_by.setdefault(leg.key, edge.describe())
        states: dict[str, _LegState] = {}
        for leg in legs:
            condition = Condition(leg.when) if leg.when is not None else None
            state = self._legs.get(leg.key)
            if state is not None and state.start == starts[leg.key]:
                state.leg, state.condition, state.edge = leg, condition, carried_by[leg.key]
            else:
                state = _LegState(leg, starts[leg.key], condition, carried_by[leg.key])
            states[leg.key] = state
        by_source: dict[str, list[_LegState]] = {}
        for state in states.values():
            by_source.setdefault(state.leg.source, []).append(state)
        self.edges = edges
        self._legs = states
        self._by_source = by_source
        self._outboxes = {s: self._outboxes.get(s) or _Outbox() for s in by_source}

    def watched(self) -> list[Path]:
        """Folders whose changes should wake the router: every source outbox, and the
        `.in-progress/` of each inbox a held leg waits on (a claim there makes room)."""
        paths = {locate(self.home, source).outbox for source in self._by_source}
        paths.update(s.blocked / IN_PROGRESS for s in self._legs.values() if s.blocked)
        return sorted(p for p in paths if p.is_dir())

    # -- delivery ------------------------------------------------------------------
    def pump(self) -> int:
        """Deliver every new outbox message along every leg; return how many were written."""
        if not self._loaded:
            self.reload()
        if self.remote is not None:
            self.remote.tick()
        delivered = 0
        room: dict[Path, int] = {}  # pending count per destination inbox, this pump
        for source, states in self._by_source.items():
            outbox = locate(self.home, source).outbox
            listing = self._outboxes[source]
            try:
                change = listing.refresh(outbox)
                for state in states:
                    if not state.initialized:
                        self._classify(state, listing.names, outbox)
                        state.initialized = True
                    elif change is not None:
                        new, gone = change
                        self._classify(state, new, outbox)
                        state.waiting -= gone
            except OSError as exc:
                # E.g. a permission problem: report it (once while it lasts, as the pump
                # runs on every wake-up) and keep the other routes flowing.
                problem = f"{outbox}: {exc}"
                if self._unreadable.get(source) != problem:
                    self._unreadable[source] = problem
                    self._report("cannot read outbox", error=problem)
                continue
            self._unreadable.pop(source, None)
            for state in states:
                delivered += self._drain(state, outbox, room)
        return delivered

    def _log_of(self, source: str, dest: str) -> DeliveryLog:
        found = self._delivered.get((source, dest))
        if found is None:
            found = self._delivered[(source, dest)] = delivery_log(self.home, source, dest)
        return found

    def _classify(self, state: _LegState, names: set[str], outbox: Path) -> None:
        # Waiting = appeared since the leg started and not yet delivered along it.
        if not names:
            return
        leg = state.leg
        done = self._log_of(leg.source, leg.dest) if leg.dest is not None else None
        unknown = names if done is None else {n for n in names if n not in done}
        if not unknown:
            return
        fd = os.open(outbox, os.O_RDONLY | os.O_DIRECTORY)
        try:
            state.waiting.update(n for n in unknown if not state.start.precedes(n, fd))
        finally:
            os.close(fd)

    def _drain(self, state: _LegState, outbox: Path, room: dict[Path, int]) -> int:
        state.lagging = False
        if not state.waiting:
            state.blocked = None
            state.reported.clear()
            return 0
        leg = state.leg
        if leg.dest is not None and not self._is_remote(leg.dest):
            # A held leg stays held without sorting its backlog, while the inbox is full.
            inbox = locate(self.home, leg.dest).inbox
            if self._full(inbox, leg.limit, room):
                state.blocked = inbox
                return 0
        state.blocked = None
        delivered = 0
        for name in sorted(state.waiting):
            try:
                outcome, count = self._route_one(state, name, outbox, room)
            except OSError as exc:
                if is_disk_full(exc):
                    raise  # not this message's problem: the supervisor waits for space
                self._problem(state, name, "delivery failed; will retry", str(exc))
                break
            except Exception as exc:
                # One hostile file must not stop routing for the whole home: it is
                # reported, counted in the edge's errors, and left where it is.
                detail = f"{type(exc).__name__}: {exc}"[:500]
                self._problem(state, name, "message not routed", detail)
                state.waiting.discard(name)
                continue
            delivered += count
            if outcome == _HELD:
                break
            if outcome == _DONE:
                state.waiting.discard(name)
        return delivered

    def _route_one(
        self, state: _LegState, name: str, outbox: Path, room: dict[Path, int]
    ) -> tuple[str, int]:
        path = outbox / name
        try:
            # The queue's reader: a FIFO, a link or a huge file is refused, not followed.
            raw = read_file(path)
            msg = parse(raw)
        except FileNotFoundError:
            return _DONE, 0
        except LoomError as exc:
            if _young(path):
                return _RETRY, 0  # a writer that does not rename into place may still be at it
            self._problem(state, name, "unreadable message not routed", str(exc))
            return _DONE, 0
        if state.condition is not None:
            try:
                if not state.condition.matches(msg):
                    return _DONE, 0
            except ExpressionError as exc:
                self._problem(state, name, "'when' failed; message not routed", str(exc))
                return _DONE, 0
        leg = state.leg
        targets = [leg.dest] if leg.dest is not None else self._destinations(state, name, msg)
        count = 0
        for dest in targets:
            done = self._log_of(leg.source, dest)
            if name in done:
                continue
            if self._is_remote(dest):
                if not self._publish(state, dest, name, raw, done, leg.limit):
                    state.lagging = True
                    return _HELD, count
                count += 1
                continue
            target = locate(self.home, dest)
            if self._full(target.inbox, leg.limit, room):
                state.blocked = target.inbox
                return _HELD, count
            if self._deliver(state, dest, target, name, raw, done):
                count += 1
                room[target.inbox] += 1
        return _DONE, count

    def _is_remote(self, dest: str) -> bool:
        return self.remote is not None and dest in self.remote.destinations()

    def _publish(
        self, state: _LegState, dest: str, name: str, raw: bytes, done: DeliveryLog, limit: int
    ) -> bool:
        """Publish one file to a remote destination; False while its lag is at the limit.

        The ledger line is written only after JetStream confirmed the message, so a file
        that could not be published (NATS down) is published again on a later pump; a
        resend after a crash is dropped by JetStream (Nats-Msg-Id = filename).
        """
        assert self.remote is not None
        if self.remote.pending(dest) >= limit:
            return False
        self.remote.publish(dest, name, raw)
        done.record(name)
        hosts = ", ".join(self.remote.destinations()[dest])
        self.journal.info(
            "routed", msg=name, edge=state.edge, leg=state.leg.key, to=dest, via=f"nats → {hosts}"
        )
        return True

    def _destinations(self, state: _LegState, name: str, msg: Message) -> list[str]:
        """The valid, existing names in a routing node's message `to`; problems reported."""
        if not msg.to:
            self._problem(
                state, name, "message has no 'to'", "a routing node's route or fanout must set it"
            )
            return []
        found = []
        for dest in dict.fromkeys(msg.to):
            try:
                validate_name(dest, "destination")
            except InvalidName as exc:
                self._problem(state, name, "bad destination in 'to'", str(exc))
                continue
            if not is_known(self.home, dest):
                self._problem(state, name, "unknown destination in 'to'", f"no agent '{dest}'")
                continue
            found.append(dest)
        return found

    def _full(self, inbox: Path, limit: int, room: dict[Path, int]) -> bool:
        count = room.get(inbox)
        if count is None:
            count = room[inbox] = count_messages(inbox)
        return count >= limit

    def _deliver(
        self,
        state: _LegState,
        dest: str,
        target: ProcessDir,
        name: str,
        raw: bytes,
        done: DeliveryLog,
    ) -> bool:
        """Copy one file into `dest`'s inbox unless it already went there; True if written."""
        inbox = target.inbox
        if not inbox.is_dir():
            target.create()
        if holds(inbox, name):
            # An earlier router wrote it and died before its log line.
            done.record(name)
            self.journal.info("already delivered", msg=name, edge=state.edge, to=dest)
            return False
        deliver_copy(inbox, name, raw)
        done.record(name)
        self.journal.info("routed", msg=name, edge=state.edge, leg=state.leg.key, to=dest)
        return True

    # -- reporting -----------------------------------------------------------------
    def _report(self, event: str, **fields: Any) -> None:
        self.journal.error(event, **fields)
        if self.log is not self.journal:
            self.log.error(event, **fields)

    def _problem(self, state: _LegState, name: str, event: str, detail: str) -> None:
        # A held message is looked at again on every pump; say each problem once.
        if (name, event) in state.reported:
            return
        state.reported.add((name, event))
        state.errors += 1
        state.last_error = f"{name}: {event}: {detail}"
        self._report(event, msg=name, edge=state.edge, error=detail)

    def stats(self) -> list[dict[str, Any]]:
        """Per edge: from, to, pipe, when, limit, forwarded, last_activity, held, pending,
        errors, last_error. `forwarded` counts what reached the edge's destination inbox
        (for a routing node: the node's inbox) and survives restarts."""
        rows = []
        for edge in self.edges:
            legs = legs_of(edge)
            states = [self._legs[leg.key] for leg in legs if leg.key in self._legs]
            logs = [self._log_of(leg.source, leg.dest) for leg in legs if leg.dest is not None]
            forwarded, last = delivery_counters(logs)
            errors = [s for s in states if s.errors]
            rows.append(
                {
                    "from": edge.source,
                    "to": edge.dest,
                    "pipe": edge.pipe,
                    "when": edge.when,
                    "limit": edge.limit,
                    "forwarded": forwarded,
                    "last_activity": last,
                    "held": any(s.blocked is not None or s.lagging for s in states),
                    "pending": sum(len(s.waiting) for s in states),
                    "errors": sum(s.errors for s in states),
                    "last_error": errors[-1].last_error if errors else None,
                }
            )
        return rows

    def write_stats(self) -> None:
        """Write `stats()` atomically to `$LOOM_HOME/router/stats.json` (read by `loom routes`)."""
        atomic.make_private_dir(router_dir(self.home))
        document = {"ts": now_iso(), "routes": self.stats()}
        text = json.dumps(document, ensure_ascii=False, indent=1) + "\n"
        atomic.write_text(stats_path(self.home), text)


def _young(path: Path) -> bool:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    # Only a regular file can still be on its way to becoming a message.
    return stat.S_ISREG(info.st_mode) and time.time() - info.st_mtime < HALF_WRITTEN_GRACE_S
