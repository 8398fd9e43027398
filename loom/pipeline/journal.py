"""The files a queued pipe keeps between operators: `steps/<number>/` (SPEC 3, 6).

For every job (a claimed inbox message, or a batch released by a timer) and every
operator, the outputs are written as full messages named `<item key>.msg`, where the
key is the input's filename stem extended by output positions (`1742...-01J.0.2`), so a
step re-run after a crash overwrites instead of duplicating. After the outputs, a
manifest `<job>.done` lists them: its presence means the step is complete. `token`
tells one delivery of a filename from a later one, so stale manifests are never reused.
Timer jobs in flight are recorded in `steps/timers/<job>.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from loom.store import atomic
from loom.store.files import (
    FIELD_LIMIT,
    STATE_LIMIT,
    FileTooLarge,
    NotARegularFile,
    load_json,
    read_bounded,
)
from loom.store.message import Message
from loom.store.queue import read_message

TIMERS = "timers"


class Journal:
    """Step outputs, step manifests and timer jobs of one pipe instance."""

    def __init__(self, steps_dir: Path) -> None:
        self.dir = steps_dir
        # Paths are plain strings here: a message makes several files per step, and
        # pathlib's joins cost more than the writes themselves on tmpfs.
        self._root = os.fspath(steps_dir)
        self._folders: dict[int, str] = {}  # step folders known to exist: no stat per write

    def step_dir(self, number: int) -> Path:
        return self.dir / str(number)

    def _folder(self, number: int) -> str:
        folder = self._folders.get(number)
        if folder is None:
            folder = os.path.join(self._root, str(number))
            atomic.make_private_dir(Path(folder))
            self._folders[number] = folder
        return folder

    def _write(self, number: int, name: str, data: bytes) -> None:
        try:
            atomic.write_bytes(f"{self._folder(number)}/{name}", data)
        except FileNotFoundError:  # the folder was removed under us (e.g. by gc)
            self._folders.pop(number, None)
            atomic.write_bytes(f"{self._folder(number)}/{name}", data)

    # -- outputs and manifests -----------------------------------------------------
    def write_output(self, number: int, key: str, msg: Message) -> None:
        self._write(number, f"{key}.msg", msg.to_bytes())

    def read_output(self, number: int, key: str) -> Message:
        return read_message(self.step_dir(number) / f"{key}.msg")

    def write_done(self, number: int, job: str, token: str, keys: list[str]) -> None:
        doc = {"job": job, "token": token, "outputs": keys}
        self._write(number, f"{job}.done", json.dumps(doc).encode("utf-8"))

    def read_done(self, number: int, job: str, token: str) -> list[str] | None:
        """The output keys of a completed step, or None when the step did not complete."""
        path = os.path.join(self._root, str(number), f"{job}.done")
        try:
            # Not a regular file, a link or oversize: not a manifest loom wrote, so the
            # step counts as not done and runs again, writing a manifest of its own.
            doc = load_json(read_bounded(path, STATE_LIMIT, "step manifest", follow=False))
        except (FileNotFoundError, ValueError, NotARegularFile, FileTooLarge):
            return None
        if not isinstance(doc, dict) or doc.get("token") != token:
            return None
        outputs = doc.get("outputs")
        return [str(k) for k in outputs] if isinstance(outputs, list) else None

    # -- timer jobs ----------------------------------------------------------------
    def start_timer(self, job: str, pos: int) -> None:
        folder = atomic.make_private_dir(self.dir / TIMERS)  # timer jobs are rare: no cache
        atomic.write_text(folder / f"{job}.json", json.dumps({"job": job, "operator": pos + 1}))

    def timers(self) -> list[tuple[str, int]]:
        """`(job, position)` of every timer job a crash left unfinished, oldest first."""
        folder = self.dir / TIMERS
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            try:
                raw = read_bounded(folder / name, FIELD_LIMIT, "timer job", follow=False)
                doc: Any = load_json(raw)
                found.append((str(doc["job"]), int(doc["operator"]) - 1))
            except (OSError, ValueError, KeyError, TypeError, NotARegularFile, FileTooLarge):
                continue
        return found

    def end_timer(self, job: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / TIMERS / f"{job}.json").unlink()
