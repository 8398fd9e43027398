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

from loom import atomic
from loom.message import Message
from loom.queue import read_message, write_message

TIMERS = "timers"


class Journal:
    """Step outputs, step manifests and timer jobs of one pipe instance."""

    def __init__(self, steps_dir: Path) -> None:
        self.dir = steps_dir
        self._made: set[Path] = set()  # folders known to exist: one stat less per write

    def step_dir(self, number: int) -> Path:
        return self.dir / str(number)

    def _ensure(self, path: Path) -> Path:
        if path not in self._made:
            atomic.make_private_dir(path)
            self._made.add(path)
        return path

    # -- outputs and manifests -----------------------------------------------------
    def write_output(self, number: int, key: str, msg: Message) -> None:
        folder = self._ensure(self.step_dir(number))
        try:
            write_message(folder, msg, f"{key}.msg")
        except FileNotFoundError:  # the folder was removed under us (e.g. by gc)
            self._made.discard(folder)
            write_message(self._ensure(folder), msg, f"{key}.msg")

    def read_output(self, number: int, key: str) -> Message:
        return read_message(self.step_dir(number) / f"{key}.msg")

    def write_done(self, number: int, job: str, token: str, keys: list[str]) -> None:
        doc = {"job": job, "token": token, "outputs": keys}
        folder = self._ensure(self.step_dir(number))
        try:
            atomic.write_text(folder / f"{job}.done", json.dumps(doc))
        except FileNotFoundError:
            self._made.discard(folder)
            atomic.write_text(self._ensure(folder) / f"{job}.done", json.dumps(doc))

    def read_done(self, number: int, job: str, token: str) -> list[str] | None:
        """The output keys of a completed step, or None when the step did not complete."""
        try:
            doc = json.loads((self.step_dir(number) / f"{job}.done").read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("token") != token:
            return None
        outputs = doc.get("outputs")
        return [str(k) for k in outputs] if isinstance(outputs, list) else None

    # -- timer jobs ----------------------------------------------------------------
    def start_timer(self, job: str, pos: int) -> None:
        path = self._ensure(self.dir / TIMERS) / f"{job}.json"
        atomic.write_text(path, json.dumps({"job": job, "operator": pos + 1}))

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
                doc: Any = json.loads((folder / name).read_text("utf-8"))
                found.append((str(doc["job"]), int(doc["operator"]) - 1))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return found

    def end_timer(self, job: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / TIMERS / f"{job}.json").unlink()
