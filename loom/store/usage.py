"""What an agent's model calls cost: token totals per model in `usage.json` (SPEC 3).

The runner that owns the agent's queue is the file's only writer: it loads the totals
when it starts, adds each answer's tokens and rewrites the file atomically after each
answer; a runner serving its inbox (detached, or `serve`) does so at most every
WRITE_EVERY_S while answers come in a burst, then once more when the burst ends and on
the way out (a chat and `--stdin` write after each answer). A rewrite costs
more than the rest of an answer's bookkeeping, so a backlog does not pay one per
message; a runner killed (SIGKILL) in a burst loses at most that last part second of
totals, never a message. `ps`,
`stats` and `metrics.prom` read this one small file instead of the logs. The logs say
the same per message (`replied` lines), but `loom gc` compresses and deletes old logs
and `metrics.state.json` exists only where a supervisor ran, so totals counted from
logs would shrink or cost a read of every log on each `ps`; a counter kept beside
the queue survives restarts and gc and costs one small read.
"""

from __future__ import annotations

import json
import threading
import time

from loom.errors import LoomError, is_disk_full
from loom.store import atomic
from loom.store.files import FIELD_LIMIT, load_json, read_bounded
from loom.store.home import ProcessDir

# Not typing's: `loom send` and `loom agent ps` do not import typing
# (tests/test_architecture.py). mypy takes it as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE_FILE = "usage.json"
USAGE_VERSION = 1
# While answers come faster than this, the totals are rewritten at most this often.
WRITE_EVERY_S = 0.5
# After a rewrite failed (not a full disk, which pauses the runner), the next try.
RETRY_S = 30.0
KINDS = ("input", "output")


class Usage:
    """Token totals of one agent, per model (the agent's `model` setting when the
    tokens were spent, e.g. `openai/gpt-4o-mini`)."""

    # Not a dataclass: `loom agent ps` does not import dataclasses.
    __slots__ = ("models",)

    def __init__(self, models: dict[str, dict[str, int]] | None = None) -> None:
        self.models: dict[str, dict[str, int]] = {} if models is None else models

    @property
    def input_tokens(self) -> int:
        return sum(counts["input"] for counts in self.models.values())

    @property
    def output_tokens(self) -> int:
        return sum(counts["output"] for counts in self.models.values())

    def add(self, model: str, input_tokens: int | None, output_tokens: int | None) -> bool:
        """Count one answer's tokens; False when it reported none (nothing changed)."""
        if input_tokens is None and output_tokens is None:
            return False
        counts = self.models.setdefault(model, dict.fromkeys(KINDS, 0))
        counts["input"] += input_tokens or 0
        counts["output"] += output_tokens or 0
        return True

    def to_json(self) -> dict[str, Any]:
        return {"v": USAGE_VERSION, "models": self.models}

    @classmethod
    def from_json(cls, data: Any) -> Usage:
        """The totals in a parsed `usage.json`; what is not a count reads as none."""
        usage = cls()
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, dict):
            return usage
        for model, counts in models.items():
            if not isinstance(counts, dict):
                continue
            usage.models[str(model)] = {kind: _count(counts.get(kind)) for kind in KINDS}
        return usage


def _count(value: object) -> int:
    """A stored token count; 0 for anything that is not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def read(proc: ProcessDir) -> Usage:
    """The agent's totals; none when it has no `usage.json` or the file is unreadable
    (a FIFO or oversize file in its place reads as absent, without blocking)."""
    try:
        raw = read_bounded(proc.path / USAGE_FILE, FIELD_LIMIT, USAGE_FILE, follow=False)
        return Usage.from_json(load_json(raw))
    except (OSError, ValueError, LoomError):
        return Usage()


class UsageCounter:
    """The runner's side: the totals it loaded at start, kept up to date on disk."""

    def __init__(self, proc: ProcessDir) -> None:
        self.proc = proc
        self.usage = read(proc)
        self._lock = threading.Lock()  # the runner answers from several threads
        self._owed = False  # totals counted that the file does not hold yet
        self._next = 0.0  # monotonic time before which the file is not rewritten
        self.failing = False  # the last rewrite failed (said once per failure)

    def add(
        self, model: str, input_tokens: int | None, output_tokens: int | None, defer: bool
    ) -> None:
        """Count one answer's tokens and rewrite `usage.json`; with `defer` (a loop that
        writes what `due` says is owed), not if it was rewritten less than
        WRITE_EVERY_S ago."""
        with self._lock:
            if self.usage.add(model, input_tokens, output_tokens):
                self._owed = True
                if not defer or time.monotonic() >= self._next:
                    self._write()

    def due(self) -> float | None:
        """Monotonic time at which owed totals are to be written, if any are owed."""
        return self._next if self._owed else None

    def flush(self) -> None:
        """Write the owed totals now (a burst ended, or the runner stops)."""
        with self._lock:
            if self._owed:
                self._write()

    def _write(self) -> None:
        text = json.dumps(self.usage.to_json(), ensure_ascii=False, sort_keys=True)
        try:
            atomic.write_text(self.proc.path / USAGE_FILE, text + "\n")
        except OSError as exc:
            # Tried again after a while, not in a loop; soon after a full disk, which
            # pauses the runner until writes succeed again.
            later = WRITE_EVERY_S if is_disk_full(exc) else RETRY_S
            self._next = time.monotonic() + later
            raise
        self._owed = self.failing = False
        self._next = time.monotonic() + WRITE_EVERY_S
