"""What every operator is: a class built from an OperatorSpec, fed one message at a time.

An operator validates its arguments in `configure` (no side effects, so a definition
can be checked without running anything), gets its run-time Context from `bind`, and
turns each message into zero, one or many messages in `process`. Stateful operators
also implement `dump_state`/`load_state` (JSON values the engine persists after every
message) and, for timed work, `deadline`/`poll`. Times are wall-clock seconds so a
persisted deadline keeps its meaning across a restart.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TextIO, TypeVar

from loom.errors import InvalidName
from loom.names import validate_name
from loom.pipeline.durations import parse_duration
from loom.pipeline.errors import ArgError
from loom.pipeline.expressions import Expression, compact_json, compile_expression
from loom.pipeline.spec import OperatorSpec
from loom.store.logs import Log
from loom.store.message import Message, from_dict

# Envelope fields loom adds inside a pipe (e.g. the input's real filename); they never
# leave the pipe and are stripped from batch bodies.
PRIVATE_PREFIX = "_loom"
_MISSING: Any = object()
_T = TypeVar("_T")


class Context:
    """What an operator may use at run time: its label, where its files go, the log."""

    def __init__(
        self,
        spec: OperatorSpec,
        *,
        pipe: str = "pipe",
        state_dir: Path | None = None,
        log: Log | None = None,
        drops: Counter[str] | None = None,
        stderr: TextIO | None = None,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> None:
        self.spec = spec
        self.pipe = pipe
        self.label = spec.label
        # The pipe's state/ folder; None when the pipeline runs in memory.
        self.state_dir = state_dir
        self.log = log
        self.drops: Counter[str] = drops if drops is not None else Counter()
        self._stderr = stderr
        # Given by a pipeline that counts drops itself (per message, across threads).
        self._on_drop = on_drop

    @property
    def stderr(self) -> TextIO:
        return self._stderr or sys.stderr

    def drop(self, count: int = 1) -> None:
        """Count a message this operator dropped on purpose."""
        if self._on_drop is not None:
            self._on_drop(self.label, count)
        else:
            self.drops[self.label] += count

    def warn(self, event: str, **fields: Any) -> None:
        """Log a warning; without a log (foreground) it goes to stderr as one line."""
        if self.log is not None:
            self.log.warning(event, operator=self.label, **fields)
            return
        detail = fields.get("error") or fields.get("detail") or ""
        suffix = f": {detail}" if detail else ""
        text = f"loom: pipe {self.pipe}: operator {self.label}: {event}{suffix}"
        print(text, file=self.stderr, flush=True)

    def info(self, event: str, **fields: Any) -> None:
        if self.log is not None:
            self.log.info(event, operator=self.label, **fields)


class Args:
    """Typed access to an operator's arguments; remembers which keys were asked for."""

    def __init__(self, spec: OperatorSpec, primary: str | None = None) -> None:
        self.spec = spec
        self.primary = primary
        self._raw = dict(spec.args)
        self._known: set[str] = set()

    def line(self, key: str) -> int | None:
        return self.spec.lines.get(key) or self.spec.line

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._known.add(key)
        if key in self._raw:
            return self._raw[key]
        if default is not _MISSING:
            return default
        others = sorted(set(self._raw) - self._known)
        hint = ""
        if others:
            hint = f" (found {', '.join(repr(o) for o in others)} instead"
            if key == "expr":
                hint += "; a JMESPath multiselect hash like {a: b} must be quoted in YAML"
            hint += ")"
        raise ArgError(key, f"is required{hint}", self.spec.line)

    def expr(self, key: str, *, required: bool = True) -> Expression | None:
        return self._parsed(key, required, lambda value: compile_expression(value, key=key))

    def required_expr(self, key: str) -> Expression:
        result = self.expr(key, required=True)
        assert result is not None
        return result

    def duration(self, key: str, *, required: bool = False) -> float | None:
        return self._parsed(key, required, lambda value: parse_duration(value, key=key))

    def count(self, key: str) -> int:
        """A required positive integer."""
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArgError(key, f"must be a positive integer, got {value!r}", self.line(key))
        return value

    def text(self, key: str, *, default: str | None = None) -> str:
        value = self.raw(key, default if default is not None else _MISSING)
        if not isinstance(value, str) or not value.strip():
            raise ArgError(key, f"must be a non-empty string, got {value!r}", self.line(key))
        return value

    def flag(self, key: str, *, default: bool = False) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise ArgError(key, f"must be true or false, got {value!r}", self.line(key))
        return value

    def choice(self, key: str, choices: tuple[str, ...], *, default: str) -> str:
        value = self.raw(key, default)
        if value not in choices:
            raise ArgError(
                key, f"must be one of {', '.join(choices)}, got {value!r}", self.line(key)
            )
        return str(value)

    def names(self, key: str, value: Any = _MISSING, *, line: int | None = None) -> tuple[str, ...]:
        """One destination name or a non-empty list of them, each a valid agent/pipe name."""
        if value is _MISSING:
            value = self.raw(key)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise ArgError(
                key, f"must be a name or a list of names, got {value!r}", line or self.line(key)
            )
        for item in items:
            try:
                validate_name(item, "destination")
            except InvalidName as exc:
                raise ArgError(key, str(exc), line or self.line(key)) from None
        return tuple(dict.fromkeys(items))

    def finish(self) -> None:
        """Reject keys the operator never asked for, with a did-you-mean."""
        for key in self._raw:
            if key in self._known:
                continue
            close = difflib.get_close_matches(str(key), sorted(self._known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            expected = ", ".join(sorted(self._known)) or "none"
            raise ArgError(
                str(key),
                f"unknown key{hint}; expected: {expected}",
                self.line(str(key)),
                at_key=True,
            )

    def _parsed(self, key: str, required: bool, parse: Callable[[Any], _T]) -> _T | None:
        """`parse` of the argument `key`; None when an optional one is absent or null."""
        value = self.raw(key, _MISSING if required else None)
        if value is None:
            return None
        return self._located(key, lambda: parse(value))

    def _located(self, key: str, parse: Callable[[], _T]) -> _T:
        try:
            return parse()
        except ArgError as exc:
            exc.line = exc.line or self.line(key)
            raise


class Operator:
    """Base class of every operator; subclasses register with `@register`."""

    kind: ClassVar[str] = ""
    # The argument the short form's plain value fills (`- map: EXPR` -> expr).
    primary: ClassVar[str | None] = None
    # Whether the operator has state the engine persists under state/<number>-<kind>/.
    stateful: ClassVar[bool] = False

    def __init__(self, spec: OperatorSpec) -> None:
        self.spec = spec
        self.ctx = Context(spec)
        args = Args(spec, self.primary)
        self.configure(args)
        args.finish()

    @property
    def label(self) -> str:
        return self.spec.label

    def configure(self, args: Args) -> None:
        """Read and validate arguments; raise ArgError. Must not touch files or processes."""

    def bind(self, ctx: Context) -> None:
        """Attach the run-time context (log, state folder, drop counter)."""
        self.ctx = ctx

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        """The messages `msg` turns into. `key` names this item uniquely and stably
        (for files an operator writes); `now` is wall-clock seconds."""
        raise NotImplementedError

    def deadline(self) -> float | None:
        """Wall-clock time at which `poll` has work, or None."""
        return None

    def poll(self, now: float) -> list[Message]:
        """Messages released by time (window timeouts, throttle releases)."""
        return []

    def flush(self, now: float) -> list[Message]:
        """End of input: release everything held."""
        return []

    def dump_state(self) -> Any:
        """The operator's state as a JSON value."""
        return None

    def load_state(self, data: Any) -> None:
        """Restore what `dump_state` returned."""

    # Operators whose state only grows (dedupe's keys) persist it as a journal of
    # changes, so a commit costs O(change) instead of rewriting all of it.
    incremental: ClassVar[bool] = False

    def take_delta(self) -> Any:
        """The change to the state since the last call (incremental operators)."""
        return None

    def apply_delta(self, delta: Any) -> None:
        """Apply a change returned by `take_delta` (when loading the journal)."""

    def close(self) -> None:
        """Release processes or files."""


# -- helpers shared by the operators ------------------------------------------------
def envelope_dict(msg: Message) -> dict[str, Any]:
    """The message as its JSON object, without loom's pipe-internal fields."""
    return {k: v for k, v in msg.to_dict().items() if not str(k).startswith(PRIVATE_PREFIX)}


def batch_message(
    trigger: Message, held: list[Message], marker: dict[str, Any] | None = None
) -> Message:
    """A batch: body is the JSON list of the held envelopes; the envelope is the trigger's,
    marked `"batch": true` so a runner can tell it from a body that only looks like one."""
    items: list[Any] = [envelope_dict(m) for m in held]
    if marker is not None:
        items.append(marker)
    return trigger.as_batch(compact_json(items))


def message_to_state(msg: Message) -> dict[str, Any]:
    return msg.to_dict()


def message_from_state(data: Any) -> Message:
    return from_dict(data)


def group_key(expr: Expression | None, msg: Message) -> str:
    """The canonical JSON text of `by` for `msg` ("" when there is no `by`)."""
    if expr is None:
        return ""
    return key_text(expr.evaluate(msg))


def key_text(value: Any) -> str:
    """Canonical JSON of a key value, so equal objects give equal keys."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
