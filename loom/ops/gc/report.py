"""What one `loom gc` run did: one line per action, and a summary line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Verb of an action → the word in the summary line, in summary order.
SUMMARY = {
    "archive": "archived",
    "delete": "deleted",
    "compress": "compressed",
    "truncate": "truncated",
    "prune": "pruned",
}


@dataclass(frozen=True)
class Action:
    """One thing gc did (or would do): `verb` is archive, delete, compress, truncate,
    prune, skip or error; `path` is relative to `$LOOM_HOME`."""

    verb: str
    path: str
    detail: str | None = None
    dry_run: bool = False
    target: str | None = None  # where it went: the archive or the .gz file

    @property
    def is_error(self) -> bool:
        return self.verb == "error"

    def line(self) -> str:
        verb = f"would {self.verb}" if self.dry_run and self.verb in SUMMARY else self.verb
        line = f"{verb} {self.path}"
        if self.target:
            line += f" → {self.target}"
        return line + (f": {self.detail}" if self.detail else "")


class Report:
    """Collects actions, hands each to `on_action` as it happens, and counts them."""

    def __init__(
        self, home: Path, *, dry_run: bool, on_action: Callable[[Action], None] | None = None
    ) -> None:
        self.home = home
        self.dry_run = dry_run
        self.on_action = on_action
        self.counts: Counter[str] = Counter()
        self.actions: list[Action] = []

    def relative(self, path: Path) -> str:
        # String slicing: pathlib's relative_to costs more than the rest of an archive.
        text = str(path)
        prefix = str(self.home) + "/"
        return text[len(prefix) :] if text.startswith(prefix) else text

    def add(
        self, verb: str, path: Path, detail: str | None = None, *, target: Path | None = None
    ) -> None:
        where = self.relative(target) if target is not None else None
        action = Action(verb, self.relative(path), detail, self.dry_run, where)
        self.actions.append(action)
        self.counts[verb] += 1
        if self.on_action is not None:
            self.on_action(action)

    def remove(
        self,
        path: Path,
        verb: str = "delete",
        detail: str | None = None,
        *,
        target: Path | None = None,
    ) -> None:
        """Delete `path` (not on a dry run) and report it as `verb`; a file gone meanwhile is
        passed over, one that cannot be deleted is reported as an error."""
        if not self.dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                return  # another gc, or the process itself, got there first
            except OSError as exc:
                self.error(path, exc)
                return
        self.add(verb, path, detail, target=target)

    def error(self, path: Path, exc: BaseException | str) -> None:
        """Report a file gc could not handle; the run goes on and exits 1 at the end."""
        if isinstance(exc, OSError):
            detail = exc.strerror or str(exc)
        else:
            detail = str(exc)
        self.add("error", path, detail)

    @property
    def errors(self) -> int:
        return self.counts["error"]

    def summary(self) -> str | None:
        """`3 archived, 2 deleted, ...`, or None when there was nothing to do (cron stays quiet)."""
        if not self.actions:
            return None
        parts = [f"{self.counts[verb]} {word}" for verb, word in SUMMARY.items()]
        if self.counts["skip"]:
            parts.append(f"{self.counts['skip']} skipped")
        if self.errors:
            parts.append(f"{self.errors} error{'s' if self.errors != 1 else ''}")
        text = ", ".join(parts)
        return f"dry run, nothing changed: {text}" if self.dry_run else text
