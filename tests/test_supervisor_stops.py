"""Stops the supervisor must tell from crashes (SPEC 8): a stop asked for a pid, and a
consumer that stopped because a message needs a newer loom (SPEC 2)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import run_loom, spawn_loom, wait_for

from loom.home import pid_is_loom

WEAVE = "version: 1\nagents:\n  - name: a\n    model: echo\n    system: prompt {n}\n"


def read(home: Path, name: str, field: str) -> str:
    try:
        return (home / "agents" / name / field).read_text().strip()
    except FileNotFoundError:
        return ""


@pytest.fixture
def weave_dir(tmp_path: Path, loom_home: Path):
    work = tmp_path / "w"
    work.mkdir()
    yield work
    run_loom("down", cwd=work)
    for pidfile in [loom_home / "supervisor.pid", *loom_home.glob("*/*/pid")]:
        raw = pidfile.read_text().strip() if pidfile.exists() else ""
        if raw.isdigit() and pid_is_loom(int(raw)):
            os.kill(int(raw), signal.SIGKILL)


def test_up_restarting_an_edited_agent_never_records_a_crash(
    weave_dir: Path, loom_home: Path
) -> None:
    (weave_dir / "loom.yml").write_text(WEAVE.format(n=0))
    assert run_loom("up", "-d", cwd=weave_dir).returncode == 0
    supervisor = int((loom_home / "supervisor.pid").read_text())
    previous = int(read(loom_home, "a", "pid"))
    for n in range(1, 21):
        (weave_dir / "loom.yml").write_text(WEAVE.format(n=n))
        # A busy supervisor reaps late: on even rounds it only gets to the old runner's
        # exit after `up` has already asked for the new one (status `pending`).
        paused = n % 2 == 0
        if paused:
            os.kill(supervisor, signal.SIGSTOP)
        up = spawn_loom("up", "-d", cwd=weave_dir)
        try:
            if paused:
                wait_for(lambda: read(loom_home, "a", "status") == "pending", what="pending")
                os.kill(supervisor, signal.SIGCONT)
            out, err = up.communicate(timeout=60)
        finally:
            os.kill(supervisor, signal.SIGCONT)
        assert up.returncode == 0, err
        assert out.decode().split() == ["restarted", "a"]
        current = read(loom_home, "a", "pid")
        assert read(loom_home, "a", "status") in ("idle", "running"), f"round {n}"
        assert current and int(current) != previous and pid_is_loom(int(current))
        assert list((loom_home / "agents/a/crashes").iterdir()) == [], f"round {n}"
        previous = int(current)
    assert read(loom_home, "a", "restarts") in ("", "0")
