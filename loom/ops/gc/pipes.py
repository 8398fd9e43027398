"""A pipe instance's own files: old `steps/` entries, and dedupe state beyond its last keys."""

from __future__ import annotations

import os
import re
from pathlib import Path

from loom.errors import LoomError
from loom.ops.gc.report import Report
from loom.pipeline.journal import TIMERS
from loom.pipeline.spec import OperatorSpec
from loom.pipeline.state import JOURNAL, Saved, StateStore
from loom.store.home import ProcessDir
from loom.store.queue import IN_PROGRESS
from loom.wording import count

# Step entries are named after their job: `<ts>-<id>[.<j>...]` or `timer-<ts>-<id>[...]`.
_STEP_TS_RE = re.compile(r"(?:timer-)?(\d{1,16})-")
_DEDUPE_RE = re.compile(r"(\d{1,4})-dedupe")


def tidy_steps(proc_dir: Path, *, keep: int, now: float, report: Report) -> None:
    """Delete `steps/<k>/` entries older than `keep` seconds, except those of a message
    still in `.in-progress/` or of a timer job in flight (recovery resumes from them)."""
    steps = proc_dir / "steps"
    try:
        folders = sorted(n for n in os.listdir(steps) if n != TIMERS)
    except (FileNotFoundError, NotADirectoryError):
        return
    # Listed before the busy jobs: a job that starts after this listing writes files
    # this run never saw, and one listed here is either still busy below or finished.
    entries = []
    for folder in folders:
        try:
            entries += [steps / folder / n for n in sorted(os.listdir(steps / folder))]
        except (FileNotFoundError, NotADirectoryError):
            continue
    busy = {_stem(n) for n in _names(proc_dir / "inbox" / IN_PROGRESS)}
    busy |= {n[: -len(".json")] for n in _names(steps / TIMERS) if n.endswith(".json")}
    cutoff = now - keep
    for path in entries:
        name = path.name
        if name.startswith(".") or name.split(".", 1)[0] in busy:
            continue
        m = _STEP_TS_RE.match(name)
        if m and int(m.group(1)) >= cutoff * 1000:
            continue  # made after the cutoff: no stat needed
        try:
            if path.stat().st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.error(path, exc)
            continue
        report.remove(path)


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _stem(filename: str) -> str:
    return filename[:-4] if filename.endswith(".msg") else filename


def truncate_dedupe(proc: ProcessDir, *, keep: int, report: Report) -> None:
    """Keep only the last `keep` keys of each dedupe operator's state.

    The state is a snapshot plus a journal of the keys added since (loom.pipeline.state);
    both are read, and the result is written back by the state module itself: a new
    snapshot, then an empty journal. A running pipe holds its state in memory and
    journals every message, so its files are skipped (and reported): a truncation would
    not reach its memory, and a rewrite crossing one of its appends could lose that
    message's key. A stopped instance is truncated after checking that nothing started
    or wrote meanwhile.
    """
    for sub in sorted(_names(proc.state)):
        m = _DEDUPE_RE.fullmatch(sub)
        if m is None:
            continue
        folder = proc.state / sub
        spec = OperatorSpec("dedupe", index=int(m.group(1)) - 1)
        store = StateStore(proc.state)
        before = _stamp(folder)
        try:
            saved = store.load(spec)
            keys = _keys(saved)
        except OSError as exc:
            report.error(folder, exc)
            continue
        except (LoomError, ValueError, KeyError, TypeError) as exc:
            report.error(folder, f"not a dedupe state ({exc}); left as it is")
            continue
        if saved is None or len(keys) <= keep:
            continue
        path = store.path(spec)
        detail = f"{count(len(keys), 'key')} to the last {keep}"
        if _running(proc):
            reason = (
                f"{count(len(keys), 'key')}, but {proc.name} is running; run gc while it is stopped"
            )
            report.add("skip", path, reason)
            continue
        if report.dry_run:
            report.add("truncate", path, detail)
            continue
        if _running(proc) or _stamp(folder) != before:
            report.add("skip", path, f"{proc.name} started meanwhile; left as it is")
            continue
        try:
            store.save(spec, {"seen": keys[len(keys) - keep :]}, saved.applied)
        except OSError as exc:
            report.error(path, exc)
            continue
        report.add("truncate", path, detail)


def _keys(saved: Saved | None) -> list[str]:
    """The keys in the order the dedupe operator holds them: the snapshot's, then each
    journalled key moved to the end (as DedupeOperator.apply_delta does)."""
    if saved is None:
        return []
    seen: dict[str, None] = dict.fromkeys(saved.state["seen"] if saved.state else [])
    for delta in saved.deltas:
        for key in delta:
            seen.pop(key, None)
            seen[key] = None
    return list(seen)


def _stamp(folder: Path) -> list[tuple[int, int, int] | None]:
    """What identifies the current contents of a state folder's two files."""
    found: list[tuple[int, int, int] | None] = []
    for name in ("state.json", JOURNAL):
        try:
            st = os.stat(folder / name)
            found.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            found.append(None)
    return found


def _running(proc: ProcessDir) -> bool:
    try:
        return proc.served_by() is not None
    except LoomError:
        return False
