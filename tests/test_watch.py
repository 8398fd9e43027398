"""Inbox watchers: one contract, run against inotify and polling (STYLE 11)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loom.store.watch import InotifyWatcher, PollingWatcher, Watcher

FACTORIES: dict[str, Callable[[list[Path]], Watcher]] = {
    "inotify": InotifyWatcher,
    "polling": lambda paths: PollingWatcher(paths, interval=0.01),
}


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest) -> Callable[[list[Path]], Watcher]:
    return FACTORIES[request.param]


def test_wakes_when_a_file_is_renamed_in(
    tmp_path: Path, make: Callable[[list[Path]], Watcher]
) -> None:
    w = make([tmp_path])
    tmp = tmp_path.parent / f"{tmp_path.name}-tmp"
    tmp.write_text("x")

    def land() -> None:
        os.rename(tmp, tmp_path / "1-a.msg")

    threading.Timer(0.05, land).start()
    started = time.monotonic()
    assert w.wait(5.0) is True
    assert time.monotonic() - started < 2.0
    w.close()


def test_times_out_when_nothing_happens(
    tmp_path: Path, make: Callable[[list[Path]], Watcher]
) -> None:
    w = make([tmp_path])
    assert w.wait(0.05) is False
    w.close()
