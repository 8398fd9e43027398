"""An agent's system prompt: `prompt.md` followed by the files of `memory/` (SPEC 3).

Every request is built from what those files hold when its message is answered, so an
edit applies from the next message on. A runner reads them again only when a stat says
they changed: each file's identity, size, modification and change times, and those of
`memory/` itself (which move when an entry is added, removed or renamed).

A time stamp is only as fine as the file system's clock (a few milliseconds; two
seconds on FAT), so a file written shortly before it was read could be written again
with the same size and the same time stamps (and a modification time can be set back,
as `touch -r` and `rsync -t` do; the change time cannot). What was read of a file changed less than
`SETTLED_NS` before the read is therefore not reused: it is read again next time, until
it has been still for that long.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from loom.errors import ProviderError, UsageError
from loom.store.files import PROMPT_LIMIT, read_bounded_text
from loom.store.home import ProcessDir

SETTLED_NS = 3_000_000_000

# What a stat says of one file, or None when it does not exist.
_Seen = tuple[int, int, int, int, int, int] | None
_UNKNOWN = (0, 0, 0, 0, 0, 0)


class PromptUnreadable(ProviderError):
    """prompt.md or a memory file cannot be read: the request cannot be built, so the
    message fails (not retried) and the runner goes on with the next one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, error_type="prompt_unreadable", transient=False)


def system_prompt(proc: ProcessDir) -> str | None:
    """`prompt.md` followed by every file in `memory/`, in name order (SPEC 3); raise
    PromptUnreadable when one is not a regular file, is past PROMPT_LIMIT or unreadable."""
    return _read(proc, _entries(proc.memory))


class SystemPrompt:
    """The system prompt of one agent, read again only when its files changed.

    Safe to use from several call threads: what was read is kept as one tuple, replaced
    whole.
    """

    def __init__(self, proc: ProcessDir) -> None:
        self.proc = proc
        # (what the stats said, the memory entries, the prompt), once reusable.
        self._kept: tuple[tuple[_Seen, ...], tuple[str, ...], str | None] | None = None

    def text(self) -> str | None:
        """The prompt as the files hold it now (PromptUnreadable as `system_prompt`)."""
        kept = self._kept
        if kept is not None and self._look(kept[1]) == kept[0]:
            return kept[2]
        self._kept = None
        started = time.time_ns()
        names = _entries(self.proc.memory)
        before = self._look(names)
        text = _read(self.proc, names)
        # Looked at again: a file that changed while it was read is read again next time.
        if self._look(names) == before and _settled(before, started):
            self._kept = (before, names, text)
        return text

    def _look(self, names: tuple[str, ...]) -> tuple[_Seen, ...]:
        memory = self.proc.memory
        return (_seen(self.proc.prompt), _seen(memory), *(_seen(memory / n) for n in names))


def _entries(memory: Path) -> tuple[str, ...]:
    """The names in `memory/` that may be prompt files, in name order; hidden files are
    an editor's or a writer's temporaries."""
    try:
        return tuple(sorted(n for n in os.listdir(memory) if not n.startswith(".")))
    except (FileNotFoundError, NotADirectoryError):
        return ()


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


def _seen(path: Path) -> _Seen:
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        # A link loop, a folder that cannot be searched: the read says what is wrong
        # (PromptUnreadable), and mode 0 keeps it from being reused.
        return _UNKNOWN
    return (
        info.st_dev,
        info.st_ino,
        info.st_mode,
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
    )


def _settled(seen: tuple[_Seen, ...], started: int) -> bool:
    """Whether every file looked at had last changed (its content, by the modification
    time; its name, links or mode, by the change time, which no one can set back)
    `SETTLED_NS` before `started`, and each is a regular file or a folder (anything
    else is read, and refused, each time)."""
    for info in seen:
        if info is None:
            continue
        mode, changed = info[2], max(info[4], info[5])
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) or changed > started - SETTLED_NS:
            return False
    return True
