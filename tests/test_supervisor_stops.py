"""Stops the supervisor must tell from crashes (SPEC 8): a stop asked for a pid, and a
consumer that stopped because a message needs a newer loom (SPEC 2)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import crash_records, run_loom, spawn_loom, wait_for
from home_kit import stop_all  # noqa: F401

from loom.store.home import pid_is_loom
from loom.store.message import new_message
from loom.supervisor.policy import recent_failures

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
        assert crash_records(loom_home / "agents/a") == [], f"round {n}"
        previous = int(current)
    assert read(loom_home, "a", "restarts") in ("", "0")


FAST = {"LOOM_RESTART_BASE": "0.02", "LOOM_RESTART_JITTER": "0"}


def newer_message(home: Path, sender: str, kind: str = "") -> str:
    """A message from a loom whose schema is v2, in `sender`'s inbox (or `kind`'s, a
    process folder); its filename."""
    msg = new_message("cli", "from the future")
    data = {**msg.to_dict(), "v": 2}
    inbox = home / (kind or f"agents/{sender}") / "inbox"
    (inbox / f".tmp-{msg.filename}").write_text(json.dumps(data))
    os.rename(inbox / f".tmp-{msg.filename}", inbox / msg.filename)
    return msg.filename


def held_for_upgrade(home: Path, name: str) -> str:
    """Start agent `name`, give it a v2 message, wait until it stopped for it; the filename."""
    r = run_loom("agent", "start", name, "--model", "echo", "-d", env=FAST)
    assert r.returncode == 0, r.stderr
    filename = newer_message(home, name)
    wait_for(
        lambda: read(home, name, "status") == "error" and crash_records(home / "agents" / name),
        what="the stop for a newer message",
    )
    return filename


def supervisor_went_on(home: Path) -> None:
    """Return once the supervisor has started another agent that answered: time enough
    for a crash loop (restart delay 20 ms) to have shown itself."""
    r = run_loom("agent", "start", "b", "--model", "echo", "-d", env=FAST)
    assert r.returncode == 0, r.stderr
    run_loom("send", "b", "ping")
    wait_for(lambda: list((home / "agents/b/outbox").iterdir()), what="b's reply")


@pytest.mark.usefixtures("stop_all")
def test_a_message_from_a_newer_loom_stops_the_agent_once_without_a_crash_loop(
    loom_home: Path,
) -> None:
    filename = held_for_upgrade(loom_home, "a")
    supervisor_went_on(loom_home)
    assert read(loom_home, "a", "status") == "error" and read(loom_home, "a", "pid") == ""
    [record] = crash_records(loom_home / "agents/a")
    assert record["error_type"] == "unsupported_version" and record["msg"] == filename
    assert record["nextRestartAt"] is None
    assert read(loom_home, "a", "restarts") in ("", "0")
    assert (loom_home / "agents/a/inbox" / filename).exists()  # never quarantined
    rows = json.loads(run_loom("agent", "ps", "--all", "--json").stdout)
    assert {r["name"]: r["status"] for r in rows} == {"a": "error", "b": "idle"}
    logs = run_loom("agent", "logs", "a", "--level", "error")
    assert filename in logs.stdout and "v2" in logs.stdout and "upgrade loom" in logs.stdout


@pytest.mark.usefixtures("stop_all")
def test_the_agent_comes_back_once_the_newer_message_is_removed(
    loom_home: Path,
) -> None:
    filename = held_for_upgrade(loom_home, "a")
    supervisor_went_on(loom_home)
    assert read(loom_home, "a", "status") == "error"
    os.unlink(loom_home / "agents/a/inbox" / filename)
    wait_for(
        lambda: read(loom_home, "a", "status") == "idle" and read(loom_home, "a", "pid"),
        what="the restart",
    )
    run_loom("send", "a", "hello again")
    wait_for(lambda: list((loom_home / "agents/a/outbox").iterdir()), what="a's reply")
    assert len(crash_records(loom_home / "agents/a")) == 1


@pytest.mark.usefixtures("stop_all")
def test_starting_it_again_retries_the_newer_message(loom_home: Path) -> None:
    held_for_upgrade(loom_home, "a")
    r = run_loom("agent", "start", "a", "--model", "echo", "-d", env=FAST)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len(crash_records(loom_home / "agents/a")) == 2, what="the second stop")
    assert read(loom_home, "a", "status") == "error"


def test_a_pipe_process_stops_for_a_newer_message_the_same_way(
    weave_dir: Path, loom_home: Path
) -> None:
    (weave_dir / "loom.yml").write_text(
        "version: 1\npipes:\n  tidy:\n    from: [a]\n    operators:\n      - map: '@'\n"
        "agents:\n  - {name: a, model: echo}\n"
    )
    r = run_loom("up", "-d", cwd=weave_dir, env=FAST)
    assert r.returncode == 0, r.stderr
    pipe = loom_home / "pipes/tidy"
    filename = newer_message(loom_home, "a", kind="pipes/tidy")
    wait_for(lambda: crash_records(pipe), what="the stop record")
    supervisor_went_on(loom_home)
    [record] = crash_records(pipe)
    assert record["error_type"] == "unsupported_version" and record["msg"] == filename
    assert (pipe / "status").read_text().strip() == "error"
    logs = run_loom("agent", "logs", "tidy")
    assert filename in logs.stdout and "upgrade loom" in logs.stdout


def test_stops_for_a_newer_message_do_not_count_toward_dead(tmp_path: Path) -> None:
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    now = int(time.time() * 1000)
    for n, error_type in enumerate(["unsupported_version"] * 3 + ["timeout"]):
        record = {"exitCode": 78 if n < 3 else 1, "error_type": error_type}
        (crashes / f"{now - n}-{n:016d}.json").write_text(json.dumps(record))
    assert recent_failures(crashes) == 1


def test_a_foreground_runner_says_which_message_needs_a_newer_loom_in_one_line(
    loom_home: Path,
) -> None:
    (loom_home / "agents/a/inbox").mkdir(parents=True)
    filename = newer_message(loom_home, "a")
    r = run_loom("agent", "start", "a", "--model", "echo", "--serve", timeout=30)
    assert r.returncode == 1
    [line] = r.stderr.splitlines()
    assert line.startswith(f"loom: {filename}: ") and "upgrade loom" in line
    assert (loom_home / "agents/a/inbox" / filename).exists()
