"""The pipe engine: runs a chain of operators over messages, in memory or with durable state.

Inside a pipe a message keeps the envelope it arrived with (id, from, ts, origin,
error; `to` is cleared) while operators change its body and set `to`, so the envelope
functions see the input's envelope at every step. What leaves the pipe are new
messages: new id, `from` = the instance, origin extended by the filename of the input
they descend from (SPEC 2), `to` as set by route/fanout.

The same step machinery serves `push` (foreground, everything in one call) and the
queued process (one operator at a time, with files between steps).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from loom.errors import LoomError, is_disk_full
from loom.pipeline.definition import build_operator
from loom.pipeline.errors import ExpressionError, OperatorError
from loom.pipeline.operators.base import PRIVATE_PREFIX, Context, Operator
from loom.pipeline.spec import PipeDef
from loom.pipeline.state import StateStore
from loom.store.logs import Log
from loom.store.message import Message, child_origin, new_message

# The filename an input arrived under, when it is not its canonical `{ts}-{id}.msg`.
PARENT_FIELD = f"{PRIVATE_PREFIX}_file"


def item_stem(filename: str) -> str:
    """The root of the keys (and step file names) derived from an input file."""
    return filename[:-4] if filename.endswith(".msg") else filename


def child_key(key: str, position: int) -> str:
    """The key of output `position` of the item `key`; stable, so re-runs overwrite."""
    return f"{key}.{position}"


def parent_filename(msg: Message) -> str:
    """The filename of the input `msg` descends from (its origin's next segment)."""
    recorded = msg.extra.get(PARENT_FIELD)
    return recorded if isinstance(recorded, str) else msg.filename


class Pipeline:
    """A pipe definition made runnable.

    With `state_dir` None stateful operators keep their state in memory; otherwise each
    keeps it under `state_dir/<number>-<kind>/` and picks it up again on restart.
    `drops` and `errors` count per operator label (`2:filter`). A pipeline of operators
    that keep no state may run several messages at once on several threads (the queued
    process with `concurrency:`); `counting_drops` tells one message's drops apart.
    """

    def __init__(
        self,
        definition: PipeDef,
        *,
        instance: str,
        state_dir: Path | None = None,
        log: Log | None = None,
        clock: Callable[[], float] = time.time,
        stderr: TextIO | None = None,
    ) -> None:
        # Positions decide labels, steps/<n>/ and state/<n>-<kind>/: make sure every
        # spec's index is its position, even in a definition built by hand.
        specs = tuple(replace(spec, index=pos) for pos, spec in enumerate(definition.operators))
        self.definition = replace(definition, operators=specs)
        self.instance = instance
        self.state_dir = state_dir
        self.log = log
        self.drops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._counting = threading.Lock()
        self._local = threading.local()  # `message_drops`: this thread's message's drops
        # Failures met while running timed-out or flushed batches (push raises instead).
        self.failures: list[OperatorError] = []
        self._clock = clock
        self._stderr = stderr
        # Set by flush(): from then on nothing new arrives, so whatever a timer releases
        # later (a throttle's backlog) also flushes the holding operators after it.
        self._ended = False
        self._store = StateStore(state_dir) if state_dir is not None else None
        self.operators: list[Operator] = []
        self._applied: list[dict[str, Any] | None] = []
        # Per position: whether commit() has anything to write (durable and stateful).
        self._persisted: list[bool] = []
        for pos in range(len(specs)):
            op = self._build(pos)
            self.operators.append(op)
            self._applied.append(None)
            self._persisted.append(self._store is not None and op.stateful)
        for pos in range(len(self.operators)):
            self._load(pos)

    def __len__(self) -> int:
        return len(self.operators)

    def _build(self, pos: int) -> Operator:
        spec = self.definition.operators[pos]
        op = build_operator(spec, self.definition.name, self.definition.source)
        op.bind(
            Context(
                spec,
                pipe=self.instance,
                state_dir=self.state_dir,
                log=self.log,
                drops=self.drops,
                stderr=self._stderr,
                on_drop=self._dropped,
            )
        )
        return op

    def _load(self, pos: int) -> None:
        op = self.operators[pos]
        if self._store is None or not op.stateful:
            return
        saved = self._store.load(op.spec)
        if saved is None:
            return
        try:
            if saved.state is not None:
                op.load_state(saved.state)
            for delta in saved.deltas:
                op.apply_delta(delta)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            path = self._store.path(op.spec)
            raise LoomError(
                f"{path}: unreadable operator state ({exc!r}); "
                "move the file away to restart this operator empty"
            ) from None
        self._applied[pos] = saved.applied

    def _dropped(self, label: str, count: int) -> None:
        with self._counting:
            self.drops[label] += count
        mine: Counter[str] | None = getattr(self._local, "message_drops", None)
        if mine is not None:
            mine[label] += count

    @contextlib.contextmanager
    def counting_drops(self) -> Iterator[Counter[str]]:
        """The drops this thread's operators count inside the block (those of the one
        message it is working on), apart from other threads' messages."""
        mine: Counter[str] = Counter()
        outer = getattr(self._local, "message_drops", None)
        self._local.message_drops = mine
        try:
            yield mine
        finally:
            self._local.message_drops = outer

    # -- time ----------------------------------------------------------------------
    def now(self) -> float:
        """Wall-clock seconds, the time base of operator state."""
        return self._clock()

    def _wall(self, monotonic_now: float | None) -> float:
        if monotonic_now is None:
            return self._clock()
        return self._clock() + (monotonic_now - time.monotonic())

    # -- one operator at a time (the queued process builds on these) ---------------
    def label(self, pos: int) -> str:
        return self.operators[pos].label

    def enter(self, msg: Message, filename: str | None = None) -> Message:
        """The message as operators see it: `to` cleared, the arrival filename remembered."""
        renamed = filename is not None and filename != msg.filename
        if msg.to is None and not renamed and PARENT_FIELD not in msg.extra:
            return msg  # the common case: nothing to change, nothing to copy
        extra = {k: v for k, v in msg.extra.items() if k != PARENT_FIELD}
        if renamed:
            extra[PARENT_FIELD] = filename
        m = msg
        return Message(m.id, m.sender, m.ts, m.body, m.origin, m.error, None, m.v, extra)

    def step(self, pos: int, msg: Message, key: str, now: float | None = None) -> list[Message]:
        """Run operator `pos` on one message; OperatorError when an expression fails on it."""
        op = self.operators[pos]
        try:
            return op.process(msg, key, self._clock() if now is None else now)
        except Exception as exc:
            raise self._failed(op.label, exc, msg) from None

    def _failed(self, label: str, exc: Exception, msg: Message) -> Exception:
        """What an operator's error on one message becomes: an OperatorError (that message
        fails, the pipe goes on), whatever the operator raised; a full disk stays itself,
        since it is the process's fault, not the message's."""
        if is_disk_full(exc):
            return exc
        with self._counting:
            self.errors[label] += 1
        if isinstance(exc, ExpressionError):
            return OperatorError(label, str(exc), msg)
        return OperatorError(label, f"{type(exc).__name__}: {exc}", msg)

    def finish(self, msg: Message) -> Message:
        """The new message that leaves the pipe for an in-pipe message (SPEC 2 origin rule);
        a batch keeps its marker."""
        out = new_message(
            self.instance,
            msg.body,
            origin=child_origin(msg.origin, parent_filename(msg)),
            error=msg.error,
            to=msg.to,
        )
        return out.as_batch(out.body) if msg.is_batch else out

    def commit(self, pos: int, applied: dict[str, Any] | None = None) -> None:
        """Persist operator `pos`'s state (durable mode, stateful operators only)."""
        op = self.operators[pos]
        if self._store is None or not op.stateful:
            return
        if not (op.incremental and self._store.append(op.spec, op.take_delta(), applied)):
            op.take_delta()  # the snapshot includes it
            self._store.save(op.spec, op.dump_state(), applied)
        self._applied[pos] = applied

    def applied(self, pos: int) -> dict[str, Any] | None:
        """The `applied` record of operator `pos`'s last commit (durable mode)."""
        return self._applied[pos]

    def rollback(self, pos: int) -> None:
        """Forget uncommitted changes of operator `pos` (durable mode; memory cannot undo)."""
        op = self.operators[pos]
        if self._store is None or not op.stateful:
            return
        op.close()
        self.operators[pos] = self._build(pos)
        self._applied[pos] = None
        self._load(pos)

    def due(self, now: float | None = None) -> list[int]:
        """Positions of operators whose timed work is due at wall-clock `now`."""
        wall = self._clock() if now is None else now
        return [
            pos
            for pos, op in enumerate(self.operators)
            if (d := op.deadline()) is not None and d <= wall
        ]

    def poll_operator(self, pos: int, now: float) -> list[Message]:
        """Operator `pos`'s timed outputs at wall-clock `now`, without committing."""
        return self.operators[pos].poll(now)

    # -- whole chain ---------------------------------------------------------------
    def run(self, start: int, items: Iterable[tuple[Message, str]]) -> list[Message]:
        """Run `(message, key)` items through operators `start..`, committing after each."""
        return [self.finish(msg) for msg in self._chain(start, list(items))]

    def _chain(self, start: int, current: list[tuple[Message, str]]) -> list[Message]:
        """The in-pipe messages items become through operators `start..`, not yet finished."""
        # `step` inlined, and commits skipped where there is nothing to persist: this
        # loop runs for every message of `loom pipe run`.
        clock = self._clock
        for pos in range(start, len(self.operators)):
            op = self.operators[pos]
            process = op.process
            produced: list[tuple[Message, str]] = []
            try:
                for msg, key in current:
                    try:
                        outputs = process(msg, key, clock())
                    except Exception as exc:
                        raise self._failed(op.label, exc, msg) from None
                    if len(outputs) == 1:
                        produced.append((outputs[0], key + ".0"))
                    else:
                        for j, out in enumerate(outputs):
                            produced.append((out, child_key(key, j)))
            except BaseException:
                self.rollback(pos)
                raise
            if self._persisted[pos]:
                self.commit(pos)
            current = produced
            if not current:
                return []
        return [msg for msg, _ in current]

    def push(self, msg: Message, filename: str | None = None) -> list[Message]:
        """Run the whole chain on one input; return the messages that leave the pipe.

        Outputs are new messages (new ids, from = the instance) whose origin is
        child_origin(origin, filename) of the input they descend from; raises
        OperatorError when an operator fails on this input, leaving the pipeline usable.
        """
        return [self.finish(out) for out in self.push_unfinished(msg, filename)]

    def push_unfinished(self, msg: Message, filename: str | None = None) -> list[Message]:
        """What `push` returns before `finish`: bodies and `to` are final, the envelope is
        still the input's. For callers that only want the bodies (`loom pipe run`)."""
        stem = item_stem(filename) if filename else f"{msg.ts}-{msg.id}"
        return self._chain(0, [(self.enter(msg, filename), stem)])

    def poll(self, now: float | None = None) -> list[Message]:
        """Outputs released by time (window/buffer timeouts, throttle releases).

        `now` is a time.monotonic() value (default: now).
        """
        wall = self._wall(now)
        out: list[Message] = []
        for pos in self.due(wall):
            released = self.operators[pos].poll(wall)
            self.commit(pos)
            out.extend(self._downstream(pos, released, f"timer-{int(wall * 1000)}"))
            if self._ended:
                out.extend(self._flush_from(pos + 1, wall))
        return out

    def flush(self) -> list[Message]:
        """End of input: windows and buffers release what they hold, through the rest
        of the chain. A throttle keeps its rate: its backlog leaves through poll()."""
        self._ended = True
        return self._flush_from(0, self._clock())

    def _flush_from(self, start: int, wall: float) -> list[Message]:
        out: list[Message] = []
        for pos in range(start, len(self.operators)):
            released = self.operators[pos].flush(wall)
            if released:
                self.commit(pos)
                out.extend(self._downstream(pos, released, f"flush-{int(wall * 1000)}"))
        return out

    def _downstream(self, pos: int, released: list[Message], key: str) -> list[Message]:
        out: list[Message] = []
        for j, msg in enumerate(released):
            try:
                out.extend(self.run(pos + 1, [(msg, child_key(f"{key}-{pos + 1}", j))]))
            except OperatorError as exc:
                self.failures.append(exc)
                self._report(exc)
        return out

    def _report(self, exc: OperatorError) -> None:
        if self.log is not None:
            self.log.error("operator failed", operator=exc.label, error=exc.problem)
        else:
            print(f"loom: pipe {self.instance}: {exc}", file=self._stderr or sys.stderr, flush=True)

    def next_deadline(self) -> float | None:
        """The time.monotonic() value at which `poll` has work, or None."""
        deadlines = [d for op in self.operators if (d := op.deadline()) is not None]
        if not deadlines:
            return None
        return time.monotonic() + (min(deadlines) - self._clock())

    def close(self) -> None:
        """Stop streaming command processes."""
        for op in self.operators:
            op.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
