"""An agent's system prompt: `prompt.md` followed by the files of `memory/` (SPEC 3),
read afresh for every request, so an edit applies from the next message on.

They are not kept between messages on the word of a stat: a memory file linked to a
generated file (procfs) or a prompt edited through a shared mapping changes without
its size or time stamps moving.
"""

from __future__ import annotations

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
    parts: list[str] = []
    base = _prompt_file(proc.prompt, "prompt.md")
    if base:
        parts.append(base)
    if proc.memory.is_dir():
        for entry in sorted(proc.memory.iterdir()):
            # Hidden files are an editor's or a writer's temporaries; folders hold notes
            # the user keeps aside.
            if entry.name.startswith(".") or entry.is_dir():
                continue
            text = _prompt_file(entry, "memory file")
            if text:
                parts.append(f"# Memory: {entry.name}\n\n{text}")
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
