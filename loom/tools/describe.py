"""`PLUGIN describe`: run it, check what it printed, and cache the answer (SPEC 12).

The answer is cached in `$LOOM_HOME/plugins/.cache/`, one JSON file per executable, keyed
by the executable's path, mtime and size: editing or replacing a plugin describes it
again. Failures are cached too, so a plugin that hangs costs its timeout once, not on
every message; `loom tools --refresh` ignores the cache.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom.store import atomic
from loom.tools.process import run_bounded

# What OpenAI and Anthropic both accept as a tool name, minus a leading '-' (which
# would read as an option in `ls` and shells).
TOOL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
EXCERPT = 120


# Answers already read by this process, by (path, mtime_ns, size): a runner looks its
# plugins up before every message, and the file cache would cost a read and a parse.
_memo: dict[tuple[str, int, int], dict[str, Any]] = {}


class PluginProblem(Exception):
    """Why a plugin cannot be offered to a model; one sentence for `loom tools`."""


@dataclass(frozen=True)
class Description:
    """A plugin's valid answer to `describe`."""

    name: str
    description: str
    input_schema: dict[str, Any]


def describe(
    executable: Path,
    *,
    env: Mapping[str, str],
    timeout: float,
    limit: int,
    cache_dir: Path | None,
    refresh: bool = False,
) -> Description:
    """The plugin's description, from the cache when the file is unchanged.

    Raises PluginProblem when the plugin cannot run, fails, hangs, or prints anything but
    a valid description.
    """
    try:
        stat = executable.stat()
    except OSError as exc:
        raise PluginProblem(f"cannot read {executable}: {exc.strerror}") from None
    if not os.access(executable, os.X_OK):
        raise PluginProblem(f"not executable: run chmod +x {executable}")
    key = {"path": str(executable), "mtime_ns": stat.st_mtime_ns, "size": stat.st_size}
    cache = cache_dir / _cache_name(executable) if cache_dir is not None else None
    memo_key = (str(executable), stat.st_mtime_ns, stat.st_size)
    cached = None if refresh else _memo.get(memo_key)
    if cached is None and not refresh and cache is not None:
        cached = _load(cache, key)
    if cached is None:
        cached = _run(executable, env, timeout, limit)
        if cache is not None:
            _store(cache, {**key, **cached})
    _memo[memo_key] = cached
    if "problem" in cached:
        raise PluginProblem(str(cached["problem"]))
    return validate(cached.get("describe"))


def validate(payload: Any) -> Description:
    """Check a parsed `describe` answer: a valid tool name, a description, and an
    object-typed JSON Schema (the only kind the model APIs take)."""
    if not isinstance(payload, dict):
        raise PluginProblem("describe must print one JSON object")
    name = payload.get("name")
    if not isinstance(name, str):
        raise PluginProblem("describe printed no 'name' (a string)")
    if not TOOL_NAME.fullmatch(name):
        raise PluginProblem(
            f"{name[:EXCERPT]!r} is not a valid tool name: use letters, digits, '_' and '-' "
            "(not first), at most 64 characters"
        )
    description = payload.get("description")
    if not isinstance(description, str) or not description.strip():
        raise PluginProblem("describe printed no 'description' (a non-empty string)")
    schema = payload.get("input_schema")
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise PluginProblem('\'input_schema\' must be a JSON Schema object with "type": "object"')
    return Description(name, description.strip(), schema)


def _run(executable: Path, env: Mapping[str, str], timeout: float, limit: int) -> dict[str, Any]:
    """Run `describe` once: {"describe": <parsed JSON>} or {"problem": <sentence>}."""
    try:
        done = run_bounded(
            [str(executable), "describe"], data=b"", env=env, timeout=timeout, limit=limit
        )
    except OSError as exc:
        return {"problem": start_failure(exc)}
    if done.timed_out:
        return {"problem": f"describe did not finish within {timeout:g} s"}
    if done.overflow:
        return {"problem": f"describe printed more than {limit} bytes"}
    if done.returncode != 0:
        reason = exit_reason(done.returncode)
        detail = f": {done.stderr_tail[:EXCERPT]}" if done.stderr_tail else ""
        return {"problem": f"describe {reason}{detail}"}
    text = done.stdout.decode("utf-8", errors="replace").strip()
    try:
        return {"describe": json.loads(text)}
    except ValueError:
        shown = " ".join(text.split())[:EXCERPT]
        return {"problem": f"describe printed something that is not JSON: {shown!r}"}


def start_failure(exc: OSError) -> str:
    """Why a plugin could not be started, as a hint to fix it."""
    if exc.errno == errno.ENOEXEC:
        return "cannot be run: does it start with a #! line?"
    if exc.errno == errno.EACCES:
        return "permission denied: is it executable (chmod +x)?"
    if exc.errno == errno.ENOENT:
        return "cannot be run: its #! interpreter was not found"
    return f"cannot be run: {exc.strerror}"


def exit_reason(returncode: int | None) -> str:
    """ "exited with status N" or "was killed by SIGNAME"."""
    if returncode is not None and returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
        return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _cache_name(executable: Path) -> str:
    digest = hashlib.sha256(str(executable).encode()).hexdigest()[:12]
    return f"{executable.name}-{digest}.json"


def _load(cache: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        entry = json.loads(cache.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in key.items()):
        return None
    return entry


def _store(cache: Path, entry: dict[str, Any]) -> None:
    # The cache only saves time: a folder we cannot write is no reason to fail.
    with contextlib.suppress(OSError):
        atomic.make_private_dir(cache.parent)
        atomic.write_text(cache, json.dumps(entry, ensure_ascii=False, indent=1) + "\n")
