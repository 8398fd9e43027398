"""A full disk (a real, small tmpfs): the supervisor waits it out and resumes routing by
itself with nothing lost; the CLI says so in one line instead of a traceback."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import logged_events, run_loom, spawn_loom, wait_for

from loom.store.message import new_message
from loom.store.queue import write_message

DISK_FULL = "disk full; supervision and routing wait for space"
RESUMED = "disk writable again; supervision and routing resumed"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs at tmp_path/disk (root only), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mount.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Write one file until the disk refuses more; return it (delete it to free space)."""
    filler = disk / "filler"
    # Unbuffered: a buffered file would try to write its refused chunk again on close.
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    top_up(filler)
    return filler


def top_up(filler: Path) -> None:
    """Take whatever room is left, e.g. pages freed when a file was replaced by an empty one."""
    with open(filler, "ab", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError:
                    break


def replies(home: Path, agent: str) -> list[str]:
    return sorted(p.name for p in (home / "agents" / agent / "outbox").glob("*.msg"))


def test_the_supervisor_waits_out_a_full_disk_and_resumes_routing(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reap: list
) -> None:
    home = small_disk / "home"
    monkeypatch.setenv("LOOM_HOME", str(home))
    errors = tmp_path / "supervisor.err"  # off the full disk, so it always has room
    with open(errors, "wb") as err:
        sup = spawn_loom("supervisor", "run", stderr=err, stdout=subprocess.DEVNULL)
    reap.append(sup)
    wait_for(lambda: (home / "supervisor.pid").exists(), what="the supervisor")
    try:
        for name in ("a", "b"):
            r = run_loom("agent", "start", name, "--model", "echo", "-d")
            assert r.returncode == 0, r.stderr
        assert run_loom("route", "a", "--to", "b").returncode == 0
        assert run_loom("send", "a", "first").returncode == 0
        wait_for(lambda: len(replies(home, "b")) == 1, 20, "b's answer before the disk fills")

        # A reply of a's, written while there was room, appears once the disk is full.
        stage = small_disk / "stage"
        stage.mkdir()
        late = new_message("a", "written just before the disk filled")
        staged = write_message(stage, late)
        filler = fill(small_disk)

        top_up(filler)
        sent = run_loom("send", "a", "no room for this")
        assert sent.returncode == 1
        assert re.fullmatch(
            rf"loom: no space left on device writing {re.escape(str(home))}/agents/a/inbox/"
            r"\S+\.msg; free space and retry; nothing sent\n",
            sent.stderr,
        ), sent.stderr

        top_up(filler)
        os.rename(staged, home / "agents/a/outbox" / late.filename)
        wait_for(lambda: DISK_FULL in errors.read_text(), 20, "the disk-full line")
        # Several retries happen in this window (0.25 s, 0.5 s, 1 s): still one line.
        time.sleep(2)
        assert sup.poll() is None
        assert errors.read_text().count(DISK_FULL) == 1, errors.read_text()
        assert not (home / "agents/b/inbox" / late.filename).exists()
        assert (home / "agents/a/outbox" / late.filename).exists()

        filler.unlink()
        wait_for(lambda: len(replies(home, "b")) == 2, 30, "b's answer once space is back")
        processed = home / "agents/b/inbox/.processed"
        assert [p.name for p in processed.glob("*.msg")].count(late.filename) == 1
        assert (home / "agents/a/outbox" / late.filename).exists()
        # Said once the whole round of work that delivered it went through, so it can
        # come after b's answer.
        events = wait_for(
            lambda: RESUMED in (found := logged_events(home / "supervisor")) and found,
            10,
            "the resumed line",
        )
        assert events.count(RESUMED) == 1 and events.count(DISK_FULL) <= 1
        assert sup.poll() is None
    finally:
        run_loom("agent", "stop", "a")
        run_loom("agent", "stop", "b")
        sup.send_signal(signal.SIGTERM)
        sup.wait(timeout=10)
