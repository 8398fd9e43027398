"""`PLUGIN invoke`: one tool call, from the model's arguments to the text it gets back.

Protocol (SPEC 12, docs/tools.md): the arguments arrive on stdin as one line of JSON;
the plugin may print `{"type": "progress", ...}` lines, and its last line is
`{"status": "ok", "result": ...}` or `{"status": "error", "error": "..."}`. Anything
else (a crash, a timeout, a non-zero exit, no result line, too much output) becomes an
error result: the model decides what to do next.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom.store.files import load_json
from loom.tools.describe import EXCERPT, exit_reason, start_failure
from loom.tools.process import run_bounded

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Invocation:
    """The outcome of one call: `text` is the result for the model, or the error."""

    ok: bool
    text: str
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "ok" if self.ok else "error"


def parse_arguments(name: str, raw: str) -> dict[str, Any] | Invocation:
    """The model's argument text as an object, or the error result explaining why not."""
    if not raw.strip():
        return {}  # some models send "" for a tool without parameters
    try:
        value = load_json(raw)
    except ValueError as exc:
        return Invocation(False, f"the arguments for {name} are not valid JSON ({exc}): {raw!r}")
    if not isinstance(value, dict):
        return Invocation(False, f"the arguments for {name} must be a JSON object, not {raw!r}")
    return value


def invoke(
    name: str,
    executable: Path,
    arguments: dict[str, Any],
    *,
    env: Mapping[str, str],
    timeout: float,
    limit: int,
    cwd: Path | None = None,
    on_progress: Progress | None = None,
) -> Invocation:
    """Run `executable invoke` with `arguments` and interpret what it printed."""

    def line(text: str) -> None:
        if on_progress is not None and (update := _progress(text)) is not None:
            on_progress(update)

    data = (json.dumps(arguments, ensure_ascii=False) + "\n").encode()
    try:
        done = run_bounded(
            [str(executable), "invoke"],
            data=data,
            env=env,
            timeout=timeout,
            limit=limit,
            cwd=cwd,
            on_line=line,
        )
    except OSError as exc:
        return Invocation(False, f"{name} {start_failure(exc)}")
    if done.timed_out:
        text = f"{name} did not finish within {timeout:g} s and was stopped (LOOM_TOOL_TIMEOUT)"
        return Invocation(False, text, done.seconds)
    if done.overflow:
        text = f"{name} printed more than {limit} bytes and was stopped"
        return Invocation(False, text, done.seconds)
    final = _final(done.stdout.decode("utf-8", errors="replace"))
    if final is not None and final.get("status") == "error":
        return Invocation(False, _as_text(final.get("error")), done.seconds)
    if done.returncode != 0:
        detail = f": {done.stderr_tail[:EXCERPT]}" if done.stderr_tail else ""
        return Invocation(False, f"{name} {exit_reason(done.returncode)}{detail}", done.seconds)
    if final is None or final.get("status") != "ok" or "result" not in final:
        text = (
            f'{name} printed no result line: its last line must be {{"status": "ok", '
            f'"result": ...}} or {{"status": "error", "error": "..."}}'
        )
        return Invocation(False, text, done.seconds)
    return Invocation(True, _as_text(final["result"]), done.seconds)


def _final(stdout: str) -> dict[str, Any] | None:
    """The last non-empty line as a JSON object, if it is one."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        return None
    try:
        value = load_json(lines[-1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _progress(line: str) -> dict[str, Any] | None:
    if '"progress"' not in line:
        return None  # cheap test first: most lines are not progress
    try:
        value = load_json(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value.get("type") == "progress" else None


def _as_text(value: Any) -> str:
    """A result as the model reads it: text as is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
