"""The supervisor's log, whose lines on stderr (the journal, under systemd) name what
they are about: `loom: supervisor: agent w1 crashed (exit 1), restarting in 1.2s`.

The NDJSON record is the same as any log's; only the line for people differs.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

from loom.store.logs import Log


def subject(child: str) -> str:
    """`agents/w1` → `agent w1`, `pipes/p` → `pipe p`; a bare name is a pipe instance."""
    kind, sep, name = child.partition("/")
    if not sep:
        return f"pipe {child}"
    return f"{'agent' if kind == 'agents' else 'pipe' if kind == 'pipes' else kind} {name}"


def _exit(fields: Mapping[str, Any]) -> str:
    if fields.get("signal"):
        try:
            return f"signal {signal.Signals(fields['signal']).name}"
        except ValueError:
            return f"signal {fields['signal']}"
    if fields.get("exit_code") is not None:
        return f"exit {fields['exit_code']}"
    return "exit unknown: it ended while no supervisor watched"


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value >= 0.1 else f"{value * 1000:.0f}ms"


def line(event: str, fields: Mapping[str, Any]) -> str:
    """The one line for people that a supervisor log record stands for."""
    detail = fields.get("error") or fields.get("detail") or ""
    tail = f": {detail}" if detail else ""
    child = fields.get("child")
    if isinstance(child, str):
        who = subject(child)
        if event == "crashed":
            delay = fields.get("restart_in_s")
            when = f", restarting in {_seconds(delay)}" if isinstance(delay, int | float) else ""
            return f"{who} crashed ({_exit(fields)}){when}"
        if event == "dead":
            failed = fields.get("failed_messages") or 0
            answered = f"; {failed} messages in progress answered with failures" if failed else ""
            return f"{who} is dead, not restarted: {fields.get('reason')}{answered}"
        if event == "failed" and fields.get("msg"):
            return f"{who}: message {fields['msg']} failed{tail}"
        if event == "spawn failed":
            return f"{who} could not be started{tail}"
        about = f" (message {fields['msg']})" if fields.get("msg") else ""
        return f"{who}: {event}{about}{tail}"
    edge = fields.get("edge")
    if isinstance(edge, str):
        about = f" {fields['msg']}" if fields.get("msg") else ""
        return f"route {edge}: {event}{about}{tail}"
    about = f" {fields['msg']}" if fields.get("msg") else ""
    return f"{event}{about}{tail}"


class Journal(Log):
    """A Log whose warnings and errors on the stream name their process or route."""

    def _write(self, event: str, level: str, echo: bool, fields: dict[str, Any]) -> None:
        super()._write(event, level, False, fields)
        if echo and self.echo is not None and level in ("warning", "error"):
            print(f"loom: {self.process}: {line(event, fields)}", file=self.echo, flush=True)
