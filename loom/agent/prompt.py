"""An agent's system prompt: `prompt.md` followed by the files of `memory/` (SPEC 3),
read afresh for every request, so an edit applies from the next message on.

They are not kept between messages on the word of a stat: a memory file linked to a
generated file (procfs) or a prompt edited through a shared mapping changes without
its size or time stamps moving.
"""

from __future__ import annotations

import os
from pathlib import Path

from loom.errors import ProviderError, UsageError
from loom.store.files import PROMPT_LIMIT, read_bounded_text
from loom.store.home import ProcessDir


class PromptUnreadable(ProviderError):
    """prompt.md or a memory file cannot be read: the request cannot be built, so the
    message fails (not retried) and the runner goes on with the next one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, error_type="prompt_unreadable", transient=False)


def system_prompt(proc: ProcessDir) -> str | None:
    """`prompt.md` followed by every file in `memory/`, in name order (SPEC 3); raise
    PromptUnreadable when one is not a regular file, is past PROMPT_LIMIT or unreadable."""
    return _read(proc, _entries(proc.memory))


def _entries(memory: Path) -> tuple[str, ...]:
    """The names in `memory/` that may be prompt files, in name order; hidden files are
    an editor's or a writer's temporaries."""
    if not memory.is_dir():
        return ()
    return tuple(sorted(n for n in os.listdir(memory) if not n.startswith(".")))


def _read(proc: ProcessDir, names: tuple[str, ...]) -> str | None:
    parts: list[str] = []
    base = _prompt_file(proc.prompt, "prompt.md")
    if base:
        parts.append(base)
    for name in names:
        entry = proc.memory / name
        if entry.is_dir():
            continue  # folders hold notes the user keeps aside
        text = _prompt_file(entry, "memory file")
        if text:
            parts.append(f"# Memory: {name}\n\n{text}")
    return "\n\n".join(parts) or None


def _prompt_file(path: Path, what: str) -> str:
    """The stripped text of one prompt file; "" when it does not exist (any more)."""
    try:
        return read_bounded_text(path, PROMPT_LIMIT, what).strip()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise PromptUnreadable(f"cannot read {what} {path}: {exc.strerror}") from None
    except UsageError as exc:
        raise PromptUnreadable(str(exc)) from None
