"""The tools of one running agent: offered to the model before each call, run when it
asks, and every call and result logged (SPEC 12)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loom.errors import ProviderError
from loom.providers.base import ToolCall, ToolResult, ToolSpec
from loom.store.logs import Log
from loom.tools.discovery import CACHE, find, global_folder, search_folders
from loom.tools.invoke import Invocation, invoke, parse_arguments
from loom.tools.scope import TOOLS_DIR, agent_folders
from loom.tools.settings import ROUNDS_VARIABLE, ToolSettings

# How much of a tool's arguments or result a log line keeps; the conversation file
# keeps all of it.
LOG_EXCERPT = 500


class ToolRoundsExceeded(ProviderError):
    """The model kept calling tools past the round limit, so the message fails.

    A ProviderError because it is the model's call that went wrong, and the runner's one
    failure path (reply, `.failed/`, error_type) is the right way to report it.
    """

    def __init__(self, rounds: int) -> None:
        super().__init__(
            f"the model still asked for tools after {rounds} rounds of tool calls "
            f"({ROUNDS_VARIABLE} is {rounds})",
            error_type="tool_rounds_exceeded",
            transient=False,
        )


class Toolbox:
    """Finds an agent's plugins afresh before each model call (descriptions are cached,
    so this is a few stats), and runs the calls the model makes."""

    def __init__(
        self,
        agent_dir: Path,
        *,
        agent: str,
        home: Path,
        cwd: Path,
        env: Mapping[str, str],
        log: Log,
        settings: ToolSettings,
    ) -> None:
        self.agent_dir = agent_dir
        self.cwd = cwd
        self.log = log
        self.settings = settings
        # A plugin runs with the runner's own environment plus where it runs for.
        self.env = {
            **env,
            "LOOM_AGENT_NAME": agent,
            "LOOM_HOME": str(home.absolute()),
            "LOOM_AGENT_DIR": str(agent_dir.absolute()),
        }
        # The working folder and home do not change while the runner lives.
        self._shared = search_folders(home, cwd)
        # The folders a plugin can be in, as strings: most agents have none of them, and
        # a stat tells so more cheaply than listing them (`offer`).
        self._candidates = [
            os.fspath(agent_dir / TOOLS_DIR),
            *(os.fspath(f) for _, f in self._shared),
        ]
        self._cache = global_folder(home) / CACHE
        self._usable: dict[str, Path] = {}
        self._reported: set[tuple[str, str]] = set()

    def offer(self) -> tuple[ToolSpec, ...]:
        """The usable tools now; problems are logged once each."""
        if not any(map(_may_exist, self._candidates)):
            self._usable = {}
            return ()
        folders = agent_folders(self.agent_dir, self._shared)
        plugins = find(folders, self.env, self.settings, cache_dir=self._cache)
        self._usable = {}
        specs = []
        for plugin in plugins:
            if plugin.usable and plugin.executable is not None:
                self._usable[plugin.name] = plugin.executable
                specs.append(plugin.spec())
            elif plugin.problem and (str(plugin.entry), plugin.problem) not in self._reported:
                self._reported.add((str(plugin.entry), plugin.problem))
                self.log.warning(
                    "tool_problem", tool=plugin.name, path=str(plugin.entry), error=plugin.problem
                )
        return tuple(specs)

    def run(self, calls: tuple[ToolCall, ...], msg: str) -> tuple[ToolResult, ...]:
        """Run each call in turn (in the model's order) and return its result."""
        return tuple(self._run_one(call, msg) for call in calls)

    def _run_one(self, call: ToolCall, msg: str) -> ToolResult:
        self.log.info(
            "tool_call", msg=msg, tool=call.name, call_id=call.id, arguments=_clip(call.arguments)
        )
        started = time.monotonic()
        outcome = self._outcome(call, msg)
        fields: dict[str, Any] = {
            "msg": msg,
            "tool": call.name,
            "call_id": call.id,
            "status": outcome.status,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
        if outcome.ok:
            self.log.info("tool_result", **fields, result=_clip(outcome.text))
        else:
            self.log.warning("tool_result", **fields, error=_clip(outcome.text))
        # Said in words too: only Anthropic's wire has a flag for a failed call.
        content = outcome.text if outcome.ok else f"error: {outcome.text}"
        return ToolResult(call.id, call.name, content, is_error=not outcome.ok)

    def _outcome(self, call: ToolCall, msg: str) -> Invocation:
        executable = self._usable.get(call.name)
        if executable is None:
            known = ", ".join(sorted(self._usable)) or "none"
            text = f"there is no tool named {call.name!r}; the tools are: {known}"
            return Invocation(False, text)
        arguments = parse_arguments(call.name, call.arguments)
        if isinstance(arguments, Invocation):
            return arguments

        def progress(update: dict[str, Any]) -> None:
            fields = _fields(update)
            self.log.info("tool_progress", msg=msg, tool=call.name, call_id=call.id, **fields)

        return invoke(
            call.name,
            executable,
            arguments,
            env=self.env,
            timeout=self.settings.timeout,
            limit=self.settings.output_limit,
            cwd=self.cwd,
            on_progress=progress,
        )


def _may_exist(path: str) -> bool:
    """False only when `path` is certainly not there; any other answer (a link loop, a
    folder that cannot be searched) goes to discovery, which says what is wrong."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def _fields(update: dict[str, Any]) -> dict[str, Any]:
    """A progress line's fields for the log, minus those the log line sets itself."""
    reserved = {"ts", "level", "event", "process", "msg", "tool", "call_id", "type"}
    return {k: v for k, v in update.items() if k not in reserved}


def _clip(text: str) -> str:
    return text if len(text) <= LOG_EXCERPT else text[: LOG_EXCERPT - 1] + "…"
