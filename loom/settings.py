"""Every `LOOM_*` environment variable loom reads, with its form, default and meaning.

This is the only module that reads loom's settings from the environment, so a value is
checked the same way wherever it is used: a malformed one is a `SettingError` naming
the variable and the form it accepts, never a traceback (docs/configuration.md is
generated from `ALL`). Variables loom *sets* for its children (`LOOM_MSG_ID`,
`LOOM_PIPE`, `LOOM_AGENT_NAME`, ...) are not settings and are not listed here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping

from loom.errors import UsageError

# Not typing's: `loom send` and `loom agent ps` do not import typing
# (tests/test_architecture.py). mypy takes it as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Generic, TypeVar

    T = TypeVar("T", covariant=True)
else:
    # Setting is generic for mypy alone: `Setting[float]` is only ever an annotation,
    # never evaluated, so at run time `Generic[T]` may as well be `object`.
    T = None
    Generic = {T: object}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SettingError(UsageError):
    """A `LOOM_*` variable whose value is not of the accepted form; exit code 2."""


class Setting(Generic[T]):
    """One environment variable: `form` says what it accepts, `shown` its default as
    written in the docs, `parse` returns None for a value of the wrong form."""

    # Not a dataclass: `loom send` does not import dataclasses (tests/test_architecture.py).
    __slots__ = ("name", "default", "shown", "form", "doc", "parse")

    def __init__(
        self,
        name: str,
        default: T,
        shown: str,
        form: str,
        doc: str,
        parse: Callable[[str], T | None],
    ) -> None:
        self.name = name
        self.default = default
        self.shown = shown
        self.form = form
        self.doc = doc
        self.parse = parse

    def __repr__(self) -> str:
        return f"Setting({self.name!r}, default={self.default!r})"

    def get(self, env: Mapping[str, str] | None = None) -> T:
        """The value in `env` (default: this process's environment); unset or blank
        gives the default, a malformed value raises SettingError."""
        raw = (os.environ if env is None else env).get(self.name, "").strip()
        if not raw:
            return self.default
        value = self.parse(raw)
        if value is None:
            raise SettingError(f"{self.name} must be {self.form}, got {raw!r}")
        return value


def _seconds(minimum: float, strict: bool) -> Callable[[str], float | None]:
    def parse(raw: str) -> float | None:
        try:
            value = float(raw)
        except ValueError:
            return None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            return None
        return value

    return parse


def _count(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() else None


def _flag(raw: str) -> bool | None:
    low = raw.lower()
    return True if low in _TRUE else False if low in _FALSE else None


def _choice(*choices: str) -> Callable[[str], str | None]:
    def parse(raw: str) -> str | None:
        low = raw.lower()
        return low if low in choices else None

    return parse


def _text(raw: str) -> str | None:
    return raw


def seconds(name: str, default: float, doc: str, *, positive: bool = False) -> Setting[float]:
    """A duration in seconds, > 0 when `positive`, else >= 0."""
    form = "a number of seconds > 0" if positive else "a number of seconds >= 0"
    return Setting(name, default, f"{default:g}", form, doc, _seconds(0.0, positive))


def count(name: str, default: int, doc: str) -> Setting[int]:
    """A whole number >= 0."""
    return Setting(name, default, str(default), "a whole number >= 0", doc, _count)


HOME: Setting[str] = Setting(
    "LOOM_HOME", "~/.loom", "~/.loom", "a folder path", "where all state lives", _text
)
CLUSTER_HOST: Setting[str] = Setting(
    "LOOM_HOST",
    "",
    "(none)",
    "a host name of the weave",
    "which host of a weave with `cluster:` this machine is (what `--host` gives)",
    _text,
)
NATS_USER: Setting[str] = Setting(
    "LOOM_NATS_USER",
    "",
    "(none)",
    "text",
    "the user loom's processes give the NATS servers of `cluster:`, with "
    "`LOOM_NATS_PASSWORD`; read where the supervisor starts, never written "
    "([cluster.md](cluster.md))",
    _text,
)
NATS_PASSWORD: Setting[str] = Setting(
    "LOOM_NATS_PASSWORD", "", "(none)", "text", "the password of `LOOM_NATS_USER`", _text
)
NATS_TOKEN: Setting[str] = Setting(
    "LOOM_NATS_TOKEN",
    "",
    "(none)",
    "text",
    "a NATS token instead of a user and password",
    _text,
)
FSYNC: Setting[bool] = Setting(
    "LOOM_FSYNC",
    True,
    "1",
    "one of 1, 0, true, false, yes, no, on, off",
    "`0` skips fsync of written files and their folders: faster, and still safe when a "
    "process crashes, but a power cut can lose the last writes",
    _flag,
)
WATCH: Setting[str] = Setting(
    "LOOM_WATCH",
    "inotify",
    "inotify",
    "inotify or poll",
    "`poll` makes inbox watchers poll every 50 ms instead of using inotify",
    _choice("inotify", "poll"),
)
HTTP_TIMEOUT = seconds(
    "LOOM_HTTP_TIMEOUT",
    600.0,
    "seconds a model call may go without progress of the answer (text, a piece of a tool"
    " call, or its end) before it counts as a (transient) timeout; keep-alive comments,"
    " pings and empty lines are not progress",
    positive=True,
)
RETRIES = count(
    "LOOM_RETRIES",
    3,
    "retries of a transient model failure (timeouts, connection errors, 429, 5xx)",
)
RETRY_BASE = seconds(
    "LOOM_RETRY_BASE",
    1.0,
    "the first retry delay in seconds; retries wait 1×, 2×, 4× this, or what `Retry-After` says",
)
RESTART_BASE = seconds(
    "LOOM_RESTART_BASE",
    1.0,
    "the supervisor's first restart delay in seconds: `min(base × 2^n, 300) + jitter`",
)
RESTART_JITTER = seconds(
    "LOOM_RESTART_JITTER", 0.5, "the random part of a restart delay, in seconds"
)
TOOL_TIMEOUT = seconds(
    "LOOM_TOOL_TIMEOUT",
    60.0,
    "seconds one tool call may take ([tools.md](tools.md))",
    positive=True,
)
TOOL_DESCRIBE_TIMEOUT = seconds(
    "LOOM_TOOL_DESCRIBE_TIMEOUT", 5.0, "seconds a plugin's `describe` may take", positive=True
)
TOOL_ROUNDS = count("LOOM_TOOL_ROUNDS", 10, "model → tools → model rounds before a message fails")
SUPERVISOR_RESCAN = seconds(
    "LOOM_SUPERVISOR_RESCAN",
    2.0,
    "seconds between the supervisor's periodic rescans of the home (SIGHUP rescans at once)",
    positive=True,
)
SUPERVISOR_LINGER = seconds(
    "LOOM_SUPERVISOR_LINGER",
    2.0,
    "seconds a supervisor started on demand waits with nothing to supervise before it exits",
)
ADOPTED_POLL = seconds(
    "LOOM_ADOPTED_POLL",
    0.5,
    "seconds between checks that a child adopted from an earlier supervisor is still alive",
    positive=True,
)
STATS_EVERY = seconds(
    "LOOM_STATS_EVERY",
    1.0,
    "seconds between writes of `router/stats.json` (read by `loom routes`)",
    positive=True,
)
METRICS_EVERY = seconds(
    "LOOM_METRICS_EVERY",
    5.0,
    "seconds between writes of `metrics.prom` (scrapers read it every 15 s or more)",
    positive=True,
)
WORKER_RESCAN = seconds(
    "LOOM_WORKER_RESCAN",
    1.0,
    "seconds between an agent's or pipe's rescans of its inbox besides inotify events"
    " (a stop signal does not wait for it)",
    positive=True,
)

MODEL: Setting[str] = Setting(
    "LOOM_MODEL",
    "",
    "(none)",
    "a model string",
    "the model `loom ask` uses when given no `--model`",
    _text,
)

ALL: tuple[Setting[object], ...] = (
    HOME,
    MODEL,
    CLUSTER_HOST,
    NATS_USER,
    NATS_PASSWORD,
    NATS_TOKEN,
    FSYNC,
    WATCH,
    HTTP_TIMEOUT,
    RETRIES,
    RETRY_BASE,
    RESTART_BASE,
    RESTART_JITTER,
    TOOL_TIMEOUT,
    TOOL_DESCRIBE_TIMEOUT,
    TOOL_ROUNDS,
    SUPERVISOR_RESCAN,
    SUPERVISOR_LINGER,
    ADOPTED_POLL,
    STATS_EVERY,
    METRICS_EVERY,
    WORKER_RESCAN,
)


def check_all(env: Mapping[str, str] | None = None) -> None:
    """Raise SettingError for the first malformed setting: a process that hands its
    environment to children (the supervisor) checks them all before it starts."""
    for setting in ALL:
        setting.get(env)


def table() -> str:
    """The Markdown table of every setting, as docs/configuration.md shows it."""
    rows = ["| variable | default | accepts | meaning |", "|---|---|---|---|"]
    for s in ALL:
        rows.append(f"| `{s.name}` | `{s.shown}` | {s.form} | {s.doc} |")
    return "\n".join(rows)
